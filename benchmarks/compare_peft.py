"""This project's prompt-tuning step against Hugging Face PEFT prompt tuning, in one process, timed alternately.

    python benchmarks/compare_peft.py --mode fixed [--inputs 256 --targets 16 --batch 8] [--out r.json]
    python benchmarks/compare_peft.py --mode real --tasks rte,wic,boolq [--data_cache benchmarks/data_cache]
    # GPU: --dtype bfloat16 --sizes base,large,xl,xxl --batch 32 [--remat full] [--peft_compile]

Both sides train a prompt (default 100 tokens, prefix) on the same frozen T5 1.1 shape (random weights;
``--weights same`` gives both sides the same weights, converted from the PyTorch model with the project's
own Hugging Face importer, and the same initial prompt, so the first losses must agree), with the same
optimiser (Adafactor lr 0.3 as gin/runs/prompt_tune.gin; PEFT side: transformers' Adafactor with
scale_parameter/relative_step/warmup_init off, decay -0.8, clipping 1.0, weight decay 1e-5; or AdamW on
both with ``--optimizer adamw``). The project side is the real training step (``make_train_step`` +
``jit_train_step`` + ``make_shardings``; z-loss 0, as PEFT has none). After compiling and warming up,
each side runs ``--steps`` steps in turn (A, B, A, B, ... for ``--rounds`` rounds), so machine noise falls
on all of them; a round's examples/s counts whole steps (fetching the batch from the numpy cache, the
transfer and the step). The table gives the median over rounds.

Modes. ``fixed``: one random batch of fixed shape. ``real``: RTE, WiC, BoolQ (train, or validation where
the train split is missing: BoolQ's here) from numpy caches of the official files in T5 format (the real
T5 vocabulary), each side with its natural padding: PEFT pads each batch to its longest example
(``DataCollatorWithPadding``); the project pads to the cache's input length (``project_fixed``), to its
length buckets (``project_buckets``) and to its buckets with length-grouped shuffling
(``project_grouped``). Same seed, same example order on the non-grouped sides.
"""
from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import platform
import resource
import statistics
import sys
import time

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # torch shares the GPU with JAX
for _name in filter(None, os.environ.get("XPROMPT_BENCH_BLOCK_IMPORTS", "").split(",")):
    sys.modules[_name] = None  # the dry run proves the GPU path needs none of these

import numpy as np  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
SHARED = os.path.join(os.path.dirname(ROOT), "shared")
INSTALL_HINT = ("compare_peft.py needs PyTorch, transformers and peft (the project's test extra): "
                "pip install -e .[test]   or   pip install torch transformers peft")
TASK_NAMES = {"rte": "taskless_super_glue_rte_v102", "wic": "taskless_super_glue_wic_v102",
              "boolq": "taskless_super_glue_boolq_v102", "cb": "taskless_super_glue_cb_v102",
              "copa": "taskless_super_glue_copa_v102"}
TASK_FOLDERS = {"rte": "RTE", "wic": "WiC", "boolq": "BoolQ", "cb": "CB", "copa": "COPA"}


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


# -- models ------------------------------------------------------------------------------------------
def project_config(args, size: str):
    from xprompt_jax.models.config import t5_config
    return t5_config(size, dtype=args.dtype, param_dtype=args.dtype, remat=args.remat)  # a bare size: T5 1.1


def hf_config(cfg):
    """transformers' T5Config of the same shape (inverse of t5_import.huggingface.config_from_hf)."""
    import transformers
    gated = len(cfg.mlp_activations) == 2
    act = {"gelu": "gelu_new", "relu": "relu"}[cfg.mlp_activations[0]]
    return transformers.T5Config(
        vocab_size=cfg.vocab_size, d_model=cfg.emb_dim, d_kv=cfg.head_dim, d_ff=cfg.mlp_dim,
        num_layers=cfg.num_encoder_layers, num_decoder_layers=cfg.num_decoder_layers, num_heads=cfg.num_heads,
        relative_attention_num_buckets=cfg.relative_attention_num_buckets,
        relative_attention_max_distance=cfg.relative_attention_max_distance,
        feed_forward_proj=("gated-gelu" if act == "gelu_new" else "gated-relu") if gated else act,
        tie_word_embeddings=cfg.logits_via_embedding, dropout_rate=cfg.dropout_rate,
        layer_norm_epsilon=cfg.layer_norm_epsilon, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1,
        use_cache=False)


