"""Write one task split as a NumPy cache (``xprompt_jax.data.cache``); this side needs seqio and TensorFlow.

Runs the registered seqio task in order (no shuffling), trims to the sequence lengths as the task does
(EOS kept last), converts features with seqio's ``EncDecFeatureConverter(pack=False)``, and writes the
arrays with the per-example records the TF-free evaluation needs. It reports how many examples were cut
to fit, since a truncated input or target silently changes what is trained and scored.

  python -m xprompt_jax.data.write_cache --task taskless_super_glue_rte_v102 --split validation \\
      --out caches/rte_val --inputs_length 256 --targets_length 8 [--data_dir DIR] [--vocab_path P]
"""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from typing import Any, Dict, List, Mapping, Optional

import numpy as np

from tasks.fingerprint import source_fingerprint
from xprompt_jax import stopping
from xprompt_jax.data.cache import FEATURES, CachedSplit, write_cached_split
from xprompt_jax.data.native_noise import filtered_native_stderr
from xprompt_jax.data.task_info import TASK_MODULES, is_unlabelled, task_label_names
from xprompt_jax.errors import ConfigError, DataError
from xprompt_jax.vocabulary import BYTE_VOCABULARY

logger = logging.getLogger(__name__)

_TEXT_KEYS = ("inputs_pretokenized", "targets_pretokenized")
_TOKEN_KEYS = ("inputs", "targets")


def _import_task_modules() -> None:
    for module in TASK_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as err:
            if err.name != module:  # a missing dependency of an existing module is a real error
                raise


