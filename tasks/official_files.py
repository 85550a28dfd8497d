"""GLUE, MRQA 2019, WinoGrande, SciTail, Yelp polarity and PAWS-Wiki official files, read into TFDS's examples.

The SuperGLUE counterpart is ``tasks.superglue_files``. Each reader here does what the TFDS builder of the
data set does to the same file (``tensorflow_datasets`` 4.9: ``glue``, ``mrqa``, ``winogrande``,
``sci_tail``, ``yelp_polarity_reviews``, ``paws_wiki``), field for field, so a user with the official
release on disk and a user of TFDS train on the same examples; ``tests/test_tasks_suite_tfds.py`` runs both on
the sample files and compares. TFDS's quirks are kept on purpose (Yelp's text is the raw CSV line without its
first five and last two characters; GLUE rows with a missing column are dropped; MRPC's dev is cut from
the MSR training file by ``dev_ids``). Standard library only.

Folder layouts (the official releases'; ``<root>`` is the benchmark's folder):
  glue          ``<root>/<TASK>/{train,dev,test}.tsv`` (MNLI: ``dev_matched.tsv`` ...; MRPC: the MSR files
                ``msr_paraphrase_{train,test}.txt`` and ``mrpc_dev_ids.tsv``, or as GLUE's script names them
                before conversion, ``train``, ``test``, ``dev_ids``)
  mrqa          ``<root>/{train,dev}/<Name>.jsonl.gz`` (out-of-domain sets: ``dev/`` only)
  winogrande    ``<root>/{train_xl,dev,test}.jsonl``
  scitail       ``<root>/tsv_format/scitail_1.0_{train,dev,test}.tsv``
  yelp_polarity ``<root>/{train,test}.csv``
  paws_wiki     ``<root>/{train,dev,test}.tsv`` (labeled_final, tokenized)
"""
from __future__ import annotations

import csv
import gzip
import io
import json
import os
from typing import Any, Callable, Dict, Iterable, List, Sequence

from tasks.errors import TaskDataError as DataError

Row = Dict[str, Any]

# Field kinds, as in ``superglue_files.FEATURES``; MRQA keeps only what its formatter and metric read.
_PAIR = {"sentence1": "text", "sentence2": "text", "label": "label"}
FEATURES: Dict[str, Dict[str, str]] = {
    "mrqa": {"qid": "text", "subset": "text", "question": "text", "context": "text", "answers": "text_list"},
    "winogrande": {"sentence": "text", "option1": "text", "option2": "text", "label": "label"},
    "scitail": {"premise": "text", "hypothesis": "text", "label": "label"},
    "yelp_polarity": {"text": "text", "label": "label"},
    "paws_wiki": dict(_PAIR),
}
GLUE_FEATURES: Dict[str, Dict[str, str]] = {
    "cola": {"sentence": "text", "idx": "idx", "label": "label"},
    "sst2": {"sentence": "text", "idx": "idx", "label": "label"},
    "mrpc": dict(_PAIR, idx="idx"),
    "qqp": {"question1": "text", "question2": "text", "idx": "idx", "label": "label"},
    "stsb": {"sentence1": "text", "sentence2": "text", "idx": "idx", "label": "float"},
    "qnli": {"question": "text", "sentence": "text", "idx": "idx", "label": "label"},
    "rte": dict(_PAIR, idx="idx"),
}
for _mnli in ("mnli", "mnli_matched", "mnli_mismatched"):
    GLUE_FEATURES[_mnli] = {"premise": "text", "hypothesis": "text", "idx": "idx", "label": "label"}

# GLUE, as TFDS's builder configs: folder, {feature: column}, label column, label classes (None: a float).
_GLUE = {
    "cola": ("CoLA", {"sentence": "sentence"}, "is_acceptable", ("unacceptable", "acceptable")),
    "sst2": ("SST-2", {"sentence": "sentence"}, "label", ("negative", "positive")),
    "qqp": ("QQP", {"question1": "question1", "question2": "question2"}, "is_duplicate",
            ("not_duplicate", "duplicate")),
    "stsb": ("STS-B", {"sentence1": "sentence1", "sentence2": "sentence2"}, "score", None),
    "qnli": ("QNLI", {"question": "question", "sentence": "sentence"}, "label", ("entailment", "not_entailment")),
    "rte": ("RTE", {"sentence1": "sentence1", "sentence2": "sentence2"}, "label", ("entailment", "not_entailment")),
}
_MNLI = ("MNLI", {"premise": "sentence1", "hypothesis": "sentence2"}, "gold_label",
         ("entailment", "neutral", "contradiction"))
