"""Every method of the project on the built-in demo, one table: trainable parameters and accuracy.

    python benchmarks/methods_table.py [--work_dir methods_demo] [--checkpoint PATH] [--steps 300]
        [--seeds 1] [--only ept,ept_star] [--no_xprompt]

On the demo family (``tasks/demo.py``): the tiny demo T5 (``sizes/demo.gin``) is pre-trained once on the
keyword digit tasks (``runs/demo_pretrain.gin``, cached in ``WORK_DIR/pretrain``; or ``--checkpoint``),
frozen, and every method learns ``demo_max_no_keyword`` (the answer of ``max`` without its keyword;
rank classification over the digits) from its own gin run file, each with its paper's optimiser,
learning rate, batch size and initialisation, for the same number of steps:

    prompt tuning   runs/demo_prompt_tune.gin   Lester et al.: 10 tokens, Adafactor, lr 0.3, batch 32
    EPT, EPT*       runs/ept.gin, ept_star.gin  1 (10) tokens from one vector, r = 1, AdamW lr 0.3, batch 16
    P-Tuning        runs/ptuning.gin            10 tokens, 3-layer MLP (and the LSTM encoder), AdamW
    ResPrompt       runs/resprompt.gin          10 tokens, shared bottleneck 400, LayerNorm, residual
    XPrompt         runs/demo_xprompt.gin       prompt tuning -> pruning -> rewinding (best ratio shown)
    full FT         runs/full_finetune.gin      every weight, AdamW; lr 1e-3 (the EPT paper's few-shot
                                                fine-tuning rate; its 1e-5 is for 30k steps)

Accuracy is the best validation accuracy over the evaluations (every ``steps // 3`` steps), as the
papers select checkpoints. The norm and cosine columns are the EPT paper's diagnostics of the exported
prompt (mean L2 norm per token; mean pairwise cosine similarity). Results go to ``WORK_DIR/methods.md``
and ``methods.json``; finished runs are reused when the command is repeated.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from typing import Dict, List, Optional

logger = logging.getLogger("xprompt_jax.benchmarks")  # a script: under the package logger, which prints

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

MODEL_FILES = ["models/t5_1_1.gin", "sizes/demo.gin"]
TASK = "demo_max_no_keyword"

# key: (label, run files, extra gin bindings)
METHODS = {
    "prompt_tuning": ("prompt tuning (10 tokens)", ["runs/demo_prompt_tune.gin"], {}),
    "ept": ("EPT (1 token, r=1)", ["runs/ept.gin"], {}),
    "ept_star": ("EPT* (10 copies, r=1)", ["runs/ept_star.gin"], {}),
    "ptuning": ("P-Tuning, MLP (10 tokens)", ["runs/ptuning.gin"], {}),
    "ptuning_lstm": ("P-Tuning, BiLSTM (10 tokens)", ["runs/ptuning.gin"], {"PTUNING_ENCODER": "lstm"}),
    "resprompt": ("ResPrompt (10 tokens)", ["runs/resprompt.gin"], {}),
    "full_finetune": ("full fine-tuning", ["runs/full_finetune.gin"], {"LEARNING_RATE": 1e-3}),
}


def configure(files: List[str], bindings: Dict[str, object]):
    import gin

    from xprompt_jax.cli.gin_flags import parse_gin
    gin.clear_config()
    parse_gin(MODEL_FILES + files, [f"{k} = {v!r}" for k, v in bindings.items()])


def demo_bindings(work_dir: str, checkpoint: str, steps: int, model_dir: str, seed: int) -> Dict[str, object]:
    """The demo task and schedule, the same for every method (its run file keeps its own optimiser)."""
    return {"MODEL_DIR": model_dir, "CHECKPOINT": checkpoint, "DATA_CACHE_DIR": os.path.join(work_dir, "data"),
            "TASK": TASK, "INPUT_LENGTH": 12, "TARGET_LENGTH": 4, "TRAIN_STEPS": steps,
            "EVAL_PERIOD": max(steps // 3, 1), "CHECKPOINT_PERIOD": steps, "SEED": seed,
            "xprompt_jax.EvalConfig.mode": "rank", "xprompt_jax.PromptSpec.population_size": 18}


def prompt_diagnostics(model_dir: str) -> Dict[str, Optional[float]]:
    import numpy as np

    from xprompt_jax import diagnostics
    path = os.path.join(model_dir, "export", "prompt.npy")
    if not os.path.exists(path):
        return {"norm": None, "cosine": None}
    metrics = diagnostics.prompt_metrics(np.load(path))
    cosine = metrics.get("prompt_cosine_similarity")
    return {"norm": float(metrics["prompt_token_norm_mean"]), "cosine": None if cosine is None else float(cosine)}


def training_setup() -> Dict[str, object]:
    """Optimiser, learning rate and batch size the configured run trains with."""
    from xprompt_jax.cli import gin_configurables as configured
    return {"optimizer": configured.Optimizer().name, "lr": configured.LearningRate().learning_rate,
            "batch": configured.DataConfig().batch_size}


def run_method(key: str, work_dir: str, checkpoint: str, steps: int, seed: int) -> dict:
    from xprompt_jax.cli import gin_configurables as configured
    label, files, extra = METHODS[key]
    model_dir = os.path.join(work_dir, "methods", key, f"seed{seed}")
    configure(files, {**demo_bindings(work_dir, checkpoint, steps, model_dir, seed), **extra})
    setup = training_setup()
    started = time.time()
    result = configured.train()
    return {"key": key, "method": label, "seed": seed, "parameters": result["trainable_parameters"],
            "accuracy": result["best"]["accuracy"], **setup, "gin": ", ".join(files),
            "seconds": time.time() - started, **prompt_diagnostics(model_dir)}


def run_xprompt(work_dir: str, checkpoint: str, steps: int, seed: int) -> dict:
    from xprompt_jax.cli import gin_configurables as configured
    model_dir = os.path.join(work_dir, "methods", "xprompt", f"seed{seed}")
    configure(["runs/demo_xprompt.gin"], demo_bindings(work_dir, checkpoint, steps, model_dir, seed))
    setup = training_setup()
    started = time.time()
    summary = configured.xprompt()
    pruned = [r for r in summary["rows"] if r["ratio"]]
    best = max(pruned, key=lambda r: (r["accuracy"], -r["parameters"]))
    return {"key": "xprompt", "method": f"XPrompt (best ratio {best['ratio']:.0%}, {best['tokens']} tokens left)",
            "seed": seed, "parameters": best["parameters"], "accuracy": best["accuracy"], **setup,
            "gin": "runs/demo_xprompt.gin", "seconds": time.time() - started,
            **prompt_diagnostics(model_dir)}


def _fmt(value, spec):
    return "-" if value is None else format(value, spec)


def format_table(rows: List[dict]) -> str:
    """One line per method: mean over seeds (and the seeds' accuracies when there are several)."""
    lines = ["| method | trainable parameters | accuracy (%) | optimiser, lr, batch | prompt norm / token | "
             "token cosine sim. |", "|---|---:|---:|---|---:|---:|"]
    order = []
    for r in rows:
        if r["key"] not in order:
            order.append(r["key"])
    for key in order:
        group = [r for r in rows if r["key"] == key]
        accs = [r["accuracy"] for r in group]
        acc = f"{sum(accs) / len(accs):.1f}" + (f" ({', '.join(f'{a:.1f}' for a in accs)})" if len(accs) > 1 else "")
        first = group[0]
        norms = [r["norm"] for r in group if r["norm"] is not None]
        cosines = [r["cosine"] for r in group if r["cosine"] is not None]
        method = " / ".join(dict.fromkeys(r["method"] for r in group))   # XPrompt's best ratio may differ by seed
        parameters = " / ".join(f"{p:,}" for p in dict.fromkeys(r["parameters"] for r in group))
        lines.append(f"| {method} | {parameters} | {acc} | {first['optimizer']}, {first['lr']:g}, "
                     f"{first['batch']} | {_fmt(sum(norms) / len(norms) if norms else None, '.1f')} | "
                     f"{_fmt(sum(cosines) / len(cosines) if cosines else None, '.3f')} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work_dir", default="methods_demo")
    parser.add_argument("--checkpoint", help="a frozen demo T5 (default: pre-train one into WORK_DIR/pretrain)")
    parser.add_argument("--steps", type=int, default=300, help="training steps of every method (demo: 300)")
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--only", help="comma-separated method keys: " + ", ".join(list(METHODS) + ["xprompt"]))
    parser.add_argument("--no_xprompt", action="store_true")
    args = parser.parse_args(argv)
    work_dir = os.path.abspath(args.work_dir)
    keys = list(METHODS) + ([] if args.no_xprompt else ["xprompt"])
    if args.only:
        keys = [k.strip() for k in args.only.split(",")]
        unknown = [k for k in keys if k not in METHODS and k != "xprompt"]
        if unknown:
            parser.error(f"unknown methods {unknown}; choose from {list(METHODS) + ['xprompt']}")

    from xprompt_jax.cli import demo
    started = time.time()
    checkpoint = args.checkpoint or demo.pretrain(work_dir, quick=False)
    rows = []
    for seed in range(args.seeds):
        for key in keys:
            logger.info(f"[methods] {key}, seed {seed}")
            row = (run_xprompt(work_dir, checkpoint, args.steps, seed) if key == "xprompt"
                   else run_method(key, work_dir, checkpoint, args.steps, seed))
            logger.info(f"[methods] {row['method']}: {row['parameters']:,} parameters, accuracy {row['accuracy']:.1f}")
            rows.append(row)
    table = format_table(rows)
    minutes = (time.time() - started) / 60
    with open(os.path.join(work_dir, "methods.json"), "w") as f:
        json.dump({"rows": rows, "steps": args.steps, "seeds": args.seeds, "checkpoint": checkpoint,
                   "minutes": minutes}, f, indent=2)
    with open(os.path.join(work_dir, "methods.md"), "w") as f:
        f.write(table + "\n")
    print(f"\n{TASK}, {args.steps} steps per method, frozen demo T5 ({checkpoint}); "
          f"{args.seeds} seed(s), {minutes:.1f} min\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
