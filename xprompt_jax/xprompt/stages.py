"""XPrompt end to end (Ma et al. 2022): prompt tuning -> hierarchical structured pruning -> rewinding.

``xprompt()`` (gin: ``runs/xprompt.gin``) runs the three stages with the one ``train()`` of prompt
tuning, each under its own folder of ``MODEL_DIR``, and skips any stage already finished, so a
stopped run resumes between stages (and within one, from its checkpoints):

    stage1/                    prompt tuning; its best prompt P* is the rewind point
    pruning/ratio_0.30/        masks.npz, scores.npz (importance at the masks pruned from), heatmap.png
    rewind/ratio_0.30/         retraining of the rewound prompt under those masks (stage-1 schedule)
    summary.json               ratio, surviving parameters, best validation score, per stage
    export/                    the best ratio's masked prompt (prompt.npy), its masks and scores

Importance is computed on the training split at the current masks; each ratio prunes further from
the previous ratio's masks, so masks only lose entries. Variants (gin): ``level`` 'token' / 'piece'
(granularity ablations), ``reverse`` (Reversed XPrompt), ``variant`` 'random' (Random Prompt: random
masks at the same sparsity) or 'length' (Length Prompt: a fresh prompt with as many tokens as the
survivors' parameters fill). XPrompt Transfer is stage 1 initialised from another XPrompt run's
exported prompt: compose ``prompts/from_file.gin`` with ``PROMPT_FILE`` = that run's ``MODEL_DIR``.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import os
from typing import Any, Dict, Optional, Sequence

import jax
import numpy as np

from xprompt_jax import assembly, export, stopping
from xprompt_jax.errors import ConfigError
from xprompt_jax.logs import is_main_process
from xprompt_jax.optimizers import LearningRate, Optimizer
from xprompt_jax.prompted import PROMPT
from xprompt_jax.prompts import masks as mask_lib
from xprompt_jax.prompts.kinds import PromptSpecBase, make_spec
from xprompt_jax.prompts.modules import MATRIX
from xprompt_jax.run.checkpoints import BestCheckpoint
from xprompt_jax.run.config import DataConfig, EvalConfig, FrozenModel, MeshConfig, RunSettings, ScheduleConfig
from xprompt_jax.run.data import eval_batches
from xprompt_jax.run.lock import prepare_model_dir
from xprompt_jax.run.loop import run_training
from xprompt_jax.run.preemption import PreemptionWatcher
from xprompt_jax.run.run_dir import check_model_dir, read_json_file, record_or_refuse
from xprompt_jax.run.session import Start
from xprompt_jax.xprompt import heatmaps, importance, pruning

logger = logging.getLogger(__name__)

VARIANTS = ("xprompt", "random", "length")
RESULT_FILE = "result.json"
SETTINGS_FILE = "xprompt_settings.json"


def _ratio_name(ratio: float) -> str:
    return f"ratio_{ratio:.2f}"


def _train_stage(directory: str, settings: RunSettings, start: Start) -> dict:
    """One stage's training run, skipped when its ``result.json`` says it finished.

    A preempted stage raises ``RunPreempted`` out of ``run_training`` and writes no result: it resumes.
    """
    done = read_json_file(os.path.join(directory, RESULT_FILE), "a finished stage's result")
    if done is not None:
        logger.info(f"[xprompt] {directory} already finished: skipped")
        return done
    result = run_training(directory, settings, start)
    summary = {k: v for k, v in result.items() if k != "prompt"}
    if is_main_process():
        export.save_json(os.path.join(directory, RESULT_FILE), summary)
    return summary


def _shown(value: Optional[float]) -> str:
    """A score as a person reads it (2 decimals, as the tables); the JSON files keep full precision."""
    return "-" if value is None else f"{value:.2f}"


def _best_metric(result: dict, metric: str) -> Optional[float]:
    best = result.get("best") or result.get("final") or {}
    return best.get(metric)


def check_settings(model_dir: str, settings: Dict[str, Any]) -> None:
    """Record the settings that make the stages' outputs; a re-run with other ones is refused, by field."""
    path = os.path.join(model_dir, SETTINGS_FILE)
    stage1 = os.path.join(model_dir, "stage1")
    if not os.path.exists(path) and os.path.isdir(stage1) and os.listdir(stage1):
        logger.warning(f"[xprompt] {model_dir} has stage outputs but no {SETTINGS_FILE} (an older run): "
                       "they are reused as they are")
    record_or_refuse(path, settings, "an XPrompt run")


