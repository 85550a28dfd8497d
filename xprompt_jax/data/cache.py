"""A task split, tokenised and feature-converted, as NumPy files: read without TensorFlow or seqio.

Training and evaluation hosts (GPU/TPU images often have no TensorFlow) read data from here;
``xprompt_jax.data.write_cache`` (which does need seqio) writes it. A cache is a folder:

  meta.json       format_version, task, split, num_examples, sequence_length {inputs, targets},
                  features {name: {dtype, shape}}, vocabulary {path, extra_ids}, label_names (or null),
                  truncated {inputs, targets} (examples cut to fit), feature_converter
                  source_fingerprint (what the examples were made from: ``tasks.fingerprint``)
  <feature>.npy   encoder_input_tokens, decoder_target_tokens, decoder_input_tokens,
                  decoder_loss_weights: int32 [num_examples, length], as seqio's EncDecFeatureConverter
                  (no packing) makes them: 0-padded, decoder inputs = targets shifted right after a 0
  examples.jsonl  one JSON object per example, in row order: inputs_pretokenized, targets_pretokenized,
                  idx, and what the task's postprocessor reads (label for WSC simple, answers for ReCoRD)

Reading: ``CachedSplit.open(path)``, then ``batches`` (training: shuffled, resumable, sharded over
processes) or ``eval_batches`` (in order, padded, with a validity mask).
"""
from __future__ import annotations

import json
import os
import shutil
import uuid
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence

import numpy as np

from xprompt_jax.data import buckets as buckets_lib
from xprompt_jax.errors import DataError

FORMAT_VERSION = 1
FEATURES = ("encoder_input_tokens", "decoder_target_tokens", "decoder_input_tokens", "decoder_loss_weights")
FEATURE_LENGTH_KEY = {"encoder_input_tokens": "inputs", "decoder_target_tokens": "targets",
                      "decoder_input_tokens": "targets", "decoder_loss_weights": "targets"}
META_FILE = "meta.json"
EXAMPLES_FILE = "examples.jsonl"
CREATE_HINT = ("create it with `python -m xprompt_jax.data.write_cache --task TASK --split SPLIT --out {path} "
               "--inputs_length N --targets_length M` (a host with seqio and TensorFlow)")


