"""What each GLUE/SuperGLUE task is, in one table that both sides read: no TensorFlow here.

``tasks.superglue`` and ``tasks.glue`` build their seqio tasks from these specs (which text format, which
fields in which order, which labels); training and evaluation hosts, which may lack TensorFlow, use the same
specs to turn generated text into labels and score it (``TaskSpec.evaluate``). One table means the two
cannot drift apart.

Task names: ``super_glue_<task>_v102`` / ``glue_<task>_v002`` carry T5's leading task word
(``"rte hypothesis: ..."``); ``taskless_...`` drop it, as prompt tuning does (Lester et al. 2021). WSC comes
in two formats: ``super_glue_wsc_v102`` classifies True/False on the text with the candidate marked
``* ... *`` and the pronoun ``# ... #`` (T5's ``wsc`` preprocessor); ``super_glue_wsc_v102_simple_train`` /
``_simple_eval`` are T5's own "simple" format (generate the referent of the ``*pronoun*``; train on positive
examples only; evaluation checks the generated referent against the candidate).
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from tasks import metrics, postprocessors, suite_specs
from tasks.errors import TaskDataError as DataError

FEW_SHOT_KS: Tuple[int, ...] = (4, 16, 32)
FEWGLUE_SPLITS: Tuple[str, ...] = ("fewglue_train", "fewglue_dev32")
SUPERGLUE_VERSION = "1.0.2"
GLUE_VERSION = "2.0.0"

# Text formats, each a T5 preprocessor: "glue" (``<prefix> key: text key: text``), "stsb" (GLUE's glue
# format with the score rounded to 0.2 as its target), "wsc" (marked spans, True/False), "wsc_simple"
# (``wsc: ... *pronoun* ...`` -> referent), "record" (``record query: ... entities: ... passage: ...``).
# "mrqa" (``question: ... context: ...`` with T5's punctuation padding -> the first answer).
TEXT_FORMATS = ("glue", "stsb", "wsc", "wsc_simple", "record", "mrqa")


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    """One registered task: its data, its text-to-text format, and how its outputs are scored.

    Fields:
      name: the seqio task name (``taskless_super_glue_rte_v102``).
      benchmark: ``"super_glue"``, ``"glue"``, ``"mrqa"``, ``"winogrande"``, ``"yelp_polarity"``,
        ``"scitail"`` or ``"paws_wiki"`` (the last five: ``tasks.suite_specs``).
      config: the TFDS builder config (``"rte"``, ``"wsc.fixed"``, ``"mnli_matched"``).
      tfds_name: the default source, ``super_glue/<config>:1.0.2`` or ``glue/<config>:2.0.0``.
      local_name: the task's folder in the official SuperGLUE release (``"RTE"``, ``"AX-b"``), None for GLUE.
      text_format: one of ``TEXT_FORMATS``.
      prefix: the leading task word T5 writes (``"rte"``; ``"wsc:"`` for WSC simple).
      taskless: True when that word is removed (T5's text, first space-delimited token dropped).
      feature_names: the example fields the formatter writes, in order (each as ``name: text``).
      label_names: class names in label-id order, the targets the model generates; None when the target
        is free text (ReCoRD, WSC simple) or a number (STS-B).
      postprocessor: ``fn(text, example=None, is_target=False)``, see ``tasks.postprocessors``; None
        leaves text as it is.
      metric_fns: seqio-style ``fn(targets, predictions) -> {name: value}``, see ``tasks.metrics``.
      splits: the source's own splits (TFDS names: ``train``, ``validation``, ``test``...).
      few_shot_ks: k of the ``train_k<k>`` subsets drawn from ``train`` (empty where there is no train).
      fewglue_splits: the FewGLUE splits offered when a FewGLUE folder is configured.
      rekey: source field -> formatter field renames applied first (AX-b speaks RTE's field names).
      correct_referent_only: WSC simple training keeps only examples whose candidate is the referent.
      source_splits: split -> the source's name for it where they differ (MRQA's out-of-domain
        ``validation`` is TFDS's ``test``; WinoGrande's ``train`` is ``train_xl``).
    """

    name: str
    benchmark: str
    config: str
    tfds_name: str
    local_name: Optional[str]
    text_format: str
    prefix: str
    taskless: bool
    feature_names: Tuple[str, ...]
    label_names: Optional[Tuple[str, ...]]
    postprocessor: Optional[Callable[..., Any]]
    metric_fns: Tuple[Callable[[Sequence, Sequence], Dict[str, float]], ...]
    splits: Tuple[str, ...]
    few_shot_ks: Tuple[int, ...] = ()
    fewglue_splits: Tuple[str, ...] = ()
    rekey: Optional[Mapping[str, str]] = None
    correct_referent_only: bool = False
    source_splits: Optional[Mapping[str, str]] = None

    def source_split(self, split: str) -> str:
        """The source's (TFDS's) name of one of ``splits``."""
        return (self.source_splits or {}).get(split, split)

    @property
    def all_splits(self) -> Tuple[str, ...]:
        """Every split name the task can offer (FewGLUE ones need a configured FewGLUE folder)."""
        return self.splits + tuple(f"train_k{k}" for k in self.few_shot_ks) + self.fewglue_splits

    def postprocess(self, text: Any, example: Optional[Mapping[str, Any]] = None, is_target: bool = False):
        """Generated (or target) text -> what the metrics compare."""
        if self.postprocessor is None:
            return postprocessors.as_text(text)
        return self.postprocessor(text, example=example, is_target=is_target)

    def score(self, targets: Sequence, predictions: Sequence) -> Dict[str, float]:
        """All metrics of the task on postprocessed targets and predictions, in one dict."""
        results: Dict[str, float] = {}
        for fn in self.metric_fns:
            results.update(fn(targets, predictions))
        return results

    def evaluate(self, predictions: Sequence[str], examples: Sequence[Mapping[str, Any]]) -> Dict[str, float]:
        """Scores generated texts against their examples (each with ``targets_pretokenized``), as seqio does."""
        if len(predictions) != len(examples):
            raise ValueError(f"{self.name}: {len(predictions)} predictions for {len(examples)} examples")
        targets = [self.postprocess(ex["targets_pretokenized"], example=ex, is_target=True) for ex in examples]
        outputs = [self.postprocess(text, example=ex, is_target=False) for text, ex in zip(predictions, examples)]
        return self.score(targets, outputs)


def _label_pp(label_names: Sequence[str]) -> Callable[..., int]:
    return functools.partial(postprocessors.string_label_to_class_id, label_classes=tuple(label_names))


_BOOL = ("False", "True")
_ENT2 = ("entailment", "not_entailment")
_STANDARD = ("train", "validation", "test")


def _superglue_base() -> List[dict]:
    """One entry per SuperGLUE task; ``flavours`` below make the two named variants of each."""
    acc = (metrics.accuracy,)
    return [
        dict(key="boolq", config="boolq", local_name="BoolQ", text_format="glue", prefix="boolq",
             feature_names=("passage", "question"), label_names=_BOOL, metric_fns=acc),
        dict(key="cb", config="cb", local_name="CB", text_format="glue", prefix="cb",
             feature_names=("hypothesis", "premise"), label_names=("entailment", "contradiction", "neutral"),
             metric_fns=(metrics.mean_multiclass_f1(3), metrics.accuracy)),
        dict(key="copa", config="copa", local_name="COPA", text_format="glue", prefix="copa",
             feature_names=("choice1", "choice2", "premise", "question"), label_names=("choice1", "choice2"),
             metric_fns=acc),
        dict(key="multirc", config="multirc", local_name="MultiRC", text_format="glue", prefix="multirc",
             feature_names=("question", "answer", "paragraph"), label_names=_BOOL,
             postprocessor=postprocessors.multirc,
             metric_fns=(metrics.multirc_f1_over_all_answers, metrics.multirc_exact_match)),
        dict(key="record", config="record", local_name="ReCoRD", text_format="record", prefix="record",
             feature_names=("query", "entities", "passage"), label_names=None,
             postprocessor=postprocessors.record, metric_fns=(metrics.record,)),
        dict(key="rte", config="rte", local_name="RTE", text_format="glue", prefix="rte",
             feature_names=("hypothesis", "premise"), label_names=_ENT2, metric_fns=acc),
        dict(key="wic", config="wic", local_name="WiC", text_format="glue", prefix="wic",
             feature_names=("sentence1", "sentence2", "word"), label_names=_BOOL, metric_fns=acc),
        dict(key="wsc", config="wsc.fixed", local_name="WSC", text_format="wsc", prefix="wsc",
             feature_names=("text",), label_names=_BOOL, metric_fns=acc),
        dict(key="wsc", suffix="_simple_train", config="wsc.fixed", local_name="WSC",
             text_format="wsc_simple", prefix="wsc:", feature_names=("text",), label_names=None,
             postprocessor=None, metric_fns=(), splits=("train",), fewglue_splits=("fewglue_train",),
             correct_referent_only=True),
        dict(key="wsc", suffix="_simple_eval", config="wsc.fixed", local_name="WSC",
             text_format="wsc_simple", prefix="wsc:", feature_names=("text",), label_names=None,
             postprocessor=postprocessors.wsc_simple, metric_fns=acc, splits=("validation", "test"),
             fewglue_splits=("fewglue_dev32",)),
        # The diagnostics are test-only and cast as RTE. T5 registers no metric for them; the SuperGLUE
        # paper reports Matthews correlation for AX-b and accuracy (with gender parity) for AX-g.
        dict(key="axb", config="axb", local_name="AX-b", text_format="glue", prefix="rte",
             feature_names=("hypothesis", "premise"), label_names=_ENT2,
             metric_fns=(metrics.matthews_corrcoef,), splits=("test",), fewglue_splits=(),
             rekey={"sentence1": "premise", "sentence2": "hypothesis"}),
        dict(key="axg", config="axg", local_name="AX-g", text_format="glue", prefix="rte",
             feature_names=("hypothesis", "premise"), label_names=_ENT2, metric_fns=acc, splits=("test",),
             fewglue_splits=()),
    ]


def _glue_base() -> List[dict]:
    acc = (metrics.accuracy,)
    f1_acc = (metrics.f1_score_with_invalid, metrics.accuracy)
    mnli = ("entailment", "neutral", "contradiction")
    return [
        dict(key="cola", config="cola", text_format="glue", prefix="cola", feature_names=("sentence",),
             label_names=("unacceptable", "acceptable"), metric_fns=(metrics.matthews_corrcoef,)),
        dict(key="sst2", config="sst2", text_format="glue", prefix="sst2", feature_names=("sentence",),
             label_names=("negative", "positive"), metric_fns=acc),
        dict(key="mrpc", config="mrpc", text_format="glue", prefix="mrpc", feature_names=("sentence1", "sentence2"),
             label_names=("not_equivalent", "equivalent"), metric_fns=f1_acc),
        dict(key="qqp", config="qqp", text_format="glue", prefix="qqp", feature_names=("question1", "question2"),
             label_names=("not_duplicate", "duplicate"), metric_fns=f1_acc),
        dict(key="stsb", config="stsb", text_format="stsb", prefix="stsb", feature_names=("sentence1", "sentence2"),
             label_names=None, postprocessor=postprocessors.string_to_float,
             metric_fns=(metrics.pearson_corrcoef, metrics.spearman_corrcoef)),
        dict(key="mnli", config="mnli", text_format="glue", prefix="mnli", feature_names=("hypothesis", "premise"),
             label_names=mnli, metric_fns=acc,
             splits=("train", "validation_matched", "validation_mismatched", "test_matched", "test_mismatched")),
        dict(key="mnli_matched", config="mnli_matched", text_format="glue", prefix="mnli",
             feature_names=("hypothesis", "premise"), label_names=mnli, metric_fns=acc, splits=("validation", "test")),
        dict(key="mnli_mismatched", config="mnli_mismatched", text_format="glue", prefix="mnli",
             feature_names=("hypothesis", "premise"), label_names=mnli, metric_fns=acc, splits=("validation", "test")),
        dict(key="qnli", config="qnli", text_format="glue", prefix="qnli", feature_names=("question", "sentence"),
             label_names=_ENT2, metric_fns=acc),
        dict(key="rte", config="rte", text_format="glue", prefix="rte", feature_names=("sentence1", "sentence2"),
             label_names=_ENT2, metric_fns=acc),
    ]


def _build() -> Dict[str, TaskSpec]:
    specs: Dict[str, TaskSpec] = {}
    for benchmark, base, version, tag in (("super_glue", _superglue_base(), SUPERGLUE_VERSION, "v102"),
                                          ("glue", _glue_base(), GLUE_VERSION, "v002")):
        for entry in base:
            entry = dict(entry)
            key, suffix = entry.pop("key"), entry.pop("suffix", "")
            _add_variants(specs, dict(entry, name=f"{benchmark}_{key}_{tag}{suffix}", benchmark=benchmark,
                                      tfds_name=f"{benchmark}/{entry['config']}:{version}"))
    for entry in suite_specs.mrqa_entries() + suite_specs.other_entries():
        _add_variants(specs, entry)
    return specs


def _add_variants(specs: Dict[str, TaskSpec], entry: dict) -> None:
    """The entry's task with T5's task word and (unless ``variants`` says otherwise) its ``taskless_`` twin."""
    entry = dict(entry)
    entry.setdefault("local_name", None)
    name, variants = entry.pop("name"), entry.pop("variants", (False, True))
    label_names = entry["label_names"]
    if "postprocessor" not in entry:
        entry["postprocessor"] = _label_pp(label_names) if label_names else None
    splits = entry.pop("splits", _STANDARD)
    few_shot = FEW_SHOT_KS if "train" in splits and entry["benchmark"] in ("glue", "super_glue") else ()
    fewglue = entry.pop("fewglue_splits", FEWGLUE_SPLITS if entry["benchmark"] == "super_glue" else ())
    for taskless in variants:
        full = f"{'taskless_' if taskless else ''}{name}"
        specs[full] = TaskSpec(name=full, taskless=taskless, splits=splits, few_shot_ks=few_shot,
                               fewglue_splits=fewglue, **entry)


TASK_SPECS: Dict[str, TaskSpec] = _build()


def get_spec(name: str) -> TaskSpec:
    """The spec of a registered task name; an unknown name lists the known ones."""
    try:
        return TASK_SPECS[name]
    except KeyError:
        raise DataError(f"unknown task {name!r}; registered tasks: {', '.join(sorted(TASK_SPECS))}") from None


def task_names(benchmark: Optional[str] = None) -> List[str]:
    """Registered task names, optionally of one benchmark (``"super_glue"``, ``"glue"``, ``"mrqa"`` ...)."""
    return sorted(n for n, s in TASK_SPECS.items() if benchmark is None or s.benchmark == benchmark)
