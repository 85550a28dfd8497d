"""Leaderboard submission files from ``predict``'s predictions on a test split.

SuperGLUE (super.gluebenchmark.com) takes one ``<Task>.jsonl`` per task in a zip, one line per test example
with its ``idx`` and ``label``, labels written as the benchmark's own data files write them (the format of
jiant, the benchmark's reference toolkit): BoolQ and WiC ``"true"``/``"false"``, WSC ``"True"``/``"False"``,
COPA ``0``/``1``, CB and RTE (and the diagnostics AX-b and AX-g, predicted by an RTE prompt) the label
names, ReCoRD the predicted entity text, and MultiRC one line per paragraph, ``{"idx": p, "passage":
{"questions": [{"idx": q, "answers": [{"idx": a, "label": 0|1}]}]}}``.

GLUE (gluebenchmark.com) takes one ``<Task>.tsv`` per task with the header ``index<TAB>prediction``, the
rows in test order: label names for MNLI (``MNLI-m``, ``MNLI-mm``), QNLI and RTE, 0/1 for CoLA, SST-2,
MRPC and QQP, the similarity score for STS-B.
"""
from __future__ import annotations

import collections
import csv
import io
import json
import os
from typing import Any, Dict, List, Optional, Sequence

from xprompt_jax import export
from xprompt_jax.errors import DataError

# SuperGLUE: label index -> the submission's label.
_SUPERGLUE_LABELS = {
    "BoolQ": ["false", "true"], "WiC": ["false", "true"], "WSC": ["False", "True"], "COPA": [0, 1],
    "CB": ["entailment", "contradiction", "neutral"], "RTE": ["entailment", "not_entailment"],
    "AX-b": ["entailment", "not_entailment"], "AX-g": ["entailment", "not_entailment"],
}
# GLUE: TFDS config -> (file name, label index -> prediction), None for a numeric prediction.
_GLUE_FILES = {
    "cola": ("CoLA", [0, 1]), "sst2": ("SST-2", [0, 1]), "mrpc": ("MRPC", [0, 1]), "qqp": ("QQP", [0, 1]),
    "stsb": ("STS-B", None), "mnli_matched": ("MNLI-m", ["entailment", "neutral", "contradiction"]),
    "mnli_mismatched": ("MNLI-mm", ["entailment", "neutral", "contradiction"]),
    "qnli": ("QNLI", ["entailment", "not_entailment"]), "rte": ("RTE", ["entailment", "not_entailment"]),
    "wnli": ("WNLI", [0, 1]), "ax": ("AX", ["entailment", "neutral", "contradiction"]),
}


def _label_index(row: dict, names: Optional[Sequence[str]], where: str) -> int:
    if isinstance(row.get("label"), int):
        return row["label"]
    if names and row.get("prediction") in names:
        return list(names).index(row["prediction"])
    raise DataError(f"{where}: prediction {row.get('prediction')!r} of example {row.get('index')} is not one of the "
                    f"task's labels {list(names or [])}; score with rank classification (EVAL_MODE='rank')")


def superglue_lines(local_name: str, rows: List[dict], label_names: Optional[Sequence[str]]) -> List[dict]:
    """The lines of ``<local_name>.jsonl`` for predictions ``rows`` (``predict``'s, in test order)."""
    where = f"SuperGLUE {local_name} submission"
    if local_name == "ReCoRD":
        return [{"idx": _int_idx(row["idx"], "query"), "label": row["prediction"]} for row in rows]
    if local_name == "MultiRC":
        paragraphs: Dict[int, Dict[int, List[dict]]] = collections.defaultdict(lambda: collections.defaultdict(list))
        for row in rows:
            idx = row["idx"]
            paragraphs[int(idx["paragraph"])][int(idx["question"])].append(
                {"idx": int(idx["answer"]), "label": _label_index(row, label_names, where)})
        return [{"idx": p, "passage": {"questions": [{"idx": q, "answers": answers} for q, answers in questions.items()]}}
                for p, questions in paragraphs.items()]
    if local_name not in _SUPERGLUE_LABELS:
        raise DataError(f"no SuperGLUE submission format for {local_name!r} (known: "
                        f"{', '.join(sorted(_SUPERGLUE_LABELS) + ['MultiRC', 'ReCoRD'])})")
    labels = _SUPERGLUE_LABELS[local_name]
    return [{"idx": _int_idx(row["idx"]), "label": labels[_label_index(row, label_names, where)]} for row in rows]


def _int_idx(idx: Any, key: Optional[str] = None) -> int:
    if isinstance(idx, dict):
        return int(idx[key] if key else next(iter(idx.values())))
    return int(idx)


def glue_tsv(config: str, rows: List[dict], label_names: Optional[Sequence[str]]) -> str:
    """The text of GLUE's ``<Task>.tsv`` for predictions ``rows`` (in test order)."""
    if config not in _GLUE_FILES:
        raise DataError(f"no GLUE submission format for {config!r} (known: {', '.join(sorted(_GLUE_FILES))})")
    _, labels = _GLUE_FILES[config]
    out = io.StringIO()
    writer = csv.writer(out, delimiter="\t", lineterminator="\n")
    writer.writerow(["index", "prediction"])
    for number, row in enumerate(rows):
        index = _int_idx(row["idx"]) if row.get("idx") is not None else number
        if labels is None:
            value = float(row["prediction"])
        else:
            value = labels[_label_index(row, label_names, f"GLUE {config} submission")]
        writer.writerow([index, value])
    return out.getvalue()


def write_submission(directory: str, spec, rows: List[dict]) -> str:
    """The submission file of ``spec``'s benchmark for ``rows`` under ``directory``; returns its path."""
    if spec.benchmark == "super_glue":
        path = os.path.join(directory, f"{spec.local_name}.jsonl")
        lines = superglue_lines(spec.local_name, rows, spec.label_names)
        export.save_text(path, "".join(json.dumps(line) + "\n" for line in lines))
        return path
    if spec.benchmark == "glue":
        name = _GLUE_FILES.get(spec.config, (spec.config,))[0]
        path = os.path.join(directory, f"{name}.tsv")
        export.save_text(path, glue_tsv(spec.config, rows, spec.label_names))
        return path
    raise DataError(f"{spec.name} is not a SuperGLUE or GLUE task: there is no leaderboard file to write")