class CachedSplit:
    """One cached split: metadata, NumPy features (memory-mapped), per-example records, batch iterators."""

    def __init__(self, path: str, meta: Dict[str, Any], features: Dict[str, np.ndarray]):
        self.path = path
        self._meta = meta
        self._features = features
        self._examples: Optional[List[Dict[str, Any]]] = None

    # -- opening ---------------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str, *, mmap: bool = True) -> "CachedSplit":
        """Opens and checks a cache folder; every problem names the path and how to make the cache."""
        path = os.fspath(path)
        hint = CREATE_HINT.format(path=path)
        if not os.path.isdir(path):
            raise DataError(f"no cache folder at {path}; {hint}")
        meta_path = os.path.join(path, META_FILE)
        if not os.path.isfile(meta_path):
            raise DataError(f"{path} is not a cache: {META_FILE} is missing; {hint}")
        try:
            with open(meta_path, encoding="utf-8") as f:
                meta = json.load(f)
        except json.JSONDecodeError as err:
            raise DataError(f"{meta_path} is not valid JSON ({err}); recreate the cache: {hint}") from None
        version = meta.get("format_version") if isinstance(meta, dict) else None
        if version != FORMAT_VERSION:
            raise DataError(f"{meta_path} has cache format_version {version!r}; this code reads "
                            f"{FORMAT_VERSION}. Recreate the cache: {hint}")
        missing = [key for key in ("num_examples", "features", "sequence_length") if key not in meta]
        if missing:
            raise DataError(f"{meta_path} lacks {', '.join(missing)}; recreate the cache: {hint}")
        n = meta["num_examples"]
        features = {name: _open_feature(path, name, info, n, mmap, hint) for name, info in meta["features"].items()}
        examples = os.path.join(path, EXAMPLES_FILE)
        if not os.path.isfile(examples):
            raise DataError(f"{examples} is missing from the cache {path}; recreate the cache: {hint}")
        lines = _count_lines(examples)
        if lines != n:
            raise DataError(f"{examples} has {lines} lines for {n} examples (a damaged cache); "
                            f"recreate the cache: {hint}")
        return cls(path, meta, features)

    # -- contents --------------------------------------------------------------------------------
    @property
    def meta(self) -> Dict[str, Any]:
        return self._meta

    @property
    def num_examples(self) -> int:
        return int(self._meta["num_examples"])

    @property
    def features(self) -> Dict[str, np.ndarray]:
        return self._features

    @property
    def sequence_length(self) -> Dict[str, int]:
        return dict(self._meta["sequence_length"])

    @property
    def examples(self) -> List[Dict[str, Any]]:
        """Per-example records (pretokenized text, idx, postprocessor fields), read on first use."""
        if self._examples is None:
            file = os.path.join(self.path, EXAMPLES_FILE)
            records = []
            with open(file, encoding="utf-8") as f:
                for number, line in enumerate(f, start=1):
                    try:
                        records.append(json.loads(line))
                    except json.JSONDecodeError as err:
                        raise DataError(f"{file}, line {number}: not valid JSON ({err.msg})") from None
            if len(records) != self.num_examples:
                raise DataError(f"{file} has {len(records)} records for {self.num_examples} examples; "
                                f"recreate the cache: {CREATE_HINT.format(path=self.path)}")
            self._examples = records
        return self._examples

    # -- training batches ------------------------------------------------------------------------
    def num_batches(self, batch_size: int, *, num_epochs: Optional[int], drop_remainder: bool = True) -> Optional[int]:
        """Global batches ``batches`` yields for ``num_epochs`` (None: endless)."""
        if num_epochs is None:
            return None
        total = num_epochs * self.num_examples
        return total // batch_size if drop_remainder else -(-total // batch_size)

    def epoch_order(self, epoch: int, *, shuffle: bool = True, seed: int = 0) -> np.ndarray:
        """Example order of one epoch: a permutation fixed by (seed, epoch), or row order."""
        if not shuffle:
            return np.arange(self.num_examples)
        return np.random.default_rng([seed, epoch]).permutation(self.num_examples)

    def batches(self, batch_size: int, *, shuffle: bool = True, seed: int = 0, start_step: int = 0,
                process_index: int = 0, process_count: int = 1, drop_remainder: bool = True,
                num_epochs: Optional[int] = None, buckets: Optional[Sequence[int]] = None,
                group_by_length: bool = False,
                group_window: int = buckets_lib.GROUP_WINDOW) -> Iterator[Dict[str, np.ndarray]]:
        """Training batches: dicts of the features, ``[batch_size // process_count, length]`` each.

        The data is one stream: epoch 0's order, then epoch 1's, ... (each a permutation fixed by
        (seed, epoch)); global batch s is stream positions ``[s*batch_size, (s+1)*batch_size)``, so a
        batch may span two epochs, as with seqio's repeat-then-batch; this is what lets a k=16 few-shot
        split feed a batch of 32. ``batch_size`` is the global batch; process i of ``process_count`` gets
        the i-th contiguous slice of it. ``start_step`` skips that many global batches without reading
        them, so a run resumed at step s sees exactly the batches it would have seen. ``num_epochs``
        None: endless; else the stream ends after that many epochs, its short last batch dropped
        (``drop_remainder``) or yielded short.

        ``buckets`` (increasing lengths, the last >= every input, e.g. ``buckets.bucket_lengths(512)``):
        ``encoder_input_tokens`` is cut to the smallest bucket holding the longest input of the global
        batch (the same on every process), and the decoder features to the smallest of
        ``buckets.target_buckets(target length)`` holding its longest target; examples and order do not
        change, and only padding (weight 0) is removed. ``group_by_length``: each
        epoch's order is length-grouped (``buckets.grouped_epoch_order``, windows of ``group_window``);
        this changes the batches, still fixed by the seed and resumable by ``start_step``.
        """
        _check_sharding(batch_size, process_index, process_count)
        n = self.num_examples
        if n == 0:
            raise DataError(f"the cache {self.path} has no examples to batch")
        if start_step < 0:
            raise ValueError(f"start_step must be >= 0, got {start_step}")
        lengths = self.input_lengths() if buckets is not None or group_by_length else None
        target_lengths = None
        if buckets is not None:
            buckets = buckets_lib.check_fits(lengths, buckets, self.path)
            target_lengths = self.target_lengths()
        total = None if num_epochs is None else num_epochs * n
        stop = self.num_batches(batch_size, num_epochs=num_epochs, drop_remainder=drop_remainder)
        per_process = batch_size // process_count
        orders: Dict[int, np.ndarray] = {}

        def order_of(epoch: int) -> np.ndarray:
            order = self.epoch_order(epoch, shuffle=shuffle, seed=seed)
            if group_by_length:
                order = buckets_lib.grouped_epoch_order(order, lengths, batch_size, seed=seed, epoch=epoch,
                                                        offset=epoch * n, window=group_window)
            return order

        step = start_step
        while stop is None or step < stop:
            first = step * batch_size
            last = first + batch_size if total is None else min(first + batch_size, total)
            global_rows = _stream_rows(np.arange(first, last, dtype=np.int64), n, orders, order_of)
            rows = global_rows[process_index * per_process:(process_index + 1) * per_process]
            batch = self._gather(rows)
            if buckets is not None:
                batch = buckets_lib.cut_to_bucket(batch, lengths[global_rows], buckets, target_lengths[global_rows])
            yield batch
            step += 1

    def input_lengths(self) -> np.ndarray:
        """Unpadded encoder input length of each example (last nonzero token + 1), counted once."""
        lengths = getattr(self, "_input_lengths", None)
        if lengths is None:
            lengths = buckets_lib.input_lengths_of(self._features["encoder_input_tokens"])
            self._input_lengths = lengths
        return lengths

    def target_lengths(self) -> np.ndarray:
        """Unpadded target length of each example (past its last target token and loss weight), counted once."""
        lengths = getattr(self, "_target_lengths", None)
        if lengths is None:
            lengths = buckets_lib.target_lengths_of(self._features["decoder_target_tokens"],
                                                    self._features["decoder_loss_weights"])
            self._target_lengths = lengths
        return lengths

    # -- evaluation batches ----------------------------------------------------------------------
    def eval_batches(self, batch_size: int, *, process_index: int = 0, process_count: int = 1,
                     buckets: Optional[Sequence[int]] = None) -> Iterator[Dict[str, np.ndarray]]:
        """Every example once, in row order, in global batches of ``batch_size``; the last one padded.

        Besides the features, each batch has ``mask`` (bool: a real example) and ``example_index``
        (its row, -1 for padding) so predictions map back to ``examples``. Padding rows repeat the last
        real example, so a model sees no all-padding input (no fully masked attention); mask them out.
        Process i of ``process_count`` gets the i-th contiguous slice of each global batch.

        ``buckets``: examples come longest first instead, each global batch's ``encoder_input_tokens``
        (and decoder features) cut to its bucket (``buckets.bucketed_eval_batches``); put predictions back in example order
        with ``buckets.restore_order(values, example_indices, num_examples)``.
        """
        _check_sharding(batch_size, process_index, process_count)
        if buckets is not None:
            yield from buckets_lib.bucketed_eval_batches(self, batch_size, process_index, process_count, buckets)
            return
        n = self.num_examples
        per_process = batch_size // process_count
        for start in range(0, n, batch_size):
            first = start + process_index * per_process
            positions = np.arange(first, first + per_process, dtype=np.int64)
            valid = positions < n
            rows = np.where(valid, positions, n - 1)
            batch = self._gather(rows)
            batch["mask"] = valid
            batch["example_index"] = np.where(valid, positions, -1).astype(np.int32)
            yield batch

    def _gather(self, rows: np.ndarray) -> Dict[str, np.ndarray]:
        return {name: np.asarray(array[rows]) for name, array in self._features.items()}