def _check_plan(ratios, level, reverse, variant, token_share, spec: PromptSpecBase, evaluation: EvalConfig) -> list:
    """Everything about the pruning plan that can be wrong, before stage 1 trains."""
    if variant not in VARIANTS:
        raise ConfigError(f"xprompt.variant must be one of {list(VARIANTS)}, got {variant!r}")
    if level not in pruning.LEVELS:
        raise ConfigError(f"xprompt.level must be one of {list(pruning.LEVELS)}, got {level!r}")
    if not isinstance(reverse, bool):
        raise ConfigError(f"xprompt.reverse must be True or False, got {reverse!r}")
    if not isinstance(ratios, (list, tuple)) or not ratios:
        raise ConfigError(f"xprompt.ratios (RATIOS) must be a list of compression ratios, e.g. [0.3, 0.5], "
                          f"got {ratios!r}")
    ratios = [pruning.check_ratio(r) for r in ratios]
    if list(ratios) != sorted(set(ratios)):
        raise ConfigError(f"xprompt.ratios must increase strictly, got {list(ratios)}")
    if spec.kind != "prompt":
        raise ConfigError(f"XPrompt prunes and rewinds a plain prompt matrix; PromptSpec.kind={spec.kind!r} "
                          "(a reparameterised prompt) is not supported: use kind='prompt'")
    for ratio in ratios:  # a ratio that prunes the whole prompt fails here, not after stage 1
        pruning.plan_for_ratio(ratio, spec.length, spec.pieces, level=level, token_share=token_share)
    return ratios


def xprompt(model_dir: str,
            ratios: Sequence[float] = pruning.DEFAULT_RATIOS,
            level: str = "hierarchical",
            reverse: bool = False,
            variant: str = "xprompt",
            recompute_scores: bool = True,
            token_share: float = 0.5,
            importance_examples: Optional[int] = None,
            importance_batch_size: Optional[int] = None,
            heatmaps_png: bool = True,
            print_table: bool = True,
            data: DataConfig = DataConfig(),
            schedule: ScheduleConfig = ScheduleConfig(),
            evaluation: EvalConfig = EvalConfig(),
            model: FrozenModel = FrozenModel(),
            optimizer: Optimizer = Optimizer(),
            learning_rate: LearningRate = LearningRate(),
            mesh: MeshConfig = MeshConfig(),
            prompt_spec: Optional[PromptSpecBase] = None) -> Dict[str, Any]:
    """Run XPrompt's three stages; returns the summary table (also in ``MODEL_DIR/summary.json``).

    Every stage trains with the same settings objects as ``train`` (``runs/xprompt.gin`` binds the
    same ones), so every rewind uses the stage-1 schedule. ``importance_examples`` limits the training
    examples the scores average over (default: all). ``print_table=False``: the caller prints its own
    (the demo's, with its baselines).
    """
    check_model_dir(model_dir)
    settings = RunSettings(data=data, schedule=schedule, evaluation=evaluation, model=model, optimizer=optimizer,
                           learning_rate=learning_rate, prompt_spec=prompt_spec, mesh=mesh)
    plan = PruningPlan(_check_plan(ratios, level, reverse, variant, token_share, settings.prompt_spec, evaluation),
                       level, reverse, variant, recompute_scores, token_share, importance_examples,
                       importance_batch_size, heatmaps_png, print_table)
    prepare_model_dir(model_dir)
    check_settings(model_dir, {"variant": variant, "level": level, "ratios": plan.ratios, "reverse": reverse,
                               "recompute_scores": recompute_scores, "token_share": token_share,
                               "importance_examples": importance_examples, "seed": data.seed})
    with PreemptionWatcher():  # SIGTERM between or inside stages: the stage in progress stops cleanly
        return _run_stages(model_dir, settings, plan)


@dataclasses.dataclass(frozen=True)
class PruningPlan:
    """XPrompt's stage-2 settings: which ratios, at which level, scored how."""
    ratios: Sequence[float]
    level: str
    reverse: bool
    variant: str
    recompute_scores: bool
    token_share: float
    importance_examples: Optional[int]
    importance_batch_size: Optional[int]
    heatmaps_png: bool
    print_table: bool = True


