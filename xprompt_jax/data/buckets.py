"""Length buckets: batches padded only to the smallest of a few static lengths that holds them (issue 14).

A cached split pads every example's encoder input to the cache's input length (often 512), while real
inputs are far shorter (RTE averages ~81 T5 tokens, WiC ~30). Cutting each batch's
``encoder_input_tokens`` to the smallest *bucket* that holds its longest example removes only padding:
the encoder masks padding out, so losses, gradients and predictions do not change (within float
tolerance). A jitted step compiles once per bucket (a handful of shapes), not once per batch.

- ``bucket_lengths`` / ``bucket_for``: the bucket list (powers of two and the midpoints 1.5x between
  them, up to the input length) and the choice for one batch. The choice is made on the *global* batch,
  so every process picks the same one. Decoder features are cut the same way to the buckets of the
  target length (``target_buckets``): the decoder is causal and padded targets weigh 0, so the loss over
  the real target tokens is unchanged, and short answers ("entailment", "True") cost a short decoder.
- ``grouped_epoch_order``: optional length-grouped shuffling for training (off by default): within
  windows of a few hundred examples of the epoch's shuffled order, sort by length, cut into batches,
  then shuffle the batches. A pure function of (seed, epoch, batch size, window), so resumable.
- ``eval_rows`` / ``bucketed_eval_batches`` / ``restore_order``: evaluation longest-first (short
  batches), each batch carrying ``example_index``, and predictions put back in example order.
"""
from __future__ import annotations

from typing import Any, Dict, Iterator, Optional, Sequence, Tuple

import numpy as np

from xprompt_jax.errors import DataError

GROUP_WINDOW = 512  # examples per length-sorting window of group_by_length (rounded up to whole batches)
_LENGTH_CHUNK = 8192  # rows read at a time when counting input lengths of a memory-mapped array