def build_hf(cfg, device, dtype):
    """A random PyTorch T5 of ``cfg``'s shape, on ``device``; T5 1.1 gets its own (untied) output layer."""
    import torch
    import transformers
    torch.manual_seed(0)
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = transformers.T5ForConditionalGeneration(hf_config(cfg))
            if not cfg.logits_via_embedding:
                head = torch.randn(cfg.vocab_size, cfg.emb_dim) * cfg.emb_dim ** -0.5
                model.lm_head.weight = torch.nn.Parameter(head.to(dtype))
    finally:
        torch.set_default_dtype(old)
    return model


def frozen_from_hf(model, cfg):
    """The PyTorch weights as the project's frozen tree, through the project's own HF importer."""
    import jax.numpy as jnp
    from flax import traverse_util

    from xprompt_jax.t5_import.huggingface import convert
    tensors = {k: v.detach().float().cpu().numpy() for k, v in model.state_dict().items()}
    converted_cfg, flat = convert(tensors, cfg, "the benchmark's PyTorch T5")
    assert converted_cfg.logits_via_embedding == cfg.logits_via_embedding
    del tensors
    return traverse_util.unflatten_dict({k: jnp.asarray(v, cfg.param_dtype) for k, v in flat.items()}, sep="/")


@dataclasses.dataclass
class ProjectModel:
    model: object
    optimizer: object
    frozen: object
    shardings: object
    step: object
    mesh: object

    def fresh_state(self):
        import jax

        from xprompt_jax import train_step
        state = train_step.create_state(self.model, self.optimizer, jax.random.PRNGKey(0))
        return jax.device_put(state, self.shardings.state)


def build_project(cfg, args, frozen):
    import jax

    from xprompt_jax import assembly, partitioning, train_step
    from xprompt_jax.optimizers import make_optimizer
    from xprompt_jax.prompts.kinds import make_spec
    mesh = partitioning.make_mesh(-1, 1)
    spec = make_spec(length=args.prompt, init="sampled_vocabulary", pieces=16 if cfg.emb_dim % 16 == 0 else 1)
    frozen = assembly.random_frozen(cfg, mesh) if frozen is None else frozen
    model = assembly.prompted_model(cfg, spec, frozen)
    opt = make_optimizer(args.optimizer, learning_rate=args.lr)
    state = train_step.create_state(model, opt, jax.random.PRNGKey(0))
    compiled = assembly.compile_step(model, opt, state, mesh, z_loss=0.0)
    frozen = compiled.place_frozen(frozen)
    return ProjectModel(model, opt, frozen, compiled.shardings, compiled, mesh)


def build_peft(hf_model, cfg, prompt_length: int, gradient_checkpointing: bool):
    """PEFT prompt tuning (``num_virtual_tokens=prompt_length``) around the PyTorch T5."""
    from peft import PromptTuningConfig, TaskType, get_peft_model
    if gradient_checkpointing:
        hf_model.gradient_checkpointing_enable()
    # num_transformer_submodules=1: the prompt goes to the encoder only (Lester et al., and what the project
    # trains). PEFT's seq2seq default of 2 prepends a second prompt to the decoder inputs as well.
    peft_model = get_peft_model(hf_model, PromptTuningConfig(task_type=TaskType.SEQ_2_SEQ_LM,
                                                             num_virtual_tokens=prompt_length,
                                                             num_transformer_submodules=1))
    if not cfg.logits_via_embedding:
        base = peft_model.get_base_model()
        assert base.lm_head.weight.data_ptr() != base.shared.weight.data_ptr(), "lm_head got tied"
    peft_model.train()
    return peft_model


def reset_peft(peft_model, args, initial_prompt):
    """The project's initial prompt into PEFT's table, and a fresh optimiser (at the start of every task)."""
    import torch
    table = peft_model.prompt_encoder["default"].embedding.weight
    with torch.no_grad():  # one prompt, the encoder's (num_transformer_submodules=1)
        table[:args.prompt].copy_(torch.from_numpy(np.array(initial_prompt, np.float32)).to(table))
    params = [p for p in peft_model.parameters() if p.requires_grad]
    if args.optimizer == "adafactor":
        from transformers.optimization import Adafactor
        return Adafactor(params, lr=args.lr, scale_parameter=False, relative_step=False, warmup_init=False,
                         decay_rate=-0.8, clip_threshold=1.0, weight_decay=1e-5)
    return torch.optim.AdamW(params, lr=args.lr, weight_decay=1e-5)