def _run_stages(model_dir: str, settings: RunSettings, plan: PruningPlan) -> Dict[str, Any]:
    config, frozen = assembly.open_model(settings.model, settings.data.seed)
    prompt_spec, metric = settings.prompt_spec, settings.evaluation.metric
    mask_lib.check_pieces(config.emb_dim, prompt_spec.pieces)

    # Stage 1: prompt tuning. Its best prompt is P*, the rewind point.
    logger.info("[xprompt] stage 1: prompt tuning (its best prompt is the rewind point P*)")
    stage1_dir = os.path.join(model_dir, "stage1")
    stage1 = _train_stage(stage1_dir, settings, Start(frozen_model=(config, frozen)))
    width = config.emb_dim
    rows = [{"stage": "prompt tuning", "ratio": 0.0, "tokens": prompt_spec.length,
             "parameters": prompt_spec.length * width, metric: _best_metric(stage1, metric)}]
    logger.info(f"[xprompt] stage 1 done: best {metric} {_shown(rows[0][metric])}")
    # Stage 2: importance scores and masks for every ratio (masks only lose entries).
    model_ = assembly.prompted_model(config, prompt_spec, frozen)
    p_star, stage1_masks = _rewind_point(stage1_dir, metric, model_)
    score_fn = _score_fn(model_, p_star, frozen, settings.data, plan)
    masks_by_ratio = _plan_masks(model_dir, plan, score_fn, stage1_masks)

    # Stage 3: rewind to P* under each ratio's masks and retrain with the stage-1 schedule.
    logger.info(f"[xprompt] stage 3: rewinding to P* and retraining under each ratio's masks "
                f"({', '.join(f'{r:.0%}' for r, _ in masks_by_ratio)})")
    for ratio, masks in masks_by_ratio:
        rows.append(_rewind_stage(settings, (config, frozen), model_dir, ratio, masks, p_star, plan, metric))
    summary = {"metric": metric, "variant": plan.variant, "level": plan.level, "reverse": plan.reverse, "rows": rows}
    if is_main_process():
        export.save_json(os.path.join(model_dir, "summary.json"), summary)
        _export_best(model_dir, rows, masks_by_ratio, p_star, model_, metric)
        if plan.print_table:
            logger.info(format_table(rows, metric))
    return summary


def _rewind_point(stage1_dir: str, metric: str, model):
    """P* (stage 1's best prompt) and its masks; from stage 1's export when its best checkpoint is damaged."""
    restored = BestCheckpoint(stage1_dir, metric).restore_intact()
    if restored is not None:
        return restored[0]["trainable"], restored[0]["masks"]
    saved = assembly.read_saved_prompt(stage1_dir)
    logger.warning(f"[xprompt] rewinding to stage 1's exported prompt {saved.where} instead")
    trainable, masks = model.init(jax.random.PRNGKey(0))
    return {**trainable, PROMPT: {MATRIX: jax.numpy.asarray(saved.values)}}, masks


def _score_fn(model, p_star, frozen, data: DataConfig, plan: PruningPlan):
    """Importance at given masks: expected |dL/dmask| on the training split (or random, for Random Prompt)."""
    if plan.variant == "random":
        return pruning.random_score_fn(jax.random.PRNGKey(data.seed))
    train_data = assembly.open_data(data, with_eval=False).train
    batch_size = plan.importance_batch_size or data.batch_size

    def batches():
        for batch, valid, _ in eval_batches(train_data, batch_size):
            stopping.check("computing XPrompt's importance scores (stage 2; the masks of finished ratios are kept)")
            yield batch, valid

    def score_fn(masks):
        return importance.importance_scores(model, p_star, frozen, masks, batches(),
                                            max_examples=plan.importance_examples)
    return score_fn


def _rewind_stage(settings: RunSettings, frozen_model, model_dir, ratio, masks, p_star, plan: PruningPlan,
                  metric) -> dict:
    directory = os.path.join(model_dir, "rewind", _ratio_name(ratio))
    prompt_spec, width = settings.prompt_spec, frozen_model[0].emb_dim
    surviving = mask_lib.surviving_parameters(masks[mask_lib.TOKEN_MASK], masks[mask_lib.PIECE_MASK], width)
    if plan.variant == "length":
        tokens = max(1, math.ceil(surviving / width))
        spec = make_spec(**{**prompt_spec.to_dict(), "length": tokens})
        result = _train_stage(directory, dataclasses.replace(settings, prompt_spec=spec),
                              Start(frozen_model=frozen_model))
        surviving = tokens * width
    else:
        start = Start(frozen_model=frozen_model, trainable=pruning.rewind(p_star, masks),
                      masks={k: np.asarray(v) for k, v in masks.items()})
        result = _train_stage(directory, settings, start)
        tokens = mask_lib.surviving_tokens(masks[mask_lib.TOKEN_MASK], masks[mask_lib.PIECE_MASK])
    row = {"stage": f"{plan.variant} {plan.level}{' reversed' if plan.reverse else ''}", "ratio": ratio,
           "tokens": tokens, "parameters": surviving, metric: _best_metric(result, metric)}
    logger.info(f"[xprompt] ratio {ratio:.2f}: {surviving} parameters, best {metric} {_shown(row[metric])}")
    return row


