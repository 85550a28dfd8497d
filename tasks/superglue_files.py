"""Official SuperGLUE ``.jsonl`` files read into exactly the examples TFDS ``super_glue:1.0.2`` yields.

A user with the official release (or FewGLUE, same line format) on disk gets the same features as from TFDS:
same field names, label ids from the same class lists, the same ``idx`` (MultiRC's nested
``{paragraph, question, answer}``, ReCoRD's ``{passage, query}``), MultiRC flattened to one example per
answer and ReCoRD to one per query, WSC's spans repaired as in TFDS's ``wsc.fixed``. Then formatting,
metrics and few-shot draws do not depend on where the data came from. Standard library only, so files can
be checked without TensorFlow; ``tasks.sources`` turns the rows into a ``tf.data.Dataset``.

Also here: the few-shot draw (``few_shot_subset``), shared by the local and the TFDS path.
"""
from __future__ import annotations

import hashlib
import json
import os
from typing import (
    Any,
    Callable,
    Dict,
    Iterator,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
)

from tasks.errors import TaskDataError as DataError

# Field kinds: "text" (tf.string), "int32", "label" (class id, int64), "text_list" (tf.string [None]),
# "idx" (int32), "idx:<a>,<b>,..." (dict of int32).
FEATURES: Dict[str, Dict[str, str]] = {
    "boolq": {"question": "text", "passage": "text", "idx": "idx", "label": "label"},
    "cb": {"premise": "text", "hypothesis": "text", "idx": "idx", "label": "label"},
    "copa": {"premise": "text", "choice1": "text", "choice2": "text", "question": "text", "idx": "idx",
             "label": "label"},
    "multirc": {"paragraph": "text", "question": "text", "answer": "text",
                "idx": "idx:paragraph,question,answer", "label": "label"},
    "record": {"passage": "text", "query": "text", "entities": "text_list", "answers": "text_list",
               "idx": "idx:passage,query"},
    "rte": {"premise": "text", "hypothesis": "text", "idx": "idx", "label": "label"},
    "wic": {"word": "text", "sentence1": "text", "sentence2": "text", "start1": "int32", "start2": "int32",
            "end1": "int32", "end2": "int32", "idx": "idx", "label": "label"},
    "wsc.fixed": {"text": "text", "span1_index": "int32", "span2_index": "int32", "span1_text": "text",
                  "span2_text": "text", "idx": "idx", "label": "label"},
    "axb": {"sentence1": "text", "sentence2": "text", "idx": "idx", "label": "label"},
    "axg": {"premise": "text", "hypothesis": "text", "idx": "idx", "label": "label"},
}

LABEL_CLASSES: Dict[str, Tuple[str, ...]] = {
    "boolq": ("False", "True"), "cb": ("entailment", "contradiction", "neutral"),
    "copa": ("choice1", "choice2"), "multirc": ("False", "True"), "rte": ("entailment", "not_entailment"),
    "wic": ("False", "True"), "wsc.fixed": ("False", "True"), "axb": ("entailment", "not_entailment"),
    "axg": ("entailment", "not_entailment"),
}

SPLIT_FILES = {"train": "train.jsonl", "validation": "val.jsonl", "test": "test.jsonl"}
FEWGLUE_FILES = {"fewglue_train": "train.jsonl", "fewglue_dev32": "dev32.jsonl"}
DIAGNOSTICS = ("axb", "axg")

SUPERGLUE_DIR_ENV = "XPROMPT_SUPERGLUE_DIR"
FEWGLUE_DIR_ENV = "XPROMPT_FEWGLUE_DIR"

Row = Dict[str, Any]


def read_jsonl(path: str) -> Iterator[Tuple[int, Row]]:
    """(line number, object) per non-blank line; a bad line names the file and line."""
    if not os.path.isfile(path):
        raise DataError(f"{path} not found")
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise DataError(f"{path}, line {number}: not UTF-8 text (byte {raw[err.start]:#04x} at column "
                                f"{err.start + 1}); the official files are UTF-8: copy the file again or "
                                "re-encode it") from None
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(f"{path}, line {number}: not valid JSON ({err.msg}, column {err.colno})") from None
            if not isinstance(row, dict):
                raise DataError(f"{path}, line {number}: expected a JSON object, found {type(row).__name__}")
            yield number, row


def split_file(root: str, local_name: str, config: str, split: str) -> str:
    """The official file of a split: ``<root>/<Task>/{train,val,test}.jsonl``; the diagnostics' ``AX-b.jsonl``."""
    if config in DIAGNOSTICS:
        if split != "test":
            raise DataError(f"{local_name} has only a test split, not {split!r}")
        return os.path.join(root, local_name, f"{local_name}.jsonl")
    if split not in SPLIT_FILES:
        raise DataError(f"{local_name} has no split {split!r} in the official files; "
                        f"splits: {', '.join(SPLIT_FILES)}")
    return os.path.join(root, local_name, SPLIT_FILES[split])