# -- the timed sides ---------------------------------------------------------------------------------
class ProjectSide:
    kind = "project"

    def __init__(self, name, pm: ProjectModel, batches, prompt_length: int):
        self.name, self.pm, self.batches, self.prompt_length = name, pm, batches, prompt_length
        self.state, self.metrics, self.first_loss, self.widths = pm.fresh_state(), None, None, []

    def run(self, batch):
        from xprompt_jax import partitioning
        from xprompt_jax.train_step import BATCH_KEYS
        device_batch = partitioning.global_batch({k: batch[k] for k in BATCH_KEYS}, self.pm.mesh)
        self.state, self.metrics = self.pm.step(self.state, self.pm.frozen, device_batch)

    def step(self) -> int:
        batch = next(self.batches)
        self.widths.append(batch["encoder_input_tokens"].shape[1] + self.prompt_length)
        self.run(batch)
        return len(batch["encoder_input_tokens"])

    def sync(self):
        import jax
        jax.block_until_ready(self.metrics)
        if self.first_loss is None:
            self.first_loss = float(self.metrics["loss"])

    def reset_peak(self):
        pass

    def peak_bytes(self):
        import jax
        try:
            return (jax.devices()[0].memory_stats() or {}).get("peak_bytes_in_use")
        except Exception:  # noqa: BLE001 - CPU devices report no memory stats
            return None


class PeftSide:
    kind = "peft"

    def __init__(self, name, model, optimizer, batches, device, prompt_length: int, dynamic: bool, compiled: bool):
        import torch
        self.torch, self.name, self.model, self.opt, self.batches = torch, name, model, optimizer, batches
        self.device, self.prompt_length, self.dynamic = device, prompt_length, dynamic
        # Real data changes the padded length every batch: compile for dynamic shapes, not once per length.
        self.forward = torch.compile(model, dynamic=dynamic or None) if compiled else model
        self.first_loss, self.widths, self.loss = None, [], None

    def step(self) -> int:
        torch = self.torch
        batch = next(self.batches)
        inputs, targets = batch["encoder_input_tokens"], batch["decoder_target_tokens"]
        weights = batch["decoder_loss_weights"]
        if self.dynamic:  # DataCollatorWithPadding / DataCollatorForSeq2Seq: pad to the batch's longest
            inputs = inputs[:, :max(1, int((inputs != 0).sum(1).max()))]
            keep = max(1, int((weights != 0).sum(1).max()))
            targets, weights = targets[:, :keep], weights[:, :keep]
        self.widths.append(inputs.shape[1] + self.prompt_length)
        ids = torch.from_numpy(np.ascontiguousarray(inputs)).long().to(self.device, non_blocking=True)
        labels = torch.from_numpy(np.where(weights > 0, targets, -100)).long().to(self.device, non_blocking=True)
        out = self.forward(input_ids=ids, attention_mask=(ids != 0).long(), labels=labels)
        out.loss.backward()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        self.loss = out.loss.detach()
        if self.first_loss is None:  # the loss of the very first step (same weights and prompt as the project's)
            self.first_loss = float(self.loss)
        return len(inputs)

    def sync(self):
        if self.device.startswith("cuda"):
            self.torch.cuda.synchronize()

    def reset_peak(self):
        if self.device.startswith("cuda"):
            self.torch.cuda.reset_peak_memory_stats()

    def peak_bytes(self):
        return self.torch.cuda.max_memory_allocated() if self.device.startswith("cuda") else None


def precompile(side: ProjectSide, shapes, template):
    """One step at every (encoder, decoder) width the timed steps will meet (each is one XLA program).

    ``template`` is a batch of another iterator, so the side's own batches start at the stream's start."""
    from xprompt_jax.data.buckets import DECODER_KEYS, fit_length
    for width, targets in sorted(set(shapes)):
        batch = dict(template, encoder_input_tokens=fit_length(template["encoder_input_tokens"], width))
        batch.update({k: fit_length(template[k], targets) for k in DECODER_KEYS})
        side.run(batch)
        side.sync()


def measure(sides, args):
    """Warm-up, then alternate rounds; returns {name: per-round examples/s}."""
    for side in sides:
        for _ in range(args.warmup):
            side.step()
        side.sync()
    rates = {s.name: [] for s in sides}
    peaks = {s.name: None for s in sides}
    started = time.perf_counter()
    for _ in range(args.rounds):
        for side in sides:
            side.reset_peak()
            t0 = time.perf_counter()
            n = sum(side.step() for _ in range(args.steps))
            side.sync()
            rates[side.name].append(n / (time.perf_counter() - t0))
            peak = side.peak_bytes()
            if peak is not None:
                peaks[side.name] = max(peak, peaks[side.name] or 0)
        if args.time_budget is not None and time.perf_counter() - started > args.time_budget:
            break
    return rates, peaks


