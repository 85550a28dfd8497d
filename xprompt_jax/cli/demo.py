"""The built-in demo: prompt tuning and XPrompt visibly working on a laptop CPU, with no download.

    xprompt-jax demo [--work_dir xprompt_demo] [--quick]

1. Pre-trains a tiny T5 (``sizes/demo.gin``) from scratch on the keyword digit tasks of
   ``tasks.demo`` (``runs/demo_pretrain.gin``), once: the model is cached in ``WORK_DIR/pretrain``.
2. Freezes it and measures it on ``max`` *without* the keyword (``3 1 4`` -> ``4``), an invocation it
   never saw: with no prompt and with a random untrained prompt.
3. Runs XPrompt (``runs/demo_xprompt.gin``): prompt tuning, importance scores, pruning to each ratio,
   rewinding; then prints accuracy and trainable parameters per stage and where the heatmaps are.

Every stage is the real pipeline (seqio tasks -> numpy caches -> jitted train step -> orbax
checkpoints), composed from the same gin files a researcher uses; re-running skips finished stages.
``--quick`` shortens every stage (used by the test suite).
"""
from __future__ import annotations

import logging
import os
import time
from typing import Dict, List

import gin
import jax

from xprompt_jax import export
from xprompt_jax.cli import gin_configurables as configured
from xprompt_jax.cli.gin_flags import parse_gin
from xprompt_jax.run.config import EvalConfig

logger = logging.getLogger(__name__)

MODEL_FILES = ["models/t5_1_1.gin", "sizes/demo.gin"]
QUICK = {"pretrain_steps": 700, "pretrain_examples": 12_800, "prompt_steps": 150, "ratios": [0.5, 0.8]}
TASK = "demo_max_no_keyword"


def _configure(files: List[str], bindings: Dict[str, object]):
    gin.clear_config()
    parse_gin(MODEL_FILES + files, [f"{k} = {v!r}" for k, v in bindings.items()])


def pretrain(work_dir: str, quick: bool) -> str:
    """The frozen model of the demo: pre-trained once, then read from its export."""
    model_dir = os.path.join(work_dir, "pretrain")
    exported = os.path.join(model_dir, "export", "model")
    if os.path.isdir(exported):
        logger.info(f"[demo] 1/3 pre-trained demo T5 found at {exported}: reused")
        return exported
    logger.info("[demo] 1/3 pre-training the demo's tiny T5 on the keyword tasks (once; cached)")
    bindings = {"MODEL_DIR": model_dir, "DATA_CACHE_DIR": os.path.join(work_dir, "data")}
    if quick:
        bindings.update(TRAIN_STEPS=QUICK["pretrain_steps"], EVAL_PERIOD=QUICK["pretrain_steps"],
                        CHECKPOINT_PERIOD=QUICK["pretrain_steps"])
        # The first examples only, in caches of their own that the run names (a run's own cache under
        # DATA_CACHE_DIR records the whole split as its source, and would be rewritten in full).
        bindings["xprompt_jax.DataConfig.train_cache"] = _write_small_cache(
            work_dir, "demo_pretrain", "train", QUICK["pretrain_examples"], (12, 10))
        bindings["xprompt_jax.DataConfig.eval_cache"] = _write_small_cache(
            work_dir, "demo_pretrain", "validation", 200, (12, 10))
    _configure(["runs/demo_pretrain.gin"], bindings)
    configured.train()
    return exported


def _write_small_cache(work_dir, task, split, count, lengths) -> str:
    """The first ``count`` examples of ``task:split`` cached once under ``data/<task>/quick-...``; its path."""
    path = os.path.join(work_dir, "data", task, f"quick-{split}-{lengths[0]}-{lengths[1]}")
    if not os.path.exists(os.path.join(path, "meta.json")):
        from xprompt_jax.data.write_cache import write_cache
        logger.info(f"[data] writing the first {count} examples of {task}:{split} to {path} (seqio)")
        write_cache(task, split, path, {"inputs": lengths[0], "targets": lengths[1]}, num_examples=count)
    return path


