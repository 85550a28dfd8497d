"""The frozen T5 a run adapts: read from a T5X or Hugging Face checkpoint, or random for tests and pre-training."""
from __future__ import annotations

import contextlib
import logging
from typing import Any, Dict, Optional, Tuple

import jax
import numpy as np

from xprompt_jax.errors import ConfigError
from xprompt_jax.models.config import T5Config
from xprompt_jax.models.t5 import init_params
from xprompt_jax.run.config import FrozenModel, resolve_activation_dtype

logger = logging.getLogger(__name__)


def model_config_for(source: FrozenModel):
    """The architecture to read ``source.checkpoint`` with: Hugging Face folders carry their own."""
    if source.checkpoint:
        from xprompt_jax.t5_import import resolve_checkpoint
        if resolve_checkpoint(source.checkpoint)[1] == "huggingface":
            return None
    return source.config


_KEPT: Optional[Dict[str, Tuple[T5Config, Any]]] = None


@contextlib.contextmanager
def keep_loaded():
    """Within this block the same frozen model (same source and seed) is read once: a sweep's cells of one
    model share its weights instead of reading a checkpoint per cell. The weights are never trained in
    place (the frozen tree is an input of every step), so sharing them is safe."""
    global _KEPT
    outer, _KEPT = _KEPT, ({} if _KEPT is None else _KEPT)
    try:
        yield
    finally:
        _KEPT = outer


@contextlib.contextmanager
def not_kept():
    """Within this block models are read without joining ``keep_loaded``'s shared set: a sweep's fine-tuned
    models are each read once, to score them, and must not stay in memory for the rest of the sweep."""
    global _KEPT
    outer, _KEPT = _KEPT, None
    try:
        yield
    finally:
        _KEPT = outer


def load_frozen(source: FrozenModel, seed: int = 0) -> Tuple[T5Config, Any]:
    """(config, params) of the frozen model; random weights (seeded) when no checkpoint is given. The
    activation dtype (ACTIVATION_DTYPE) is resolved for this platform and set on the config, whatever the
    checkpoint's format, so ``run_config.json`` records what the run computed in."""
    key = f"{source!r} seed={seed}"
    if _KEPT is not None and key in _KEPT:
        logger.info(f"[train] frozen model {source.checkpoint or 'random'}: already loaded in this process")
        config, params = _KEPT[key]
    else:
        config, params = _load(source, seed)
        if _KEPT is not None:  # one model at a time: a sweep runs its cells model by model
            _KEPT.clear()
            _KEPT[key] = (config, params)
    activations = resolve_activation_dtype(source.activation_dtype, jax.default_backend())
    if activations is not None and activations != config.dtype:
        config = config.replace(dtype=activations)
    return config, params


def _load(source: FrozenModel, seed: int) -> Tuple[T5Config, Any]:
    config = model_config_for(source)
    if source.checkpoint:
        from xprompt_jax.t5_import import load_t5_checkpoint
        return load_t5_checkpoint(source.checkpoint, config, param_dtype=source.dtype)
    if config is None:
        raise ConfigError("CHECKPOINT (FrozenModel.checkpoint) is unset and no model config is given: set "
                          "CHECKPOINT (a T5X or Hugging Face T5 checkpoint) or compose a sizes/ gin file")
    logger.info("[train] no checkpoint given: the model starts from random weights (pre-training, tests, benchmarks)")
    params = jax.tree.map(np.asarray, init_params(config, jax.random.PRNGKey(seed)))
    if source.dtype:
        params = jax.tree.map(lambda x: x.astype(source.dtype), params)
    return config, params


def check_vocabulary(config: T5Config, vocabulary, checkpoint) -> None:
    """The vocabulary must be the model's: no more ids than its embedding rows, and not far fewer either
    (T5's 32k vocabulary with mT5's 250,112 rows tokenises fine and means nothing). Rows are the ids
    (pieces + T5's 100 sentinels) padded to a multiple of 128, as every T5 family pads them."""
    if vocabulary.piece_count > config.vocab_size:
        raise ConfigError(f"the vocabulary {vocabulary.path} has {vocabulary.piece_count} pieces but the model "
                          f"{checkpoint or ''} embeds only {config.vocab_size}; use the model's own vocabulary")
    padded = -(-(vocabulary.piece_count + 100) // 128) * 128
    if config.vocab_size > padded + 128:
        raise ConfigError(f"the vocabulary {vocabulary.path} has {vocabulary.piece_count:,} pieces but the model "
                          f"{checkpoint or ''} embeds {config.vocab_size:,} rows: it is not the model's vocabulary "
                          "(mT5 needs gs://t5-data/vocabs/mc4.250000.100extra/sentencepiece.model, ByT5 "
                          "XPROMPT_VOCAB_PATH=byte); set XPROMPT_VOCAB_PATH (and DataConfig.vocabulary_path)")