def _data_side_tensorflow():
    """TensorFlow as the data side wants it: quieter (its start-up lines about oneDNN and CUDA are noise
    here; variables the user set win; the lines no setting reaches, 'Could not find cuda drivers' among
    them, are dropped by ``write_cache``'s ``filtered_native_stderr``) and off the GPUs, which belong to
    JAX: a tf.data pipeline needs none, and TensorFlow would otherwise reserve their memory when it starts."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # tokenisation only: no numerics to tune
    import tensorflow as tf
    try:
        tf.config.set_visible_devices([], "GPU")
    except RuntimeError:  # TensorFlow already initialised its devices (imported and used before us)
        pass
    return tf


def _registered_task(task_name: str):
    _data_side_tensorflow()
    import seqio

    _import_task_modules()
    if task_name not in seqio.TaskRegistry.names():
        raise DataError(f"unknown task {task_name!r}; registered tasks: {', '.join(sorted(seqio.TaskRegistry.names()))}")
    return seqio.get_mixture_or_task(task_name)


def _check_vocabulary(path: str) -> None:
    """Reads the task's SentencePiece model up front, without TensorFlow and with a bounded wait: seqio's
    own read fails deep inside tf.data (``NotFoundError``, a protobuf ``DecodeError``) or, for a ``gs://``
    path without network, hangs. A problem is one ``ConfigError`` naming XPROMPT_VOCAB_PATH."""
    from xprompt_jax.vocabulary import load_vocabulary
    load_vocabulary(path)


def _plain(value: Any) -> Any:
    """NumPy/bytes values of a tf.data example -> JSON values."""
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        return _plain(value.item())
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _absolute_if_local(path: str) -> str:
    """A local vocabulary path made absolute, so the cache names it from any working directory."""
    if path == BYTE_VOCABULARY:
        return path
    return os.path.abspath(path) if "://" not in path and os.path.exists(path) else path


def example_record(example: Mapping[str, Any]) -> Dict[str, Any]:
    """Everything but the token arrays, JSON-ready; ``idx/<part>`` keys folded into a nested ``idx``."""
    record: Dict[str, Any] = {}
    nested: Dict[str, Any] = {}
    for key, value in example.items():
        if key in _TOKEN_KEYS:
            continue
        if key.startswith("idx/"):
            nested[key[4:]] = _plain(value)
        else:
            record[key] = _plain(value)
    if nested:
        record["idx"] = nested
    return record


def write_cache(task_name: str, split: str, out_dir: str, sequence_length: Mapping[str, int], *,
                num_examples: Optional[int] = None, overwrite: bool = False) -> CachedSplit:
    """Caches ``split`` of a registered task at ``out_dir``; returns it opened.

    Args:
      task_name: a registered seqio task (``tasks.specs.task_names()``).
      split: one of the task's splits (``validation``, ``train_k16``, ``fewglue_dev32``, ...).
      out_dir: the cache folder to create (atomically).
      sequence_length: ``{"inputs": N, "targets": M}``: longer examples are cut, EOS kept last.
      num_examples: cache only the first n examples (None: all).
      overwrite: replace an existing cache at ``out_dir``.
    """
    with filtered_native_stderr():  # TensorFlow's start-up lines on fd 2 (data/native_noise.py)
        return _write_cache(task_name, split, out_dir, sequence_length, num_examples, overwrite)


def _write_cache(task_name: str, split: str, out_dir: str, sequence_length: Mapping[str, int],
                 num_examples: Optional[int], overwrite: bool) -> CachedSplit:
    tf = _data_side_tensorflow()
    import seqio

    lengths = {"inputs": int(sequence_length["inputs"]), "targets": int(sequence_length["targets"])}
    task = _registered_task(task_name)
    if split not in task.splits:
        raise DataError(f"task {task_name} has no split {split!r}; its splits: {', '.join(task.splits)}")
    vocabulary = task.output_features["targets"].vocabulary
    vocabulary_path = getattr(vocabulary, "sentencepiece_model_file", None) or BYTE_VOCABULARY  # seqio.ByteVocabulary
    _check_vocabulary(vocabulary_path)
    ds = task.get_dataset(sequence_length=lengths, split=split, shuffle=False, num_epochs=1, seed=None)
    if num_examples is not None:
        ds = ds.take(num_examples)
    raw = []
    for example in ds.as_numpy_iterator():  # a SIGTERM here stops before anything is written (stopping.py)
        if len(raw) % 1000 == 0:
            stopping.check(f"writing the cache of {task_name}:{split} to {out_dir}")
        raw.append(example)
    fingerprint = source_fingerprint(task_name, split, lengths)
    if num_examples is not None:
        fingerprint["first_examples"] = int(num_examples)

    truncated = {key: 0 for key in _TOKEN_KEYS}
    for example in raw:
        for key in _TOKEN_KEYS:
            full = len(vocabulary.encode(example[f"{key}_pretokenized"].decode("utf-8"))) + 1  # + EOS
            truncated[key] += full > lengths[key]

    spec = {key: tf.TensorSpec([None], tf.int32) for key in _TOKEN_KEYS}
    tokens = tf.data.Dataset.from_generator(
        lambda: ({key: ex[key] for key in _TOKEN_KEYS} for ex in raw), output_signature=spec)
    converted = []
    for example in seqio.EncDecFeatureConverter(pack=False)(tokens, lengths).as_numpy_iterator():
        if len(converted) % 1000 == 0:
            stopping.check(f"writing the cache of {task_name}:{split} to {out_dir}")
        converted.append(example)
    stopping.check(f"writing the cache of {task_name}:{split} to {out_dir}")
    features = {}
    for name in FEATURES:
        length = lengths["inputs" if name == "encoder_input_tokens" else "targets"]
        rows = [c[name] for c in converted]
        features[name] = np.stack(rows).astype(np.int32) if rows else np.zeros((0, length), np.int32)

    records = [example_record(ex) for ex in raw]
    meta = {
        "task": task_name, "split": split, "sequence_length": lengths,
        "vocabulary": {"path": _absolute_if_local(vocabulary_path), "extra_ids": vocabulary.extra_ids},
        "label_names": task_label_names(task_name), "truncated": truncated,
        "unlabelled_examples": sum(is_unlabelled(record) for record in records),
        "feature_converter": "seqio.EncDecFeatureConverter(pack=False)", "source_fingerprint": fingerprint,
    }
    path = write_cached_split(out_dir, meta=meta, features=features,
                              examples=records, overwrite=overwrite)
    for key in _TOKEN_KEYS:
        if truncated[key]:
            logger.warning(f"[data] {task_name}:{split}: {truncated[key]} of {len(raw)} examples had {key} longer "
                           f"than {lengths[key]} tokens and were cut")
    return CachedSplit.open(path)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", required=True)
    parser.add_argument("--split", required=True)
    parser.add_argument("--out", required=True, help="cache folder to create")
    parser.add_argument("--inputs_length", type=int, required=True)
    parser.add_argument("--targets_length", type=int, required=True)
    parser.add_argument("--num_examples", type=int, default=None)
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument("--data_dir", help="official SuperGLUE files (else $XPROMPT_SUPERGLUE_DIR, else TFDS)")
    parser.add_argument("--fewglue_dir", help="FewGLUE files (else $XPROMPT_FEWGLUE_DIR)")
    parser.add_argument("--vocab_path", help="SentencePiece model (else $XPROMPT_VOCAB_PATH, else T5's)")
    args = parser.parse_args(argv)
    try:
        if args.data_dir or args.fewglue_dir or args.vocab_path:
            with filtered_native_stderr():  # the task modules import TensorFlow
                import tasks.glue
                import tasks.suite
                import tasks.superglue
                tasks.superglue.register_superglue(data_dir=args.data_dir, fewglue_dir=args.fewglue_dir,
                                                   vocab_path=args.vocab_path)
                tasks.glue.register_glue(vocab_path=args.vocab_path)
                tasks.suite.register_suite(vocab_path=args.vocab_path)
        cache = write_cache(args.task, args.split, args.out,
                            {"inputs": args.inputs_length, "targets": args.targets_length},
                            num_examples=args.num_examples, overwrite=args.overwrite)
    except (DataError, ConfigError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    cut = cache.meta["truncated"]
    print(f"wrote {cache.num_examples} examples of {args.task}:{args.split} to {cache.path} "
          f"(truncated: {cut['inputs']} inputs, {cut['targets']} targets)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
