"""``xprompt-jax evaluate``: score a saved prompt (``.npy``, PEFT adapter or a run's MODEL_DIR) on a task split."""
from __future__ import annotations

import logging
from typing import Dict

import jax

from xprompt_jax import export
from xprompt_jax.errors import ConfigError
from xprompt_jax.prompted import PromptedT5
from xprompt_jax.prompts.initializers import from_array
from xprompt_jax.prompts.modules import Prompt
from xprompt_jax.run.config import DataConfig, EvalConfig, FrozenModel, require_string
from xprompt_jax.run.data import buckets_for, open_eval_split
from xprompt_jax.run.evaluator import Evaluator
from xprompt_jax.run.frozen_model import load_frozen

logger = logging.getLogger(__name__)


def evaluate(prompt_source: str,
             data: DataConfig = DataConfig(),
             model: FrozenModel = FrozenModel(),
             evaluation: EvalConfig = EvalConfig(),
             combine: str = "prefix") -> Dict[str, float]:
    """Metrics of a saved prompt on ``data.eval_split`` (or ``data.eval_cache``) of ``data.task``."""
    require_string("PROMPT_SOURCE", prompt_source, "evaluate.prompt_source")
    values, source = export.load_prompt_source(prompt_source)
    split, vocabulary = open_eval_split(data)
    config, frozen = load_frozen(model, data.seed)
    if values.shape[1] != config.emb_dim:
        raise ConfigError(f"the prompt in {source} is {values.shape[1]} wide but the model is {config.emb_dim} wide")
    prompted = PromptedT5(config, Prompt(length=values.shape[0], width=config.emb_dim, pieces=1,
                                         init_fn=from_array(values, source)), combine)
    trainable, masks = prompted.init(jax.random.PRNGKey(0))
    evaluator = Evaluator(prompted, split, vocabulary, evaluation.batch_size or data.batch_size, evaluation.mode,
                          buckets=buckets_for(data, split))
    metrics = evaluator(trainable, frozen, masks)
    logger.info(f"[evaluate] {source} on {split.meta.get('task')}:{split.meta.get('split')}: "
                + ", ".join(f"{k} {v:.2f}" for k, v in metrics.items()))
    return metrics