# -- data --------------------------------------------------------------------------------------------
def fixed_batches(args, vocab_size: int):
    rng = np.random.RandomState(0)
    targets = rng.randint(3, min(vocab_size, 32000), (args.batch, args.targets)).astype(np.int32)
    batch = {"encoder_input_tokens": rng.randint(3, min(vocab_size, 32000), (args.batch, args.inputs)).astype(np.int32),
             "decoder_target_tokens": targets, "decoder_input_tokens": np.pad(targets, ((0, 0), (1, 0)))[:, :-1],
             "decoder_loss_weights": np.ones_like(targets)}
    while True:
        yield batch


def task_split(args, task: str):
    """'train', or 'validation' when neither a train cache nor the official train file is there."""
    lengths = f"{args.input_length}-{args.target_length}"
    if os.path.isdir(os.path.join(args.data_cache, task, f"train-{lengths}")):
        return "train"
    if os.path.isfile(os.path.join(args.data_dir, TASK_FOLDERS[task], "train.jsonl")):
        return "train"
    return "validation"


def open_task(args, task: str, split: str):
    """The numpy cache of ``task:split`` under ``--data_cache``, written (seqio, TensorFlow) when missing."""
    from xprompt_jax.data.cache import CachedSplit
    path = os.path.join(args.data_cache, task, f"{split}-{args.input_length}-{args.target_length}")
    if not os.path.isdir(path):
        import tasks.superglue
        from xprompt_jax.data.write_cache import write_cache
        tasks.superglue.register_superglue(data_dir=args.data_dir, vocab_path=args.vocab_path)
        write_cache(TASK_NAMES[task], split, path, {"inputs": args.input_length, "targets": args.target_length})
    return CachedSplit.open(path)


def real_sides(args, split, pm, peft_parts, initial_prompt):
    from xprompt_jax.data.buckets import bucket_lengths
    buckets = bucket_lengths(split.features["encoder_input_tokens"].shape[1])
    kinds = {"project_fixed": dict(), "project_buckets": dict(buckets=buckets),
             "project_grouped": dict(buckets=buckets, group_by_length=True)}
    needed = args.warmup + args.rounds * args.steps + 1
    sides = []
    for name, kw in kinds.items():
        side = ProjectSide(name, pm, split.batches(args.batch, shuffle=True, seed=0, **kw), args.prompt)
        peek = split.batches(args.batch, shuffle=True, seed=0, **kw)
        peeked = [next(peek) for _ in range(needed)]
        precompile(side, [(b["encoder_input_tokens"].shape[1], b["decoder_target_tokens"].shape[1])
                          for b in peeked], split.batches(args.batch, shuffle=True, seed=0).__next__())
        sides.append(side)
    for name, (model, device, compiled) in peft_parts.items():
        opt = reset_peft(model, args, initial_prompt)
        sides.append(PeftSide(name, model, opt, split.batches(args.batch, shuffle=True, seed=0), device,
                              args.prompt, dynamic=True, compiled=compiled))
        if args.peft_grouped and not compiled:
            sides.append(PeftSide(f"{name}_grouped", model, reset_peft(model, args, initial_prompt),
                                  split.batches(args.batch, shuffle=True, seed=0, group_by_length=True),
                                  device, args.prompt, dynamic=True, compiled=False))
    return sides


# -- one size ----------------------------------------------------------------------------------------
def run_size(args, size: str, record):
    import jax
    import torch
    cfg = project_config(args, size)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    tdtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[args.dtype]
    t0 = time.perf_counter()
    hf = build_hf(cfg, device, tdtype)
    frozen = frozen_from_hf(hf, cfg) if args.weights == "same" else None
    pm = build_project(cfg, args, frozen)
    del frozen
    prompt = pm.model.prompt(*pm.model.init(jax.random.split(jax.random.PRNGKey(0))[0]))
    peft_model = build_peft(hf, cfg, args.prompt, args.remat != "none")
    parts = {} if args.no_peft_eager else {"peft": (peft_model, device, False)}
    if args.peft_compile:
        parts["peft_compiled"] = (peft_model, device, True)
    setup_s = time.perf_counter() - t0
    runs = []
    if args.mode == "fixed":
        runs.append(("fixed", None, None))
    else:
        for task in args.tasks.split(","):
            split_name = task_split(args, task)
            runs.append((task, split_name, open_task(args, task, split_name)))
    for task, split_name, split in runs:
        t1 = time.perf_counter()
        sides = (fixed_sides(args, cfg, pm, parts, prompt) if split is None
                 else real_sides(args, split, pm, parts, prompt))
        compile_s = time.perf_counter() - t1
        rates, peaks = measure(sides, args)
        entry = summarise(args, size, cfg, task, split_name, sides, rates, peaks, setup_s, compile_s)
        record["results"].append(entry)
        print_table(entry)
        write_json(args, record)
    del pm, peft_model, hf
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    jax.clear_caches()


