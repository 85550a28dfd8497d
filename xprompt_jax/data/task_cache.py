"""A task split as the run reads it: a numpy cache, written from the seqio task on first use.

``open_split`` is the only door from the run to the data: it finds (or writes, with seqio, the one
step that needs TensorFlow) the cache of ``task:split`` at the run's lengths, then opens it without
TensorFlow. ``split_vocabulary`` is the vocabulary the split was tokenised with.
"""
from __future__ import annotations

import errno
import logging
import os
from typing import Any, Dict, Optional, Tuple

import jax

from tasks.fingerprint import describe_change, source_fingerprint
from xprompt_jax.data.cache import CachedSplit
from xprompt_jax.errors import ConfigError, DataError
from xprompt_jax.logs import is_main_process

logger = logging.getLogger(__name__)

# Where task caches go when DATA_CACHE_DIR is unset.
DEFAULT_DATA_CACHE = os.path.join(os.path.expanduser("~"), ".cache", "xprompt_jax", "data")
# The environment's say, as XPROMPT_COMPILATION_CACHE and XPROMPT_VOCAB_PATH do for theirs (the older
# XPROMPT_DATA_CACHE is read too).
CACHE_DIR_ENV = ("XPROMPT_DATA_CACHE_DIR", "XPROMPT_DATA_CACHE")


def resolve_cache_dir(configured: Optional[str] = None) -> str:
    """Where task caches live: DATA_CACHE_DIR (DataConfig.cache_dir), else $XPROMPT_DATA_CACHE_DIR, else
    ``~/.cache/xprompt_jax/data``."""
    return configured or next((os.environ[v] for v in CACHE_DIR_ENV if os.environ.get(v)), DEFAULT_DATA_CACHE)


def open_split(task: Optional[str], split: str, cache: Optional[str], data_cache_dir: Optional[str],
               input_length: int, target_length: int):
    """The cached split to read: ``cache`` if given, else ``data_cache_dir/<task>/<split>-<lengths>``.

    A cache under ``data_cache_dir`` belongs to the run: it is written from the seqio task when missing
    (the only step that needs TensorFlow), and rewritten, with one log line saying why, when it is
    damaged or its recorded sources (files, data folder, vocabulary, task version, lengths: see
    ``tasks.fingerprint``) differ from the current ones. A cache named by ``cache`` is the user's: it is
    opened as it is, and a damaged one is refused with one line.
    """
    if cache is not None:
        return CachedSplit.open(cache)
    if not task:
        raise ConfigError(f"no data for split {split!r}: set TASK (DataConfig.task), or the cache folder itself "
                          "(DataConfig.train_cache / DataConfig.eval_cache)")
    data_cache_dir = resolve_cache_dir(data_cache_dir)
    cache = os.path.join(data_cache_dir, task, f"{split}-{input_length}-{target_length}")
    lengths = {"inputs": int(input_length), "targets": int(target_length)}
    if jax.process_count() == 1:
        return _current_cache(task, split, cache, lengths)
    # Several processes: process 0 writes first, the others wait; on a shared filesystem they then find
    # it current, on their own disks (TPU VM workers) each writes its own. Every process gets here.
    if is_main_process():
        _current_cache(task, split, cache, lengths)
    from xprompt_jax.distributed import sync
    sync(f"xprompt_jax data cache {task}:{split}")
    return _current_cache(task, split, cache, lengths)


def _stale_reason(cache: str, fingerprint: Dict[str, Any]) -> Tuple[Optional[CachedSplit], Optional[str]]:
    """(the cache opened, None) when it is current, else (None, why it must be written)."""
    if not os.path.exists(cache):
        return None, "missing"
    try:
        opened = CachedSplit.open(cache)
    except DataError as err:
        return None, f"it is damaged ({str(err).split('; ')[0]})"
    change = describe_change(opened.meta.get("source_fingerprint"), fingerprint)
    return (opened, None) if change is None else (None, change)


def _current_cache(task: str, split: str, cache: str, lengths: Dict[str, int]) -> CachedSplit:
    fingerprint = source_fingerprint(task, split, lengths)
    opened, reason = _stale_reason(cache, fingerprint)
    if opened is not None:
        return opened
    if reason == "missing":
        logger.info(f"[data] writing the cache of {task}:{split} to {cache} (seqio)")
    else:
        logger.warning(f"[data] rewriting the cache of {task}:{split} at {cache}: {reason}")
    from xprompt_jax.data.write_cache import write_cache
    try:
        return write_cache(task, split, cache, lengths, overwrite=True)
    except ModuleNotFoundError as err:
        if err.name not in ("seqio", "tensorflow", "tensorflow_datasets"):
            raise
        raise DataError(f"the cache {cache} must be {'written' if reason == 'missing' else 'rewritten'} "
                        f"({reason}), which needs seqio and TensorFlow ({err.name} is not installed): write "
                        "it on a data host with `python -m xprompt_jax.data.write_cache`, or name a cache "
                        "folder with DataConfig.train_cache / DataConfig.eval_cache") from None
    except (OSError, ValueError) as err:
        # Another process on this filesystem may have finished the same cache first: read theirs.
        opened, _ = _stale_reason(cache, source_fingerprint(task, split, lengths))
        if opened is not None:
            return opened
        if isinstance(err, OSError) and err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise DataError(f"cannot write the cache of {task}:{split} to {cache} ({err.strerror}): set "
                            "DATA_CACHE_DIR (or XPROMPT_DATA_CACHE_DIR) to a folder you can write") from None
        raise


def split_vocabulary(split, vocabulary_path: Optional[str] = None):
    """The vocabulary to score and decode a split with: the one named, ``$XPROMPT_VOCAB_PATH``, the one
    the cache was written with, or T5's public one, in that order. A cache is never read with another
    vocabulary than the one it was written with: when both can be read and differ, that is refused."""
    from xprompt_jax.vocabulary import DEFAULT_VOCAB_PATH, load_vocabulary
    recorded = split.meta.get("vocabulary", {}).get("path")
    named = vocabulary_path or os.environ.get("XPROMPT_VOCAB_PATH")
    vocabulary = load_vocabulary(named or recorded or DEFAULT_VOCAB_PATH)
    if named and recorded and named != recorded:
        try:
            written_with = load_vocabulary(recorded)
        except ConfigError:  # not readable here (a bucket offline): the path names may differ for one file
            return vocabulary
        if written_with.fingerprint != vocabulary.fingerprint:
            raise ConfigError(f"the cache {split.path} was written with the vocabulary {recorded}, but the run names "
                              f"{named} (DataConfig.vocabulary_path or XPROMPT_VOCAB_PATH); its token ids mean other "
                              "words there: write the cache again with that vocabulary, or name the cache's own")
    return vocabulary
