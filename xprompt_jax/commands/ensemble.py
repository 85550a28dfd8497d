"""``xprompt-jax ensemble``: the majority vote of N saved prompts (and each alone) on a task split.

The prompts are read and checked (same shape, the model's width) before the model or data are loaded;
all N run in one batch on the one frozen model (``ensembling.PromptEnsemble``).
"""
from __future__ import annotations

import logging
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from xprompt_jax import assembly, export
from xprompt_jax.ensembling import EnsembleEvaluator, PromptEnsemble
from xprompt_jax.errors import ConfigError
from xprompt_jax.logs import is_main_process
from xprompt_jax.run.config import DataConfig, EvalConfig, FrozenModel, require_string

logger = logging.getLogger(__name__)


def load_prompts(sources: Sequence[str]) -> Tuple[np.ndarray, List[str]]:
    """(N, m, e) float32 prompts and the files they came from; prompts of different shapes are refused."""
    if isinstance(sources, (str, bytes)) or not isinstance(sources, (list, tuple)):
        raise ConfigError(f"the ensemble's prompt sources must be a list of files or run folders "
                          f"(PROMPT_SOURCES=['/a', '/b']), got {sources!r}")
    if not sources:
        raise ConfigError("the ensemble has no prompts: PROMPT_SOURCES is empty")
    loaded = [assembly.read_saved_prompt(str(s)) for s in sources]
    if len({saved.shape for saved in loaded}) > 1:
        detail = "; ".join(f"{saved.where}: {saved.shape[0]} tokens x {saved.shape[1]} wide" for saved in loaded)
        raise ConfigError(f"the ensemble's prompts differ in length or width ({detail}); an ensemble runs its "
                          "prompts side by side in one batch, so they must all be the same shape")
    return np.stack([saved.values for saved in loaded]), [saved.where for saved in loaded]


def ensemble(prompt_sources: Sequence[str],
             data: DataConfig = DataConfig(),
             model: FrozenModel = FrozenModel(),
             evaluation: EvalConfig = EvalConfig(),
             combine: str = "prefix",
             output_file: Optional[str] = None) -> Dict[str, Any]:
    """Score the majority vote of N saved prompts (and each prompt alone) on ``data.eval_split``.

    ``data.batch_size`` counts examples: each batch runs ``batch_size x N`` rows. ``output_file``: write
    the result as JSON there too.
    """
    if not isinstance(prompt_sources, (list, tuple, str)):  # an unset %gin.REQUIRED macro arrives as a sentinel
        require_string("PROMPT_SOURCES", None, "ensemble.prompt_sources")
    prompts, sources = load_prompts(prompt_sources)  # bad prompts fail before anything is loaded
    where = "the ensemble's prompts"
    assembly.check_prompt_fits(prompts.shape[1], prompts.shape[2], assembly.model_config_for(model), where=where)
    split, vocabulary = assembly.open_eval_data(data)
    assembly.check_prompt_fits(prompts.shape[1], None, None, assembly.cached_input_length(split), where=where)
    config, frozen = assembly.open_model(model, data.seed, vocabulary)
    ensembled = PromptEnsemble(config, prompts, combine)
    trainable, _ = ensembled.init()
    evaluator = assembly.evaluator_for(ensembled, split, vocabulary, data, evaluation, kind=EnsembleEvaluator)
    logger.info(f"[ensemble] {ensembled.num_prompts} prompts of {ensembled.length}x{config.emb_dim} on "
                f"{split.meta.get('task')}:{split.meta.get('split')}, "
                f"{evaluator.batch_size}x{ensembled.num_prompts} rows a batch")
    result = evaluator.evaluate(trainable, frozen)
    result["sources"] = sources
    for source, metrics in zip(sources, result["prompts"]):
        logger.info(f"[ensemble]   {source}: " + ", ".join(f"{k} {v:.2f}" for k, v in metrics.items()))
    logger.info("[ensemble] majority vote: " + ", ".join(f"{k} {v:.2f}" for k, v in result["ensemble"].items()))
    if output_file and is_main_process():
        export.save_json(output_file, result)
    return result