def fixed_sides(args, cfg, pm, parts, initial_prompt):
    sides = [ProjectSide("project", pm, fixed_batches(args, cfg.vocab_size), args.prompt)]
    precompile(sides[0], [(args.inputs, args.targets)], next(fixed_batches(args, cfg.vocab_size)))
    for name, (model, device, compiled) in parts.items():
        opt = reset_peft(model, args, initial_prompt)
        sides.append(PeftSide(name, model, opt, fixed_batches(args, cfg.vocab_size), device, args.prompt,
                              dynamic=False, compiled=compiled))
    return sides


def summarise(args, size, cfg, task, split_name, sides, rates, peaks, setup_s, compile_s):
    out = {"mode": args.mode, "size": size, "task": task, "split": split_name, "batch": args.batch,
           "dtype": args.dtype, "remat": args.remat, "setup_s": round(setup_s, 1),
           "compile_and_warmup_s": round(compile_s, 1), "sides": {}, "ratios": {}}
    for side in sides:
        r = rates[side.name]
        out["sides"][side.name] = {
            "examples_per_s": statistics.median(r) if r else None, "rounds": [round(x, 3) for x in r],
            "mean_encoder_length": float(np.mean(side.widths[-len(r) * args.steps:])) if r else None,
            "peak_memory_bytes": peaks[side.name], "first_loss": side.first_loss}
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
    print(f"\n{entry['size']} {where} batch {entry['batch']} {entry['dtype']} remat {entry['remat']} "
          f"(setup {entry['setup_s']} s, compile+warm-up {entry['compile_and_warmup_s']} s)")
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
    if "first_loss_rel_diff" in entry:
        print(f"  same weights and prompt: first losses differ by {entry['first_loss_rel_diff']:.1e} (relative)")


def write_json(args, record):
    record["max_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        tmp = f"{args.out}.tmp"
        with open(tmp, "w") as f:
            json.dump(record, f, indent=1)
        os.replace(tmp, args.out)


def main(argv=None):
    args = parse_args(argv)
    if args.write_caches_only:
        for task in args.tasks.split(","):
            split = open_task(args, task, task_split(args, task))
            print(f"{task}: {split.num_examples} examples in {split.path}")
        return 0
    require_torch()
    import jax
    import peft
    import torch
    import transformers
    record = {"args": vars(args), "results": [], "host": platform.node(),
              "jax_device": f"{jax.devices()[0].device_kind} ({jax.default_backend()})",
              "torch_device": args.device or ("cuda" if torch.cuda.is_available() else "cpu"),
              "versions": {"jax": jax.__version__, "torch": torch.__version__,
                           "transformers": transformers.__version__, "peft": peft.__version__},
              "peak_memory_note": "project: JAX's peak_bytes_in_use over the process (all project sides); "
                                  "PEFT: torch.cuda.max_memory_allocated per side; n/a on CPU (see max_rss_bytes)"}
    print(f"JAX on {record['jax_device']}, PyTorch on {record['torch_device']}; {args.mode} mode, "
          f"prompt {args.prompt}, optimiser {args.optimizer} lr {args.lr}, weights {args.weights}, "
          f"{args.rounds} rounds x {args.steps} steps per side")
    for size in args.sizes.split(","):
        try:
            run_size(args, size, record)
        except Exception as err:  # noqa: BLE001 - one size out of memory must not lose the others
            if "out of memory" not in str(err).lower() and "resource_exhausted" not in str(err).lower():
                raise
            print(f"{size}: out of memory: {str(err).splitlines()[0][:300]}")
            record["results"].append({"size": size, "error": str(err).splitlines()[0][:300]})
            write_json(args, record)
    write_json(args, record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