def _open_feature(path: str, name: str, info: Mapping[str, Any], n: int, mmap: bool, hint: str) -> np.ndarray:
    """One ``<feature>.npy``, checked against ``meta.json`` before it is mapped: a truncated file would
    otherwise fail inside NumPy ("mmap length is greater than file size") or read past its end."""
    file = os.path.join(path, f"{name}.npy")
    if not os.path.isfile(file):
        raise DataError(f"{file} is missing from the cache {path}; recreate the cache: {hint}")
    try:
        with open(file, "rb") as f:
            version = np.lib.format.read_magic(f)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                np.lib.format.read_array_header_2_0
            shape, _, dtype = read_header(f)
            offset = f.tell()
    except (ValueError, OSError, EOFError) as err:
        reason = " ".join(str(err).split())
        raise DataError(f"{file} is not a readable NumPy file ({reason}); recreate the cache: {hint}") from None
    if list(shape) != list(info["shape"]) or str(dtype) != info["dtype"] or not shape or shape[0] != n:
        raise DataError(f"{file} holds {dtype} {list(shape)}, but {META_FILE} says "
                        f"{info['dtype']} {info['shape']} for {n} examples; recreate the cache: {hint}")
    expected = offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    size = os.path.getsize(file)
    if size != expected:
        raise DataError(f"{file} is {size} bytes, but its {dtype} {list(shape)} needs {expected} "
                        f"(a truncated or damaged cache); recreate the cache: {hint}")
    return np.load(file, mmap_mode="r" if mmap else None, allow_pickle=False)


