"""A task split as the run reads it: a numpy cache, written from the seqio task on first use.

``open_split`` is the only door from the run to the data: it finds (or writes, with seqio, the one
step that needs TensorFlow) the cache of ``task:split`` at the run's lengths, then opens it without
TensorFlow. ``split_vocabulary`` is the vocabulary the split was tokenised with.
"""
from __future__ import annotations

import logging
import os
from typing import Optional

import jax

from xprompt_jax.errors import ConfigError
from xprompt_jax.logs import is_main_process

logger = logging.getLogger(__name__)

# Where task caches go when DATA_CACHE_DIR is unset.
DEFAULT_DATA_CACHE = os.path.join(os.path.expanduser("~"), ".cache", "xprompt_jax", "data")


def open_split(task: Optional[str], split: str, cache: Optional[str], data_cache_dir: Optional[str],
               input_length: int, target_length: int):
    """The cached split to read: ``cache`` if given, else ``data_cache_dir/<task>/<split>-<lengths>``.

    A missing cache is written from the seqio task first (this is the only place that needs TensorFlow).
    """
    from xprompt_jax.data.cache import CachedSplit
    if cache is None:
        if not task:
            raise ConfigError(f"no data for split {split!r}: set TASK (train.task), or the cache folder itself "
                              "(train.train_cache / train.eval_cache)")
        data_cache_dir = data_cache_dir or os.environ.get("XPROMPT_DATA_CACHE") or DEFAULT_DATA_CACHE
        cache = os.path.join(data_cache_dir, task, f"{split}-{input_length}-{target_length}")
        if jax.process_count() == 1:
            _write_cache_if_missing(task, split, cache, input_length, target_length)
        else:
            # Several processes: process 0 writes first, the others wait; on a shared filesystem they then
            # find it, on their own disks (TPU VM workers) each writes its own. Every process gets here.
            if is_main_process():
                _write_cache_if_missing(task, split, cache, input_length, target_length)
            from xprompt_jax.distributed import sync
            sync(f"xprompt_jax data cache {task}:{split}")
            _write_cache_if_missing(task, split, cache, input_length, target_length)
    return CachedSplit.open(cache)


def _write_cache_if_missing(task: str, split: str, cache: str, input_length: int, target_length: int):
    if os.path.exists(os.path.join(cache, "meta.json")):
        return
    logger.info(f"[data] writing the cache of {task}:{split} to {cache} (seqio)")
    from xprompt_jax.data.write_cache import write_cache
    try:
        write_cache(task, split, cache, {"inputs": input_length, "targets": target_length})
    except (OSError, ValueError):
        if not os.path.exists(os.path.join(cache, "meta.json")):
            raise
        # Another process on this filesystem finished the same cache first: read theirs.


def split_vocabulary(split, vocabulary_path: Optional[str] = None):
    """The vocabulary to score and decode a split with: the one named, ``$XPROMPT_VOCAB_PATH``, the one
    the cache was written with, or T5's public one, in that order."""
    from xprompt_jax.vocabulary import DEFAULT_VOCAB_PATH, load_vocabulary
    return load_vocabulary(vocabulary_path or os.environ.get("XPROMPT_VOCAB_PATH")
                           or split.meta.get("vocabulary", {}).get("path") or DEFAULT_VOCAB_PATH)
