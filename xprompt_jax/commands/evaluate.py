"""``xprompt-jax evaluate``: score a saved prompt (``.npy``, PEFT adapter or a run's MODEL_DIR) on a task split,
or, with ``PROMPT_SOURCE='none'``, the model alone (a fully fine-tuned model's ``export/model`` as CHECKPOINT:
model tuning's column of Lester et al.'s QA transfer table)."""
from __future__ import annotations

import logging
from typing import Dict

from xprompt_jax import assembly
from xprompt_jax.run.config import DataConfig, EvalConfig, FrozenModel, require_string

logger = logging.getLogger(__name__)
NO_PROMPT = "none"  # PROMPT_SOURCE that scores CHECKPOINT's model with no prompt in front


def evaluate(prompt_source: str,
             data: DataConfig = DataConfig(),
             model: FrozenModel = FrozenModel(),
             evaluation: EvalConfig = EvalConfig(),
             combine: str = "prefix") -> Dict[str, float]:
    """Metrics of a saved prompt on ``data.eval_split`` (or ``data.eval_cache``) of ``data.task``."""
    require_string("PROMPT_SOURCE", prompt_source, "evaluate.prompt_source")
    saved = None if prompt_source == NO_PROMPT else assembly.read_saved_prompt(prompt_source)
    split, vocabulary = assembly.open_eval_data(data)
    config, frozen = assembly.open_model(model, data.seed, vocabulary)
    prompted, trainable, masks = assembly.prompted_or_alone(config, saved, frozen, combine,
                                                            assembly.cached_input_length(split))
    where = saved.where if saved else f"{model.checkpoint} (no prompt)"
    metrics = assembly.evaluator_for(prompted, split, vocabulary, data, evaluation)(trainable, frozen, masks)
    logger.info(f"[evaluate] {where} on {split.meta.get('task')}:{split.meta.get('split')}: "
                + ", ".join(f"{k} {v:.2f}" for k, v in metrics.items()))
    return metrics