def _count_lines(file: str) -> int:
    count = 0
    with open(file, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            count += block.count(b"\n")
    return count


def _stream_rows(positions: np.ndarray, n: int, orders: Dict[int, np.ndarray], order_of) -> np.ndarray:
    """Rows at stream ``positions`` (epoch e's order at [e*n, (e+1)*n)); ``orders`` caches epochs' orders."""
    epochs, offsets = np.divmod(positions, n)
    rows = np.empty(len(positions), dtype=np.int64)
    for epoch in np.unique(epochs):
        if int(epoch) not in orders:
            for old in [e for e in orders if e < epoch - 1]:  # keep memory bounded
                del orders[old]
            orders[int(epoch)] = order_of(int(epoch))
        mask = epochs == epoch
        rows[mask] = orders[int(epoch)][offsets[mask]]
    return rows


def _check_sharding(batch_size: int, process_index: int, process_count: int) -> None:
    if batch_size < 1 or process_count < 1:
        raise ValueError(f"batch_size ({batch_size}) and process_count ({process_count}) must be positive")
    if batch_size % process_count:
        raise ValueError(f"the global batch_size {batch_size} does not split evenly over {process_count} processes")
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index {process_index} is not in [0, {process_count})")


# -- writing ---------------------------------------------------------------------------------------
def write_cached_split(out_dir: str, *, meta: Mapping[str, Any], features: Mapping[str, np.ndarray],
                       examples: Sequence[Mapping[str, Any]], overwrite: bool = False) -> str:
    """Writes a cache folder atomically: into a temporary sibling, renamed into place at the end.

    A crash leaves at most a ``.<name>.tmp-*`` sibling, never a half-written cache at ``out_dir``.
    ``meta`` gets ``format_version``, ``num_examples`` and ``features`` filled in from the arrays.
    """
    out_dir = os.path.abspath(os.fspath(out_dir))
    if os.path.exists(out_dir) and not overwrite:
        raise DataError(f"{out_dir} already exists; pass overwrite=True (--overwrite) to replace it")
    lengths = {len(a) for a in features.values()} | {len(examples)}
    if len(lengths) != 1:
        raise ValueError(f"features and examples disagree on the number of examples: {sorted(lengths)}")
    parent, name = os.path.split(out_dir)
    os.makedirs(parent, exist_ok=True)
    tmp = os.path.join(parent, f".{name}.tmp-{uuid.uuid4().hex[:8]}")
    os.makedirs(tmp)
    try:
        full_meta = dict(meta)
        full_meta["format_version"] = FORMAT_VERSION
        full_meta["num_examples"] = len(examples)
        full_meta["features"] = {}
        for feature, array in features.items():
            array = np.ascontiguousarray(array)
            np.save(os.path.join(tmp, f"{feature}.npy"), array, allow_pickle=False)
            full_meta["features"][feature] = {"dtype": str(array.dtype), "shape": list(array.shape)}
        with open(os.path.join(tmp, EXAMPLES_FILE), "w", encoding="utf-8") as f:
            for record in examples:
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
        with open(os.path.join(tmp, META_FILE), "w", encoding="utf-8") as f:
            json.dump(full_meta, f, indent=2, sort_keys=True)
        if os.path.exists(out_dir):
            old = os.path.join(parent, f".{name}.old-{uuid.uuid4().hex[:8]}")
            os.rename(out_dir, old)
            os.rename(tmp, out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir
