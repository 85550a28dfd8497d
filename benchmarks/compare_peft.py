"""This project's prompt-tuning step against Hugging Face PEFT prompt tuning, each in its own process, timed alternately.

    python benchmarks/compare_peft.py --mode fixed [--inputs 256 --targets 16 --batch 8] [--out r.json]
    python benchmarks/compare_peft.py --mode real --tasks rte,wic,boolq [--data_cache benchmarks/data_cache]
    # GPU: --dtype bfloat16 --sizes base,large,xl,xxl --batch 32 [--remat full] [--peft_compile]

Both sides train a prompt (default 100 tokens, prefix) on the same frozen T5 1.1 shape (random weights;
``--weights same`` gives both sides the same weights, converted from the PyTorch model with the project's
own Hugging Face importer, and the same initial prompt, so the first losses must agree), with the same
optimiser (Adafactor lr 0.3 as gin/runs/prompt_tune.gin; PEFT side: transformers' Adafactor with
scale_parameter/relative_step/warmup_init off, decay -0.8, clipping 1.0, weight decay 1e-5; or AdamW on
both with ``--optimizer adamw``). The project side is the real training step (``make_train_step`` +
``jit_train_step`` + ``make_shardings``; z-loss 0, as PEFT has none). PEFT's prompt goes to the encoder
only (``num_transformer_submodules=1``), as Lester et al.'s and the project's.

Each runtime runs in its own worker process (the project's sides in one, eager PEFT in another, PEFT under
``torch.compile`` in a third), so XLA's and PyTorch's thread pools never share a process. After every
worker has compiled and warmed up, the parent asks them in turn for ``--steps`` steps of one side (A, B,
A, B, ... for ``--rounds`` rounds) and only one worker runs at a time, so machine noise falls on all sides
and no side runs beside another. A round's examples/s counts whole steps (fetching the batch from the
numpy cache, the transfer and the step); the table gives the median over rounds. ``--sides`` runs a
subset (``--sides peft`` alone gives PEFT's rate alone, to check that alternation changes nothing).

Modes. ``fixed``: one random batch of fixed shape. ``real``: RTE, WiC, BoolQ (train, or validation where
the train split is missing: BoolQ's here) from numpy caches of the official files in T5 format (the real
T5 vocabulary), each side with its natural padding: PEFT pads each batch to its longest example
(``DataCollatorWithPadding``); the project pads to the cache's input length (``project_fixed``), to its
length buckets (``project_buckets``) and to its buckets with length-grouped shuffling
(``project_grouped``). Same seed, same example order on the non-grouped sides.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # torch shares the GPU with JAX
for _name in filter(None, os.environ.get("XPROMPT_BENCH_BLOCK_IMPORTS", "").split(",")):
    sys.modules[_name] = None  # the dry run proves the GPU path needs none of these

import numpy as np  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
SHARED = os.path.join(os.path.dirname(ROOT), "shared")
from benchmarks.peft_sides import (  # noqa: E402
    build_hf,
    build_peft,
    build_project,
    frozen_from_hf,
    open_task,
    peft_sides,
    project_config,
    project_sides,
    same_weights_hf,
    task_split,
)

INSTALL_HINT = ("compare_peft.py needs PyTorch, transformers and peft (the project's test extra): "
                "pip install -e .[test]   or   pip install torch transformers peft")
WORKERS = ("project", "peft", "peft_compiled")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mode", choices=("fixed", "real"), default="fixed")
    p.add_argument("--sizes", default="small", help="T5 1.1 sizes or config names, comma-separated")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--inputs", type=int, default=256, help="fixed mode: encoder input length")
    p.add_argument("--targets", type=int, default=16, help="fixed mode: target length")
    p.add_argument("--prompt", type=int, default=100)
    p.add_argument("--dtype", default="float32", help="activations and frozen weights: float32 or bfloat16")
    p.add_argument("--remat", default="none", choices=("none", "full", "minimal"),
                   help="project: T5Config.remat; anything but none also turns on PEFT's gradient checkpointing")
    p.add_argument("--scan_layers", action="store_true", help="project: T5Config.scan_layers (one layer compiled)")
    p.add_argument("--optimizer", choices=("adafactor", "adamw"), default="adafactor")
    p.add_argument("--lr", type=float, default=0.3)
    p.add_argument("--weights", choices=("same", "independent"), default="same",
                   help="same: PyTorch's random weights converted for the project; independent: each side its own")
    p.add_argument("--peft_compile", action="store_true", help="also time PEFT under torch.compile")
    p.add_argument("--no_peft_eager", action="store_true", help="with --peft_compile: skip eager PEFT")
    p.add_argument("--peft_grouped", action="store_true", help="real mode: also PEFT with length grouping")
    p.add_argument("--tasks", default="rte,wic,boolq")
    p.add_argument("--input_length", type=int, default=512, help="real mode: the cache's input length")
    p.add_argument("--target_length", type=int, default=16, help="real mode: the cache's target length")
    p.add_argument("--data_cache", default=os.path.join(ROOT, "benchmarks", "data_cache"))
    p.add_argument("--data_dir", default=os.path.join(SHARED, "data", "superglue"))
    p.add_argument("--vocab_path", default=os.path.join(SHARED, "fixtures", "t5_sentencepiece.model"))
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=3, help="steps per side per round")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per side after compiling")
    p.add_argument("--time_budget", type=float, default=None,
                   help="seconds of timed rounds per size and task: stop after the round that passes it")
    p.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    p.add_argument("--out", default=None, help="JSON file, rewritten after every measurement")
    p.add_argument("--sides", default=None,
                   help="workers to run, of project,peft,peft_compiled (default: project and peft, plus "
                        "peft_compiled with --peft_compile, less peft with --no_peft_eager)")
    p.add_argument("--worker", choices=WORKERS, default=None, help=argparse.SUPPRESS)
    p.add_argument("--worker_size", default=None, help=argparse.SUPPRESS)
    p.add_argument("--worker_task", default=None, help=argparse.SUPPRESS)
    p.add_argument("--prompt_file", default=None, help=argparse.SUPPRESS)
    p.add_argument("--write_caches_only", action="store_true",
                   help="write the numpy caches of --tasks (seqio + TensorFlow, here) and stop: gpu_suite --prepare")
    return p.parse_args(argv)


def require_torch():
    try:
        import peft  # noqa: F401
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as err:
        print(f"{INSTALL_HINT}\n({err})", file=sys.stderr)
        sys.exit(2)


# -- a worker: one runtime's sides, timed when the parent asks ---------------------------------------
def torch_dtype(args):
    import torch
    return {"float32": torch.float32, "bfloat16": torch.bfloat16}[args.dtype]


def build_worker_sides(args):
    """(sides, setup_s, compile_s, device) of this worker's runtime, for --worker_size and --worker_task."""
    cfg = project_config(args, args.worker_size)
    split = None if args.worker_task == "fixed" else open_task(args, args.worker_task, task_split(args, args.worker_task))
    t0 = time.perf_counter()
    if args.worker == "project":
        import jax
        frozen = None
        if args.weights == "same":  # PyTorch's seed-0 weights through the project's own HF importer
            frozen = frozen_from_hf(same_weights_hf(cfg, "cpu", torch_dtype(args)), cfg)
        pm = build_project(cfg, args, frozen)
        del frozen
        prompt = pm.model.prompt(*pm.model.init(jax.random.split(jax.random.PRNGKey(0))[0]))
        if args.prompt_file:
            np.save(args.prompt_file, np.asarray(prompt, np.float32))
        setup_s, t1 = time.perf_counter() - t0, time.perf_counter()
        sides = project_sides(args, cfg, pm, split)
        device = f"{jax.devices()[0].device_kind} ({jax.default_backend()})"
    else:
        import torch
        device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
        hf = (same_weights_hf(cfg, device, torch_dtype(args)) if args.weights == "same"
              else build_hf(cfg, device, torch_dtype(args)))
        model = build_peft(hf, cfg, args.prompt, args.remat != "none")
        prompt = np.load(args.prompt_file) if args.prompt_file and os.path.exists(args.prompt_file) else None
        setup_s, t1 = time.perf_counter() - t0, time.perf_counter()
        sides = peft_sides(args, cfg, model, device, args.worker, args.worker == "peft_compiled", split, prompt)
    for side in sides:  # warm-up: torch.compile compiles here, XLA already has (precompile)
        for _ in range(args.warmup):
            side.step()
        side.sync()
    return sides, setup_s, time.perf_counter() - t1, device