def load_examples(config: str, path: str) -> List[Row]:
    """All TFDS-shaped examples of one official ``.jsonl`` file."""
    if config not in FEATURES:
        raise DataError(f"no SuperGLUE config {config!r}; configs: {', '.join(FEATURES)}")
    examples: List[Row] = []
    for number, row in read_jsonl(path):
        try:
            examples.extend(_convert(config, row))
        except (KeyError, TypeError, ValueError) as err:
            detail = f"missing field {err}" if isinstance(err, KeyError) else str(err)
            raise DataError(f"{path}, line {number}: not an official {config} example ({detail})") from None
    return examples


def _label(config: str, value: Any) -> int:
    if config == "copa":  # TFDS: 1 -> "choice2", 0 -> "choice1"
        value = "choice2" if value else "choice1"
    elif isinstance(value, bool):
        value = "True" if value else "False"
    elif config == "multirc":
        value = "True" if bool(value) else "False"
    classes = LABEL_CLASSES[config]
    if value not in classes:
        raise ValueError(f"label {value!r} is none of {classes}")
    return classes.index(value)


def _convert(config: str, row: Row) -> List[Row]:
    if config == "multirc":
        paragraph = row["passage"]
        out = []
        for question in paragraph["questions"]:
            for answer in question["answers"]:
                label = answer.get("label")
                out.append({"paragraph": paragraph["text"], "question": question["question"],
                            "answer": answer["text"], "label": -1 if label is None else _label(config, label),
                            "idx": {"paragraph": int(row["idx"]), "question": int(question["idx"]),
                                    "answer": int(answer["idx"])}})
        return out
    if config == "record":
        passage = row["passage"]
        text = passage["text"]
        entities = sorted({text[e["start"]:e["end"] + 1] for e in passage["entities"]})
        return [{"passage": text, "query": qa["query"], "entities": entities,
                 "answers": sorted({a["text"] for a in qa.get("answers", [])}),
                 "idx": {"passage": int(row["idx"]), "query": int(qa["idx"])}} for qa in row["qas"]]
    if config == "wsc.fixed":
        row = {**row, **row["target"]}
    example = {name: row[name] for name, kind in FEATURES[config].items() if kind in ("text", "int32")}
    if config == "wsc.fixed":
        example = _fix_wsc_spans(example)
    example["idx"] = int(row["idx"])
    example["label"] = _label(config, row["label"]) if "label" in row else -1
    return [example]


def _fix_wsc_spans(example: Row) -> Row:
    """TFDS ``wsc.fixed``: make each span a substring of the text (case of the first word, a trailing
    period, a newline), leaving the two examples whose candidate has intervening words as they are."""
    example = dict(example)
    for span in ("span1", "span2"):
        text, index = example[f"{span}_text"], example[f"{span}_index"]
        if text in example["text"] or text in ("Kamenev and Zinoviev", "Kamenev, Zinoviev, and Stalin"):
            continue
        if "theyscold" in text:
            # TFDS sets the index but (a no-op str.replace) keeps the text: same here, for equal features.
            example["span2_index"] = 10
        first_word = example["text"].split()[index]
        text = (text[0].lower() if first_word[0].islower() else text[0].upper()) + text[1:]
        text = text.rstrip(".").replace("\n", " ")
        example[f"{span}_text"] = text
    return example


def unit_id(config: str, example: Mapping[str, Any]) -> int:
    """What one few-shot "example" is: a passage with all its questions (MultiRC, ReCoRD), else one line.

    That is FewGLUE's unit too (its 32 MultiRC examples are 32 paragraphs), and it keeps a question's
    answers together, which MultiRC's per-question exact match needs.
    """
    idx = example["idx"]
    if config == "multirc":
        return int(idx["paragraph"])
    if config == "record":
        return int(idx["passage"])
    return int(idx)


def few_shot_subset(config: str, examples: Sequence[Row], k: int,
                    keep: Optional[Callable[[Row], bool]] = None, seed_name: Optional[str] = None) -> List[Row]:
    """k units (see ``unit_id``) drawn with a fixed seed per task, the examples kept in their file order.

    The draw ranks every unit by SHA-256 of ``"<seed_name>:<unit id>"`` and keeps the k first: it depends
    only on the task and the ids (not on file order, Python or NumPy version), it is the same from TFDS
    and from local files, and the subsets nest (``train_k4`` within ``train_k16`` within ``train_k32``).
    ``keep`` restricts the pool first (WSC simple training draws among positive examples).
    """
    pool = [ex for ex in examples if keep is None or keep(ex)]
    units = sorted({unit_id(config, ex) for ex in pool})
    if k > len(units):
        raise DataError(f"{config}: cannot draw {k} few-shot examples from {len(units)}")
    name = seed_name or config

    def rank(unit: int) -> str:
        return hashlib.sha256(f"{name}:{unit}".encode()).hexdigest()

    chosen = set(sorted(units, key=rank)[:k])
    return [ex for ex in pool if unit_id(config, ex) in chosen]
