"""``predict``'s raw-text input: a JSON-lines file turned into a split the evaluator reads.

Each line is either ``{"inputs": "..."}`` (the text as the model reads it, e.g. ``"sentence1: ... sentence2:
..."`` for a taskless RTE prompt; an ``"idx"`` is kept when given) or one example in a SuperGLUE task's
official line format (``{"premise": ..., "hypothesis": ...}`` for RTE), which the task's own preprocessors
format exactly as its training data was (TensorFlow is used for that, as when caches are written). The
texts are tokenised with the run's vocabulary (``DataConfig.vocabulary_path``, ``$XPROMPT_VOCAB_PATH`` or T5's)
and cut to ``INPUT_LENGTH`` as seqio cuts them (EOS kept last).
"""
from __future__ import annotations

import json
import os
import tempfile
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from xprompt_jax.data.cache import CachedSplit, write_cached_split
from xprompt_jax.errors import DataError
from xprompt_jax.models.decoding import EOS_ID


def read_lines(path: str) -> List[Dict[str, Any]]:
    """The file's JSON objects; a bad line is one error naming the file and the line."""
    if not os.path.isfile(path):
        raise DataError(f"INPUT_FILE {path} does not exist")
    out = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except ValueError as err:
                raise DataError(f"{path} line {number} is not JSON ({err.msg}): {line.strip()[:80]!r}") from None
            if not isinstance(value, dict):
                raise DataError(f"{path} line {number} is {type(value).__name__}, not an object such as "
                                '{"inputs": "..."}')
            out.append(value)
    if not out:
        raise DataError(f"INPUT_FILE {path} holds no examples")
    return out


def _formatted(path: str, lines: List[dict], task: Optional[str]) -> Tuple[List[str], List[Any]]:
    """(texts, idx) of the examples: as given, or formatted from raw fields by ``task``'s preprocessors."""
    given = [("inputs" in line) for line in lines]
    if all(given):
        for number, line in enumerate(lines, 1):
            if not isinstance(line["inputs"], str):
                raise DataError(f"{path} line {number}: \"inputs\" must be a string, got {line['inputs']!r}")
        return [line["inputs"] for line in lines], [line.get("idx", i) for i, line in enumerate(lines)]
    if any(given):
        first = given.index(False) + 1
        raise DataError(f"{path} line {first} has no \"inputs\" while others do: give every line its text, or "
                        "every line the task's raw fields")
    from tasks.specs import TASK_SPECS
    spec = TASK_SPECS.get(task or "")
    if spec is None or spec.benchmark != "super_glue":
        raise DataError(f"{path} holds raw fields (no \"inputs\"): name their SuperGLUE task with TASK so its "
                        f"preprocessors format them (got TASK={task!r}), or give each line its \"inputs\" text")
    return _format_raw(path, lines, spec)


def _format_raw(path: str, lines: List[dict], spec) -> Tuple[List[str], List[Any]]:
    from tasks import superglue_files
    from tasks.preprocessors import text_preprocessors
    from tasks.sources import rows_to_dataset
    with tempfile.TemporaryDirectory() as tmp:  # the official reader takes a file; idx defaults to the line
        staged = os.path.join(tmp, "inputs.jsonl")
        with open(staged, "w", encoding="utf-8") as f:
            for number, line in enumerate(lines):
                f.write(json.dumps({"idx": number, **line}) + "\n")
        try:
            rows = superglue_files.load_examples(spec.config, staged)
        except (KeyError, ValueError) as err:
            raise DataError(f"{path}: a line lacks a field of {spec.local_name}'s official format ({err}); "
                            f"its fields: {', '.join(superglue_files.FEATURES[spec.config])}") from None
    dataset = rows_to_dataset(spec.config, rows)
    for step in text_preprocessors(spec):
        dataset = step(dataset)
    texts, idx = [], []
    for example in dataset.as_numpy_iterator():
        texts.append(example["inputs"].decode("utf-8"))
        raw = example.get("idx")
        idx.append({k: int(v) for k, v in raw.items()} if isinstance(raw, dict) else int(raw))
    return texts, idx


def text_input_split(path: str, vocabulary, task: Optional[str], input_length: int, target_length: int,
                     workdir: str) -> CachedSplit:
    """The examples of ``path`` as a cached split under ``workdir`` (a temporary folder of the caller)."""
    texts, idx = _formatted(path, read_lines(path), task)
    count = len(texts)
    tokens = np.zeros((count, input_length), np.int32)
    for row, text in enumerate(texts):  # seqio's append_eos_after_trim: cut, then EOS kept last
        ids = vocabulary.encode(text, add_eos=False)[:input_length - 1] + [EOS_ID]
        tokens[row, :len(ids)] = ids
    targets = np.zeros((count, target_length), np.int32)
    features = {"encoder_input_tokens": tokens.astype(np.int32), "decoder_target_tokens": targets,
                "decoder_input_tokens": targets, "decoder_loss_weights": targets}
    examples = [{"inputs_pretokenized": text, "idx": i, "targets_pretokenized": "", "label": -1}
                for text, i in zip(texts, idx)]
    meta = {"task": task or "text_inputs", "split": os.path.basename(path),
            "sequence_length": {"inputs": input_length, "targets": target_length},
            "vocabulary": {"path": getattr(vocabulary, "path", None)}}
    return CachedSplit.open(write_cached_split(os.path.join(workdir, "inputs"), meta=meta, features=features,
                                               examples=examples))