def _plan_masks(model_dir, plan: PruningPlan, score_fn, stage1_masks):
    """Masks (and scores, heatmaps) for every ratio, read back when stage 2 already ran."""
    done, pending = [], []
    for ratio in plan.ratios:
        path = os.path.join(model_dir, "pruning", _ratio_name(ratio), "masks.npz")
        saved = None if pending else _read_masks(path)
        if saved is None:
            pending.append(ratio)  # this ratio and every later one (each prunes from the one before)
        else:
            done.append((ratio, saved))
    if not pending:
        return done
    logger.info(f"[xprompt] stage 2: importance scores and masks for ratios {pending}")
    start = done[-1][1] if done else {k: np.asarray(v) for k, v in stage1_masks.items()}
    steps = pruning.ratio_schedule(score_fn, start, pending, level=plan.level, reverse=plan.reverse,
                                   recompute=plan.recompute_scores, token_share=plan.token_share)
    for step in steps:
        folder = os.path.join(model_dir, "pruning", _ratio_name(step.ratio))
        if is_main_process():
            export.save_npz(os.path.join(folder, "scores.npz"), **step.scores)
            export.save_npz(os.path.join(folder, "masks.npz"), **step.masks)
        done.append((step.ratio, dict(step.masks)))
    if plan.heatmaps_png and is_main_process():
        _draw_heatmaps(model_dir, done)
    return done


def _draw_heatmaps(model_dir: str, done) -> None:
    """Each ratio's heatmap and ``pruning/heatmaps.png`` (all ratios side by side), on one colour scale per
    run so the pictures compare across ratios."""
    entries = []
    for ratio, masks in done:
        scores_file = os.path.join(model_dir, "pruning", _ratio_name(ratio), "scores.npz")
        if os.path.exists(scores_file):
            with np.load(scores_file) as saved:
                entries.append((ratio, np.asarray(saved["piece"]), masks))
    if not entries:
        return
    scale = heatmaps.run_scale(entries)
    for ratio, scores, masks in entries:
        heatmaps.save_heatmap(os.path.join(model_dir, "pruning", _ratio_name(ratio), "heatmap.png"), scores,
                              masks[mask_lib.TOKEN_MASK], masks[mask_lib.PIECE_MASK], scale=scale,
                              title=f"importance at ratio {ratio:.0%} (grey: pruned)")
    heatmaps.save_overview(os.path.join(model_dir, "pruning", "heatmaps.png"), entries)


def _read_masks(path: str) -> Optional[dict]:
    """The masks stage 2 saved for a ratio, or None when absent or damaged (recomputed: a full disk or a
    killed copy leaves a truncated file, and the masks are a deterministic function of the scores)."""
    if not os.path.exists(path):
        return None
    try:
        with np.load(path) as saved:
            masks = {k: np.asarray(saved[k]) for k in saved.files}
        if set(masks) != {mask_lib.TOKEN_MASK, mask_lib.PIECE_MASK}:
            raise ValueError(f"holds {sorted(masks)}")
        pruning.check_masks(masks)
        return masks
    except Exception as err:  # BadZipFile, EOFError, ValueError, OSError: numpy raises many kinds
        logger.warning(f"[xprompt] {path} is damaged ({type(err).__name__}: {str(err)[:120]}); recomputing "
                       "that ratio's masks")
        return None


def _export_best(model_dir, rows, plan, p_star, model, metric):
    scored = [(r[metric], r["ratio"]) for r in rows[1:] if r[metric] is not None]
    if not scored:
        return
    best_ratio = max(scored, key=lambda t: (t[0], t[1]))[1]
    directory = os.path.join(model_dir, "rewind", _ratio_name(best_ratio))
    source = os.path.join(directory, export.EXPORT_DIR, export.PROMPT_FILE)
    if os.path.exists(source):
        values = np.load(source)
        export.save_npy(os.path.join(model_dir, export.EXPORT_DIR, export.PROMPT_FILE), values)
        masks = dict(plan)[best_ratio]
        export.save_npz(os.path.join(model_dir, export.EXPORT_DIR, "masks.npz"), **masks)
        scores = os.path.join(model_dir, "pruning", _ratio_name(best_ratio), "scores.npz")
        if os.path.exists(scores):
            with np.load(scores) as saved:
                export.save_npz(os.path.join(model_dir, export.EXPORT_DIR, "scores.npz"), **dict(saved))
        export.save_json(os.path.join(model_dir, export.EXPORT_DIR, "best.json"), {"ratio": best_ratio, metric: max(scored)[0]})


def format_table(rows: Sequence[dict], metric: str) -> str:
    lines = [f"{'stage':<28} {'ratio':>6} {'tokens':>6} {'parameters':>10} {metric:>10}"]
    for r in rows:
        value = "-" if r[metric] is None else f"{r[metric]:.2f}"
        lines.append(f"{r['stage']:<28} {r['ratio']:>6.0%} {r['tokens']:>6} {r['parameters']:>10,} {value:>10}")
    return "\n".join(lines)