def bucket_lengths(max_length: int, smallest: int = 32, between: bool = True) -> Tuple[int, ...]:
    """Powers of two from ``smallest`` below ``max_length`` (with ``between``, also 1.5x each), then ``max_length``.

    ``bucket_lengths(512) == (32, 48, 64, 96, 128, 192, 256, 384, 512)``: a batch is padded by at most a
    third of its longest input (half with ``between=False``: ``(32, 64, 128, 256, 512)``), for nine
    compiled programs instead of five. Measured (benchmarks/compare_peft.py, RTE, batch 8), the midpoints
    cut the mean encoder length from 320 to 280 tokens (prompt included) against PEFT's 249.
    ``bucket_lengths(100) == (32, 48, 64, 96, 100)``; ``bucket_lengths(20) == (20,)``.
    """
    if max_length < 1 or smallest < 1:
        raise ValueError(f"max_length ({max_length}) and smallest ({smallest}) must be positive")
    if smallest & (smallest - 1):
        raise ValueError(f"smallest must be a power of two, got {smallest}")
    out, length = [], smallest
    while length < max_length:
        out.append(length)
        if between and length >= 2 and length * 3 // 2 < max_length:
            out.append(length * 3 // 2)
        length *= 2
    return tuple(out) + (int(max_length),)


TARGET_SMALLEST = 8  # the shortest target bucket: labels and short answers are a few tokens


def target_buckets(max_length: int) -> Tuple[int, ...]:
    """The buckets decoder features are cut to: ``bucket_lengths(max_length, TARGET_SMALLEST)``."""
    return bucket_lengths(max_length, smallest=TARGET_SMALLEST)


def check_buckets(buckets: Sequence[int]) -> Tuple[int, ...]:
    """``buckets`` as a strictly increasing tuple of positive ints, or a ValueError saying what is wrong."""
    out = tuple(int(b) for b in buckets)
    if not out or out[0] < 1 or any(a >= b for a, b in zip(out, out[1:])):
        raise ValueError(f"buckets must be positive and strictly increasing, got {tuple(buckets)}")
    return out


def bucket_for(length: int, buckets: Sequence[int]) -> int:
    """The smallest bucket >= ``length`` (``buckets`` increasing); a ValueError when none holds it."""
    buckets = check_buckets(buckets)
    index = int(np.searchsorted(np.asarray(buckets), length, side="left"))
    if index == len(buckets):
        raise ValueError(f"an input of {length} tokens is longer than the largest bucket {buckets[-1]}")
    return buckets[index]


def input_lengths_of(tokens: np.ndarray) -> np.ndarray:
    """Unpadded length of each row of 0-padded ``tokens`` [n, length]: last nonzero position + 1 (0 if none)."""
    n, width = tokens.shape
    out = np.zeros(n, np.int32)
    for start in range(0, n, _LENGTH_CHUNK):
        nonzero = np.asarray(tokens[start:start + _LENGTH_CHUNK]) != 0
        last = width - np.argmax(nonzero[:, ::-1], axis=1)
        out[start:start + len(nonzero)] = np.where(nonzero.any(axis=1), last, 0)
    return out


def fit_length(array: np.ndarray, length: int) -> np.ndarray:
    """``array`` [rows, L] cut (or 0-padded) to [rows, length] columns, contiguous."""
    if array.shape[1] >= length:
        return np.ascontiguousarray(array[:, :length])
    return np.pad(array, ((0, 0), (0, length - array.shape[1])))


def check_fits(lengths: np.ndarray, buckets: Sequence[int], where: str) -> Tuple[int, ...]:
    """Checked ``buckets``; a DataError when the longest example of ``lengths`` fits none."""
    buckets = check_buckets(buckets)
    longest = int(lengths.max()) if len(lengths) else 0
    if longest > buckets[-1]:
        raise DataError(f"{where} has an input of {longest} tokens, longer than the largest bucket "
                        f"{buckets[-1]} of {buckets}; make the last bucket the input length")
    return buckets


def target_lengths_of(targets: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Length of each row's target: past its last nonzero token and its last nonzero loss weight."""
    return np.maximum(input_lengths_of(targets), input_lengths_of(weights))


DECODER_KEYS = ("decoder_target_tokens", "decoder_input_tokens", "decoder_loss_weights")


def cut_to_bucket(batch: Dict[str, np.ndarray], global_lengths: np.ndarray, buckets: Sequence[int],
                  global_target_lengths: Optional[np.ndarray] = None) -> Dict[str, np.ndarray]:
    """``batch`` with ``encoder_input_tokens`` cut to the bucket of the global batch's longest input.

    ``global_lengths``: input lengths of the rows of the whole global batch (every process's rows), so
    that all processes pick the same bucket. With ``global_target_lengths`` (the same rows' target
    lengths) the decoder features are cut to their own bucket (``target_buckets`` of their width).
    """
    longest = int(global_lengths.max()) if len(global_lengths) else 0
    batch["encoder_input_tokens"] = fit_length(batch["encoder_input_tokens"], bucket_for(longest, buckets))
    if global_target_lengths is not None:
        width = batch["decoder_target_tokens"].shape[1]
        longest = int(global_target_lengths.max()) if len(global_target_lengths) else 0
        cut = bucket_for(max(longest, 1), target_buckets(width))
        for key in DECODER_KEYS:
            if key in batch:
                batch[key] = fit_length(batch[key], cut)
    return batch


# -- length-grouped training order -----------------------------------------------------------------
def grouped_epoch_order(order: np.ndarray, lengths: np.ndarray, batch_size: int, *, seed: int, epoch: int,
                        offset: int = 0, window: int = GROUP_WINDOW) -> np.ndarray:
    """One epoch's example order, length-grouped: a permutation of ``order``.

    The epoch starts at stream position ``offset`` (``epoch * num_examples``), so its first
    ``(-offset) % batch_size`` examples complete the global batch that began in the previous epoch:
    they stay first. The rest is cut into windows of ``window`` examples (rounded up to whole batches),
    each sorted by input length (longest first, ties in shuffled order), then into batches; the whole
    batches are shuffled (by (seed, epoch)) and a short last batch stays last. Every full global batch
    of the stream then holds examples of similar lengths, and each example comes once per epoch.
    """
    order = np.asarray(order)
    head = (-offset) % batch_size
    head = min(head, len(order))
    window = -(-max(window, batch_size) // batch_size) * batch_size
    rest = order[head:]
    windows = [rest[s:s + window] for s in range(0, len(rest), window)]
    grouped = np.concatenate([w[np.argsort(-lengths[w], kind="stable")] for w in windows]) if windows else rest
    full = len(grouped) // batch_size
    shuffled = np.random.default_rng([seed, epoch, 1]).permutation(full)
    chunks = grouped[:full * batch_size].reshape(full, batch_size)[shuffled].reshape(-1)
    return np.concatenate([order[:head], chunks, grouped[full * batch_size:]])


# -- evaluation ----------------------------------------------------------------------------------
def eval_rows(lengths: np.ndarray, batch_size: int, *, by_length: bool = True) -> np.ndarray:
    """[num_batches, batch_size] rows of each global evaluation batch, -1 for padding.

    ``by_length``: longest first (ties in row order), so each batch's inputs have similar lengths;
    else row order, as the fixed-length ``eval_batches``.
    """
    n = len(lengths)
    order = np.argsort(-np.asarray(lengths), kind="stable") if by_length else np.arange(n)
    padded = np.full(-(-n // batch_size) * batch_size, -1, np.int64)
    padded[:n] = order
    return padded.reshape(-1, batch_size)


def bucketed_eval_batches(split: Any, batch_size: int, process_index: int, process_count: int,
                          buckets: Sequence[int]) -> Iterator[Dict[str, np.ndarray]]:
    """``CachedSplit.eval_batches`` with buckets: longest first, each batch cut to its bucket.

    Padding rows (``mask`` False, ``example_index`` -1) repeat the batch's last real example.
    """
    lengths, target_lengths = split.input_lengths(), split.target_lengths()
    buckets = check_fits(lengths, buckets, split.path)
    per_process = batch_size // process_count
    for global_rows in eval_rows(lengths, batch_size):
        real = global_rows[global_rows >= 0]
        local = global_rows[process_index * per_process:(process_index + 1) * per_process]
        valid = local >= 0
        rows = np.where(valid, local, real[-1])
        batch = {name: np.asarray(array[rows]) for name, array in split.features.items()}
        batch = cut_to_bucket(batch, lengths[real], buckets, target_lengths[real])
        batch["mask"] = valid
        batch["example_index"] = np.where(valid, local, -1).astype(np.int32)
        yield batch


def restore_order(values_per_batch: Sequence[Any], example_indices: Sequence[np.ndarray],
                  num_examples: Optional[int] = None) -> np.ndarray:
    """Per-batch predictions back in example order: ``out[example_index] = value``; padding rows dropped.

    ``values_per_batch[i]`` has one value (row) per entry of ``example_indices[i]`` (the batch's
    ``example_index``, -1 for padding). Every example 0..num_examples-1 must come exactly once.
    """
    if len(values_per_batch) != len(example_indices):
        raise ValueError(f"{len(values_per_batch)} batches of values for {len(example_indices)} of indices")
    if not example_indices:
        return np.zeros((0,))
    index = np.concatenate([np.asarray(i, np.int64).reshape(-1) for i in example_indices])
    values = np.concatenate([np.asarray(v) for v in values_per_batch])
    if len(values) != len(index):
        raise ValueError(f"{len(values)} values for {len(index)} example indices")
    keep = index >= 0
    index, values = index[keep], values[keep]
    n = len(index) if num_examples is None else num_examples
    counts = np.bincount(index, minlength=n)
    if len(counts) != n or (counts != 1).any():
        missing, repeated = np.flatnonzero(counts == 0)[:5].tolist(), np.flatnonzero(counts > 1)[:5].tolist()
        raise ValueError(f"example indices do not cover 0..{n - 1} once each (missing {missing}, "
                         f"repeated {repeated}, largest {int(index.max()) if len(index) else None})")
    out = np.empty_like(values)
    out[index] = values
    return out