for _mnli in ("mnli", "mnli_matched", "mnli_mismatched"):
    _GLUE[_mnli] = _MNLI
_MNLI_FILES = {"mnli": {"train": "train.tsv", "validation_matched": "dev_matched.tsv",
                        "validation_mismatched": "dev_mismatched.tsv", "test_matched": "test_matched.tsv",
                        "test_mismatched": "test_mismatched.tsv"},
               "mnli_matched": {"validation": "dev_matched.tsv", "test": "test_matched.tsv"},
               "mnli_mismatched": {"validation": "dev_mismatched.tsv", "test": "test_mismatched.tsv"}}
_GLUE_FILES = {"train": "train.tsv", "validation": "dev.tsv", "test": "test.tsv"}
MRPC_FILES = {"train": ("msr_paraphrase_train.txt", "train"), "test": ("msr_paraphrase_test.txt", "test"),
              "dev_ids": ("mrpc_dev_ids.tsv", "dev_ids")}

# MRQA: TFDS config -> the release's file name (without .jsonl.gz).
MRQA_FILES = {"squad": "SQuAD", "news_qa": "NewsQA", "trivia_qa": "TriviaQA-web", "search_qa": "SearchQA",
              "hotpot_qa": "HotpotQA", "natural_questions": "NaturalQuestionsShort", "bio_asq": "BioASQ",
              "drop": "DROP", "duo_rc": "DuoRC.ParaphraseRC", "race": "RACE",
              "relation_extraction": "RelationExtraction", "textbook_qa": "TextbookQA"}
MRQA_OUT_OF_DOMAIN = ("bio_asq", "drop", "duo_rc", "race", "relation_extraction", "textbook_qa")

_OTHER_FILES = {
    "winogrande": {"train": "train_xl.jsonl", "validation": "dev.jsonl", "test": "test.jsonl"},
    "scitail": {s: os.path.join("tsv_format", f"scitail_1.0_{f}.tsv")
                for s, f in (("train", "train"), ("validation", "dev"), ("test", "test"))},
    "yelp_polarity": {"train": "train.csv", "test": "test.csv"},
    "paws_wiki": {"train": "train.tsv", "validation": "dev.tsv", "test": "test.tsv"},
}
OTHER_LABELS = {"winogrande": ("1", "2"), "scitail": ("entails", "neutral"), "yelp_polarity": ("1", "2"),
                "paws_wiki": ("0", "1")}

DIR_ENVS = {"glue": "XPROMPT_GLUE_DIR", "mrqa": "XPROMPT_MRQA_DIR", "winogrande": "XPROMPT_WINOGRANDE_DIR",
            "scitail": "XPROMPT_SCITAIL_DIR", "yelp_polarity": "XPROMPT_YELP_DIR", "paws_wiki": "XPROMPT_PAWS_DIR"}


def features(benchmark: str, config: str) -> Dict[str, str]:
    """The field kinds of a task's TFDS examples (what ``tasks.sources`` turns into a tf.data signature)."""
    return GLUE_FEATURES[config] if benchmark == "glue" else FEATURES[benchmark]


def split_paths(benchmark: str, config: str, root: str, split: str) -> List[str]:
    """Every official file the split reads, in reading order (MRPC reads two)."""
    if benchmark == "glue":
        if config == "mrpc":
            names = ("test",) if split == "test" else ("dev_ids", "train")
            return [_mrpc_file(root, name) for name in names]
        table = _MNLI_FILES.get(config, _GLUE_FILES)
        folder = _GLUE[config][0]
    elif benchmark == "mrqa":
        table = {"train": "train", "validation": "dev"}
        if split in table:
            return [os.path.join(root, table[split], f"{MRQA_FILES[config]}.jsonl.gz")]
        table = {}
        folder = ""
    else:
        table, folder = _OTHER_FILES[benchmark], ""
    if split not in table:
        raise DataError(f"{benchmark}/{config} has no split {split!r} in its official files; "
                        f"splits: {', '.join(table) or 'train, validation'}")
    return [os.path.join(root, folder, table[split])]