def _first_line(err: BaseException) -> str:
    return f"{type(err).__name__}: {(str(err).splitlines() or [''])[0][:300]}"


def worker_main(args) -> int:
    """Build this runtime's sides, say which, then run one side's ``--steps`` steps per request on stdin."""
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # whatever else prints goes to stderr, never into the protocol

    def reply(message):
        protocol.write(json.dumps(message) + "\n")

    try:
        sides, setup_s, compile_s, device = build_worker_sides(args)
    except Exception as err:  # noqa: BLE001 - out of memory, a missing package: the parent records it
        reply({"error": _first_line(err)})
        return 1
    by_name = {side.name: side for side in sides}
    reply({"sides": list(by_name), "setup_s": round(setup_s, 1), "compile_s": round(compile_s, 1), "device": device})
    for line in sys.stdin:
        request = json.loads(line)
        if "finish" in request:
            reply({"sides": {n: {"first_loss": s.first_loss, "widths": s.widths} for n, s in by_name.items()},
                   "max_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024})
            return 0
        side = by_name[request["round"]]
        try:
            side.reset_peak()
            t0 = time.perf_counter()
            examples = sum(side.step() for _ in range(args.steps))
            side.sync()
            reply({"examples": examples, "seconds": time.perf_counter() - t0, "peak": side.peak_bytes()})
        except Exception as err:  # noqa: BLE001 - one side out of memory: the others go on
            reply({"error": _first_line(err)})
    return 0


# -- the parent: workers started one at a time, rounds alternated between them -----------------------
class Worker:
    """One worker process; ``ask`` sends a request and waits for its one-line JSON answer."""

    def __init__(self, kind: str, argv, size: str, task: str, prompt_file: str):
        command = [sys.executable, os.path.abspath(__file__), *argv, "--worker", kind, "--worker_size", size,
                   "--worker_task", task, "--prompt_file", prompt_file]
        self.kind = kind
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        self.ready = self.read()

    def read(self) -> dict:
        line = self.process.stdout.readline()
        if not line:
            return {"error": f"the {self.kind} worker exited with status {self.process.wait()} (its log is above)"}
        return json.loads(line)

    def ask(self, request: dict) -> dict:
        try:
            self.process.stdin.write(json.dumps(request) + "\n")
            self.process.stdin.flush()
        except BrokenPipeError:
            return {"error": f"the {self.kind} worker is gone (status {self.process.wait()})"}
        return self.read()

    def close(self):
        try:
            self.process.stdin.close()
        except BrokenPipeError:
            pass
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()


def chosen_workers(args):
    if args.sides:
        kinds = [k.strip() for k in args.sides.split(",") if k.strip()]
        unknown = sorted(set(kinds) - set(WORKERS))
        if unknown:
            raise SystemExit(f"--sides: unknown {', '.join(unknown)}; choose from {', '.join(WORKERS)}")
        return kinds
    kinds = ["project"] + ([] if args.no_peft_eager else ["peft"])
    return kinds + (["peft_compiled"] if args.peft_compile else [])


def measure(workers, args):
    """Alternate rounds over every side of every worker, one running at a time; returns (rates, peaks, errors)."""
    order = [(name, w) for w in workers for name in w.ready["sides"]]
    rates, peaks, errors = {n: [] for n, _ in order}, {n: None for n, _ in order}, {}
    started = time.perf_counter()
    for _ in range(args.rounds):
        for name, worker in order:
            if name in errors:
                continue
            answer = worker.ask({"round": name})
            if "error" in answer:
                errors[name] = answer["error"]
                continue
            rates[name].append(answer["examples"] / answer["seconds"])
            if answer.get("peak") is not None:
                peaks[name] = max(answer["peak"], peaks[name] or 0)
        if args.time_budget is not None and time.perf_counter() - started > args.time_budget:
            break
    return rates, peaks, errors


def run_task(args, argv, size: str, task: str, record) -> None:
    """One size on one task (or the fixed batch): its workers, the alternated rounds, one JSON entry."""
    with tempfile.TemporaryDirectory() as tmp:
        workers, errors, times = [], {}, {}
        for kind in chosen_workers(args):  # the project first: its initial prompt is PEFT's too
            worker = Worker(kind, argv, size, task, os.path.join(tmp, "prompt.npy"))
            if "error" in worker.ready:
                errors[kind] = worker.ready["error"]
                print(f"{size} {task}: {kind} failed to start: {worker.ready['error']}", flush=True)
                worker.close()
                continue
            workers.append(worker)
            times[kind] = {"setup_s": worker.ready["setup_s"], "compile_and_warmup_s": worker.ready["compile_s"],
                           "device": worker.ready["device"]}
        rates, peaks, round_errors = measure(workers, args) if workers else ({}, {}, {})
        info, rss = {}, {}
        for worker in workers:
            final = worker.ask({"finish": True})
            info.update(final.get("sides", {}))
            rss[worker.kind] = final.get("max_rss_bytes")
            worker.close()
    entry = summarise(args, size, project_config(args, size), task, info, rates, peaks, times)
    entry["errors"] = {**errors, **round_errors}
    entry["max_rss_bytes"] = rss
    record["results"].append(entry)
    print_table(entry)
    write_json(args, record)


def summarise(args, size, cfg, task, info, rates, peaks, times):
    """One JSON entry: each side's median rate, rounds, mean encoder width, peak memory and first loss."""
    out = {"mode": args.mode, "size": size, "task": task,
           "split": None if task == "fixed" else task_split(args, task), "batch": args.batch,
           "dtype": args.dtype, "remat": args.remat, "workers": times, "sides": {}, "ratios": {}}
    for name, r in rates.items():
        widths = info.get(name, {}).get("widths") or []
        timed = widths[-len(r) * args.steps:] if r else []
        out["sides"][name] = {
            "examples_per_s": statistics.median(r) if r else None, "rounds": [round(x, 3) for x in r],
            "mean_encoder_length": float(np.mean(timed)) if timed else None,
            "peak_memory_bytes": peaks.get(name), "first_loss": info.get(name, {}).get("first_loss")}
    s = out["sides"]
    if task == "fixed":  # model FLOPs (benchmarks/train_step.py's count) per second of each side
        from benchmarks.train_step import model_flops_per_example
        flops = model_flops_per_example(cfg, args.inputs + args.prompt, args.targets)
        out["model_flops_per_example"] = flops
        for v in s.values():
            v["model_tflop_per_s"] = None if not v["examples_per_s"] else v["examples_per_s"] * flops / 1e12
    for base in ("peft", "peft_compiled"):
        if base in s and s[base]["examples_per_s"]:
            for name, v in s.items():
                if name.startswith("project") and v["examples_per_s"]:
                    out["ratios"][f"{name}/{base}"] = round(v["examples_per_s"] / s[base]["examples_per_s"], 3)
    losses = [v["first_loss"] for k, v in s.items() if k in ("project", "project_fixed", "peft")]
    if args.weights == "same" and len(losses) == 2 and None not in losses:
        out["first_loss_rel_diff"] = abs(losses[0] - losses[1]) / max(abs(losses[1]), 1e-9)
    return out


def _mem(v):
    return "n/a" if v is None else f"{v / 2**30:.2f} GiB"


def print_table(entry):
    where = entry["task"] if entry["split"] is None else f"{entry['task']}:{entry['split']}"
    workers = ", ".join(f"{k}: setup {v['setup_s']} s, compile+warm-up {v['compile_and_warmup_s']} s"
                        for k, v in entry["workers"].items())
    print(f"\n{entry['size']} {where} batch {entry['batch']} {entry['dtype']} remat {entry['remat']} ({workers})")
    print(f"{'side':<20}{'ex/s (median)':>14}{'min-max':>18}{'enc len':>9}{'peak mem':>12}{'1st loss':>10}")
    for name, v in entry["sides"].items():
        r = v["rounds"]
        rng = f"{min(r):.2f}-{max(r):.2f}" if r else "-"
        rate = f"{v['examples_per_s']:.2f}" if v["examples_per_s"] else "-"
        enc = f"{v['mean_encoder_length']:.0f}" if v["mean_encoder_length"] else "-"
        loss = f"{v['first_loss']:.4f}" if v["first_loss"] is not None else "-"
        tflops = f"  {v['model_tflop_per_s']:.2f} TFLOP/s" if v.get("model_tflop_per_s") else ""
        print(f"{name:<20}{rate:>14}{rng:>18}{enc:>9}{_mem(v['peak_memory_bytes']):>12}{loss:>10}{tflops}")
    for k, v in entry["ratios"].items():
        print(f"  ratio {k}: {v:.2f}x")
    for name, error in entry.get("errors", {}).items():
        print(f"  {name} failed: {error}")
    if "first_loss_rel_diff" in entry:
        print(f"  same weights and prompt: first losses differ by {entry['first_loss_rel_diff']:.1e} (relative)")


def write_json(args, record):
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        tmp = f"{args.out}.tmp"
        with open(tmp, "w") as f:
            json.dump(record, f, indent=1)
        os.replace(tmp, args.out)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    if args.write_caches_only:
        for task in args.tasks.split(","):
            split = open_task(args, task, task_split(args, task))
            print(f"{task}: {split.num_examples} examples in {split.path}")
        return 0
    require_torch()
    if args.worker:
        return worker_main(args)
    from importlib import metadata
    record = {"args": vars(args), "results": [], "host": platform.node(),
              "versions": {name: metadata.version(name) for name in ("jax", "torch", "transformers", "peft")},
              "peak_memory_note": "per side: JAX's peak_bytes_in_use in the project's worker process, "
                                  "torch.cuda.max_memory_allocated in PEFT's; n/a on CPU (see max_rss_bytes)"}
    print(f"{args.mode} mode, prompt {args.prompt}, optimiser {args.optimizer} lr {args.lr}, weights {args.weights}, "
          f"{args.rounds} rounds x {args.steps} steps per side, one worker process per runtime: "
          f"{', '.join(chosen_workers(args))}", flush=True)
    tasks = ["fixed"] if args.mode == "fixed" else args.tasks.split(",")
    for size in args.sizes.split(","):
        for task in tasks:  # a failure is recorded in the entry: the next size and task still run
            run_task(args, argv, size, task, record)
    write_json(args, record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
