"""The run's data: its splits and vocabulary, training batches and evaluation batches with validity.

Opening a split (and writing its cache on first use) is ``xprompt_jax.data.task_cache``'s job; here the
run's ``DataConfig`` is turned into the splits it trains and evaluates on, and the cached arrays into
batches laid out for the device mesh. With length buckets (``DataConfig.length_buckets``) each batch is
cut to the smallest of a few static encoder lengths that holds its longest example: padding is masked,
so results do not change, and the jitted step compiles once per bucket.
"""
from __future__ import annotations

import collections
import dataclasses
from typing import Any, Callable, Iterator, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from xprompt_jax import partitioning, train_step
from xprompt_jax.data.task_cache import open_split, split_vocabulary
from xprompt_jax.run.config import DataConfig


@dataclasses.dataclass
class RunData:
    """The splits a run reads and the vocabulary that scores and decodes them."""
    train: Any
    eval: Optional[Any]
    vocabulary: Any

    @property
    def cached_input_length(self) -> int:
        return cached_input_length(self.train)


def cached_input_length(split) -> int:
    """The encoder length a split was cached at (the longest batches are cut to)."""
    return int(split.features["encoder_input_tokens"].shape[1])


def open_run_data(data: DataConfig, with_eval: bool = True) -> RunData:
    """Training split, evaluation split (if any) and vocabulary; a bad task or cache fails here, first."""
    train = open_split(data.task, data.train_split, data.train_cache, data.cache_dir, data.input_length,
                       data.target_length)
    evaluation = None
    if with_eval and (data.eval_split or data.eval_cache):
        evaluation = open_split(data.task, data.eval_split, data.eval_cache, data.cache_dir, data.input_length,
                                data.target_length)
    return RunData(train, evaluation, split_vocabulary(train, data.vocabulary_path))


def open_eval_split(data: DataConfig):
    """The split that ``evaluate``/``ensemble`` score, and its vocabulary."""
    split = open_split(data.task, data.eval_split, data.eval_cache, data.cache_dir, data.input_length,
                       data.target_length)
    return split, split_vocabulary(split, data.vocabulary_path)


def buckets_for(data: DataConfig, split) -> Optional[Tuple[int, ...]]:
    """The encoder lengths batches are padded to, or None for the cache's fixed length.

    ``length_buckets`` True: ``bucket_lengths`` of the cache's input length; given lengths: those below
    the input length, then the input length itself (so every example fits).
    """
    if data.length_buckets is False:
        return None
    from xprompt_jax.data.buckets import bucket_lengths
    width = cached_input_length(split)
    if data.length_buckets is True:
        buckets = tuple(bucket_lengths(width))
    else:
        buckets = tuple(b for b in data.length_buckets if b < width) + (width,)
    return capped(buckets, data.max_buckets)


def capped(buckets: Tuple[int, ...], most: Optional[int]) -> Tuple[int, ...]:
    """At most ``most`` of ``buckets``, evenly spread over them, the longest (the cache's length) kept."""
    if most is None or len(buckets) <= most:
        return buckets
    picks = sorted({round(i * (len(buckets) - 1) / max(most - 1, 1)) for i in range(most)} | {len(buckets) - 1})
    return tuple(buckets[i] for i in picks[-most:])


def training_batches(split, data: DataConfig, start_step: int,
                     buckets: Optional[Sequence[int]] = None) -> Iterator[dict]:
    """This process's slice of every global training batch from ``start_step`` on (resumable)."""
    extra = {}
    if buckets is not None:
        extra["buckets"] = buckets
    if data.group_by_length:
        extra["group_by_length"] = True
    return split.batches(data.batch_size, shuffle=True, seed=data.seed, start_step=start_step,
                         process_index=jax.process_index(), process_count=jax.process_count(), **extra)


def compiling_ahead(batches: Iterator[dict], window: int, on_new_shapes: Callable[[dict], None]) -> Iterator[dict]:
    """``batches`` unchanged and in order, read ``window`` batches ahead: a batch whose shapes have not been
    seen calls ``on_new_shapes`` as it enters the window, so its length bucket's program is compiled before
    the step needs it (``CompiledStep.compile_ahead``). ``window`` 0 reads nothing ahead."""
    buffer: collections.deque = collections.deque()
    seen = set()
    for batch in batches:
        key = tuple(sorted((name, np.shape(value)) for name, value in batch.items()))
        if key not in seen:
            seen.add(key)
            on_new_shapes(batch)
        buffer.append(batch)
        if len(buffer) > window:
            yield buffer.popleft()
    yield from buffer


def device_batch(local: dict, mesh) -> dict:
    """One global array per model input, sharded over the mesh's data axis (from this process's slice)."""
    return partitioning.global_batch({k: local[k] for k in train_step.BATCH_KEYS}, mesh)


def eval_batches(split, batch_size: int, mesh=None, buckets: Optional[Sequence[int]] = None):
    """(batch, valid, rows) over the whole split: ``rows`` are the example indices of the valid rows.

    With ``mesh`` (and a batch that the data axis and the processes divide), each batch is one global
    array sharded over ``data``: every process puts in only its slice, and the predictions are gathered
    back on every process (``distributed.to_host``). Without, every process scores whole batches.
    """
    sharded = (mesh is not None and batch_size % mesh.shape[partitioning.DATA] == 0
               and batch_size % jax.process_count() == 0)
    per_process = batch_size // jax.process_count()
    first = jax.process_index() * per_process
    for batch in split.eval_batches(batch_size, **({"buckets": buckets} if buckets is not None else {})):
        valid = batch.pop("mask")
        rows = batch.pop("example_index")[valid]
        if sharded:
            local = {k: batch[k][first:first + per_process] for k in train_step.BATCH_KEYS}
            yield partitioning.global_batch(local, mesh), valid, rows
        else:
            yield {k: jnp.asarray(batch[k]) for k in train_step.BATCH_KEYS}, valid, rows