def _mrpc_file(root: str, name: str) -> str:
    """MRPC's MSR file under its release name, else under GLUE's short name (the sample folder's)."""
    release, short = MRPC_FILES[name]
    for candidate in (os.path.join(root, "MRPC", release), os.path.join(root, "MRPC", short)):
        if os.path.isfile(candidate):
            return candidate
    return os.path.join(root, "MRPC", release)


def load_rows(benchmark: str, config: str, root: str, split: str) -> List[Row]:
    """TFDS's examples of one split, read from the official files under ``root``."""
    paths = split_paths(benchmark, config, root, split)
    for path in paths:
        if not os.path.isfile(path):
            raise DataError(f"{benchmark}/{config}: split {split!r} needs {path}, which is missing; put the "
                            f"official file there, point ${DIR_ENVS[benchmark]} at the folder holding it, or "
                            "unset it to read TFDS")
    if benchmark == "glue":
        if config == "mrpc":
            return read_mrpc(paths, split)
        return read_glue(config, paths[0], split)
    reader: Callable[[str], List[Row]] = {"mrqa": read_mrqa, "winogrande": read_winogrande, "scitail": read_scitail,
                                          "yelp_polarity": read_yelp, "paws_wiki": read_paws}[benchmark]
    return reader(paths[0])


def _text_lines(path: str, *, skip_bytes: int = 0, newline: str | None = "") -> Iterable[str]:
    """The file's lines as text (``.gz`` decompressed); ``skip_bytes`` first (MRPC's byte-order mark, which
    TFDS skips as three bytes); ``newline=None``: universal newlines, as TFDS's plain ``open`` reads."""
    raw = gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb")
    with raw, io.TextIOWrapper(raw, encoding="utf-8", newline=newline) as f:
        raw.read(skip_bytes)
        try:
            yield from f
        except UnicodeDecodeError as err:
            raise DataError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start}); the official files are "
                            "UTF-8: copy the file again") from None


def read_glue(config: str, path: str, split: str) -> List[Row]:
    """One GLUE ``.tsv`` (not MRPC), as TFDS's ``Glue._generate_examples``: ``idx`` is the row number."""
    _, columns, label_column, classes = _GLUE[config]
    lines = _text_lines(path)
    headerless = config == "cola" and split != "test"
    reader = (csv.reader(lines, delimiter="\t", quoting=csv.QUOTE_NONE) if headerless
              else csv.DictReader(lines, delimiter="\t", quoting=csv.QUOTE_NONE))
    rows = []
    for n, row in enumerate(reader):
        if headerless:
            row = {"sentence": row[3], "is_acceptable": row[1]}
        example: Row = {feature: row.get(column) for feature, column in columns.items()}
        example["idx"] = n
        example["label"] = _glue_label(row[label_column], classes, path, n) if label_column in row else -1
        if all(value is not None for value in example.values()):  # TFDS drops rows with a missing column
            rows.append(example)
    return rows


def _glue_label(value, classes: Sequence[str] | None, path: str, n: int):
    if value is None:
        return None
    if classes is None:
        return float(value)
    if value in classes:
        return classes.index(value)
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        raise DataError(f"{path}, row {n + 1}: label {value!r} is none of {classes}") from None