def baselines(checkpoint: str, work_dir: str) -> Dict[str, float]:
    """Accuracy of the frozen model with no prompt, and with a random untrained prompt."""
    from xprompt_jax import assembly
    from xprompt_jax.prompts.kinds import make_spec
    data = configured.DataConfig()  # the gin-bound settings of the run
    evaluation = EvalConfig(mode="rank", batch_size=100)
    split, vocabulary = assembly.open_eval_data(data)
    config, frozen = assembly.open_model(configured.FrozenModel(checkpoint=checkpoint), vocabulary=vocabulary)
    plain = assembly.prompted_model(config, None, frozen)
    no_prompt = assembly.evaluator_for(plain, split, vocabulary, data, evaluation)({}, frozen, {})
    spec = configured.PromptSpec()
    random_model = assembly.prompted_model(config, make_spec(**{**spec.to_dict(), "init": "uniform"}), frozen)
    trainable, masks = random_model.init(jax.random.PRNGKey(0))
    random_prompt = assembly.evaluator_for(random_model, split, vocabulary, data, evaluation)(trainable, frozen, masks)
    # The answer of 'max' is skewed towards 9 (the largest of 3-8 random digits): the honest floor is
    # always answering the most common digit, not 1 in 10.
    answers = [ex["targets_pretokenized"] for ex in split.examples]
    common = max(set(answers), key=answers.count)
    return {"no prompt": no_prompt["accuracy"], "random prompt": random_prompt["accuracy"],
            "majority": 100.0 * answers.count(common) / len(answers), "majority_answer": common,
            "prompt_length": spec.length, "width": config.emb_dim}


def run_demo(work_dir: str = "xprompt_demo", quick: bool = False) -> dict:
    started = time.time()
    work_dir = os.path.abspath(work_dir)
    checkpoint = pretrain(work_dir, quick)

    bindings = {"MODEL_DIR": os.path.join(work_dir, "xprompt" + ("_quick" if quick else "")),
                "DATA_CACHE_DIR": os.path.join(work_dir, "data"), "CHECKPOINT": checkpoint}
    if quick:
        steps = QUICK["prompt_steps"]
        bindings.update(TRAIN_STEPS=steps, EVAL_PERIOD=steps // 3, CHECKPOINT_PERIOD=steps, RATIOS=QUICK["ratios"])
    _configure(["runs/demo_xprompt.gin"], bindings)
    logger.info(f"[demo] 2/3 the frozen model on '{TASK}' (digits without the 'max:' keyword): baselines")
    base = baselines(checkpoint, work_dir)
    logger.info(f"[demo]     no prompt: accuracy {base['no prompt']:.1f}; random untrained prompt: "
                f"{base['random prompt']:.1f}; always answering '{base['majority_answer']}': {base['majority']:.1f}")
    logger.info("[demo] 3/3 XPrompt: prompt tuning, importance scores, pruning, rewinding")
    summary = configured.xprompt(print_table=False)  # the demo prints one table, with its baselines

    rows = [{"stage": f"always answer '{base['majority_answer']}' (majority)", "ratio": None, "tokens": 0,
             "parameters": 0, "accuracy": base["majority"]},
            {"stage": "frozen model, no prompt", "ratio": None, "tokens": 0, "parameters": 0,
             "accuracy": base["no prompt"]},
            {"stage": "random untrained prompt", "ratio": None, "tokens": base["prompt_length"],
             "parameters": 0, "accuracy": base["random prompt"]}] + summary["rows"]
    model_dir = bindings["MODEL_DIR"]
    pruning_dir = os.path.join(model_dir, "pruning")
    heatmaps = sorted(os.path.join(pruning_dir, d, "heatmap.png") for d in os.listdir(pruning_dir)
                      if d.startswith("ratio_"))
    minutes = (time.time() - started) / 60
    results = {"rows": rows, "heatmaps": heatmaps, "overview": os.path.join(pruning_dir, "heatmaps.png"),
               "minutes": minutes, "quick": quick}
    export.save_json(os.path.join(work_dir, "demo_results" + ("_quick" if quick else "") + ".json"), results)
    logger.info("\n" + format_demo_table(rows))
    logger.info(f"\n[demo] heatmaps: {pruning_dir}/heatmaps.png (every ratio side by side) and "
                f"{pruning_dir}/ratio_*/heatmap.png")
    logger.info(f"[demo] done in {minutes:.1f} min; everything is under {work_dir}")
    return results


def format_demo_table(rows) -> str:
    lines = ["| stage | pruned | prompt tokens | trainable parameters | accuracy (%) |", "|---|---:|---:|---:|---:|"]
    for r in rows:
        pruned = "-" if r["ratio"] is None else f"{r['ratio']:.0%}"
        acc = "-" if r["accuracy"] is None else f"{r['accuracy']:.1f}"
        lines.append(f"| {r['stage']} | {pruned} | {r['tokens']} | {r['parameters']:,} | {acc} |")
    return "\n".join(lines)