def read_mrpc(paths: Sequence[str], split: str) -> List[Row]:
    """MRPC from the MSR files: test as it is (unlabelled, as TFDS has it); train and validation are the MSR
    training file's rows outside and inside ``dev_ids``; ``idx`` is the row in the MSR file."""
    if split == "test":
        reader = csv.DictReader(_text_lines(paths[0]), delimiter="\t", quoting=csv.QUOTE_NONE)
        return [{"sentence1": r["#1 String"], "sentence2": r["#2 String"], "label": -1, "idx": n}
                for n, r in enumerate(reader)]
    dev_ids = {tuple(r[:2]) for r in csv.reader(_text_lines(paths[0]), delimiter="\t", quoting=csv.QUOTE_NONE)}
    reader = csv.DictReader(_text_lines(paths[1], skip_bytes=3), delimiter="\t", quoting=csv.QUOTE_NONE)  # a BOM
    return [{"sentence1": r["#1 String"], "sentence2": r["#2 String"], "label": int(r["Quality"]), "idx": n}
            for n, r in enumerate(reader) if ((r["#1 ID"], r["#2 ID"]) in dev_ids) == (split == "validation")]


def read_mrqa(path: str) -> List[Row]:
    """One example per question: ``subset`` from the header line, context and question stripped, all answers."""
    lines = iter(_text_lines(path))
    try:
        subset = json.loads(next(lines))["header"]["dataset"]
    except (StopIteration, json.JSONDecodeError, KeyError, TypeError):
        raise DataError(f"{path}: the first line is not MRQA's header {{\"header\": {{\"dataset\": ...}}}}") from None
    rows = []
    for number, line in enumerate(lines, start=2):
        try:
            paragraph = json.loads(line)
            context = paragraph["context"].strip()
            rows.extend({"subset": subset, "context": context, "qid": qa["qid"], "question": qa["question"].strip(),
                         "answers": list(qa["answers"])} for qa in paragraph["qas"])
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as err:
            raise DataError(f"{path}, line {number}: not an MRQA paragraph ({type(err).__name__}: {err})") from None
    return rows


def _class_id(value: Any, classes: Sequence[str], path: str, where: str) -> int:
    if value in (None, ""):
        return -1  # unlabelled (WinoGrande's test)
    if str(value) not in classes:
        raise DataError(f"{path}, {where}: label {value!r} is none of {tuple(classes)}")
    return list(classes).index(str(value))


def read_winogrande(path: str) -> List[Row]:
    rows = []
    for number, line in enumerate(_text_lines(path), start=1):
        if not line.strip():
            continue
        try:
            r = json.loads(line)
            rows.append({"sentence": r["sentence"], "option1": r["option1"], "option2": r["option2"],
                         "label": _class_id(r.get("answer"), OTHER_LABELS["winogrande"], path, f"line {number}")})
        except (json.JSONDecodeError, KeyError) as err:
            raise DataError(f"{path}, line {number}: not a WinoGrande example ({err})") from None
    return rows


def read_scitail(path: str) -> List[Row]:
    """SciTail's TSV format (premise, hypothesis, label), read as TFDS reads it (``csv`` with quoting)."""
    rows = []
    for n, r in enumerate(csv.reader(_text_lines(path), delimiter="\t")):
        if len(r) < 3:
            raise DataError(f"{path}, row {n + 1}: expected premise, hypothesis, label; found {len(r)} columns")
        rows.append({"premise": r[0], "hypothesis": r[1],
                     "label": _class_id(r[2], OTHER_LABELS["scitail"], path, f"row {n + 1}")})
    return rows


def read_yelp(path: str) -> List[Row]:
    """Yelp polarity's CSV as TFDS reads it: label ``line[1]``, text ``line[5:-2].strip()`` (no unescaping)."""
    return [{"text": line[5:-2].strip(),
             "label": _class_id(line[1:2], OTHER_LABELS["yelp_polarity"], path, f"line {n + 1}")}
            for n, line in enumerate(_text_lines(path, newline=None))]


def read_paws(path: str) -> List[Row]:
    rows = []
    for n, r in enumerate(csv.DictReader(_text_lines(path), delimiter="\t")):
        try:
            rows.append({"sentence1": r["sentence1"], "sentence2": r["sentence2"],
                         "label": _class_id(r["label"], OTHER_LABELS["paws_wiki"], path, f"row {n + 2}")})
        except KeyError as err:
            raise DataError(f"{path}: no column {err}; PAWS-Wiki's files have id, sentence1, sentence2, label") from None
    return rows
