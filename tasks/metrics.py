"""The GLUE/SuperGLUE metrics as T5 computes them, without TensorFlow or scikit-learn.

Evaluation hosts score generated text with these, so they depend on the standard library, NumPy and
(lazily, for the correlations) SciPy only. Every function follows seqio's metric convention,
``fn(targets, predictions) -> {name: value}``, reports percentages (0-100) as T5 does, and uses T5's
key names, so numbers here compare one for one with T5/T5X logs and the papers' tables.

Targets and predictions are what ``tasks.postprocessors`` returns: class ids (with -1 for text that is no
label), floats (STS-B), ``{"value", "group"}`` dicts (MultiRC, ReCoRD).
"""
from __future__ import annotations

import collections
import re
import string
from typing import Callable, Dict, Hashable, List, Sequence, Tuple

import numpy as np

Metrics = Dict[str, float]


def accuracy(targets: Sequence, predictions: Sequence) -> Metrics:
    """Share of predictions equal to their target (T5's ``accuracy``)."""
    _check_lengths(targets, predictions)
    if not targets:
        return {"accuracy": float("nan")}
    hits = sum(1 for t, p in zip(targets, predictions) if t == p)
    return {"accuracy": 100.0 * hits / len(targets)}


def _f1_from_counts(tp: int, fp: int, fn: int) -> float:
    """F1 = 2tp / (2tp + fp + fn); 0 where undefined, as scikit-learn reports it."""
    denominator = 2 * tp + fp + fn
    return 2.0 * tp / denominator if denominator else 0.0


def mean_multiclass_f1(num_classes: int) -> Callable[[Sequence, Sequence], Metrics]:
    """Unweighted mean over classes 0..num_classes-1 of each class's F1 (CB's "macro-F1").

    A prediction outside the classes (-1: unparseable text) is simply never a hit, so it costs recall of
    the true class, as with scikit-learn's ``fbeta_score(labels=range(n), average="macro")`` that T5 uses.
    """

    def mean_f1(targets: Sequence, predictions: Sequence) -> Metrics:
        _check_lengths(targets, predictions)
        scores = []
        for c in range(num_classes):
            tp = sum(1 for t, p in zip(targets, predictions) if t == c and p == c)
            fp = sum(1 for t, p in zip(targets, predictions) if t != c and p == c)
            fn = sum(1 for t, p in zip(targets, predictions) if t == c and p != c)
            scores.append(_f1_from_counts(tp, fp, fn))
        return {f"mean_{num_classes}class_f1": 100.0 * sum(scores) / num_classes}

    mean_f1.__name__ = f"mean_{num_classes}class_f1"
    return mean_f1


def f1_score_with_invalid(targets: Sequence[int], predictions: Sequence[int]) -> Metrics:
    """Binary F1 of class 1, where a prediction other than 0/1 counts as wrong (T5: MRPC, QQP, MultiRC)."""
    _check_lengths(targets, predictions)
    tp = fp = fn = 0
    for t, p in zip(targets, predictions):
        if p not in (0, 1):
            p = 1 - t  # T5 turns an invalid prediction into the wrong class
        tp += t == 1 and p == 1
        fp += t != 1 and p == 1
        fn += t == 1 and p != 1
    return {"f1": 100.0 * _f1_from_counts(tp, fp, fn)}


def matthews_corrcoef(targets: Sequence, predictions: Sequence) -> Metrics:
    """Matthews correlation (CoLA), x100; multiclass form, so an invalid prediction (-1) is its own class.

    This is scikit-learn's ``matthews_corrcoef`` (the R_K statistic of Gorodkin 2004) from the confusion
    matrix: (c*s - t.p) / sqrt((s^2 - p.p)(s^2 - t.t)), and 0 where the denominator is 0.
    """
    _check_lengths(targets, predictions)
    classes = sorted(set(targets) | set(predictions), key=repr)
    t_counts = np.array([sum(1 for t in targets if t == c) for c in classes], dtype=np.float64)
    p_counts = np.array([sum(1 for p in predictions if p == c) for c in classes], dtype=np.float64)
    correct = float(sum(1 for t, p in zip(targets, predictions) if t == p))
    total = float(len(targets))
    cov_tp = correct * total - t_counts @ p_counts
    cov_pp = total**2 - p_counts @ p_counts
    cov_tt = total**2 - t_counts @ t_counts
    denominator = np.sqrt(cov_pp * cov_tt)
    value = 0.0 if denominator == 0 else float(cov_tp / denominator)
    return {"matthews_corrcoef": 100.0 * value}


def pearson_corrcoef(targets: Sequence[float], predictions: Sequence[float]) -> Metrics:
    """Pearson r x100 (STS-B)."""
    import scipy.stats  # lazily: the classification tasks never need SciPy

    _check_lengths(targets, predictions)
    return {"pearson_corrcoef": 100.0 * float(scipy.stats.pearsonr(targets, predictions)[0])}


def spearman_corrcoef(targets: Sequence[float], predictions: Sequence[float]) -> Metrics:
    """Spearman rho x100 (STS-B)."""
    import scipy.stats

    _check_lengths(targets, predictions)
    return {"spearman_corrcoef": 100.0 * float(scipy.stats.spearmanr(targets, predictions)[0])}


def all_match(targets: Sequence, predictions: Sequence) -> Metrics:
    """100 if every prediction equals its target, else 0 (one MultiRC question)."""
    return {"exact_match": 100.0 * float(list(targets) == list(predictions))}


def mean_group_metric(metric_fn: Callable[[Sequence, Sequence], Metrics], group_key: str = "group",
                      value_key: str = "value") -> Callable[[Sequence, Sequence], Metrics]:
    """Averages ``metric_fn`` over groups of ``{group, value}`` targets (T5's ``mean_group_metric``).

    MultiRC's exact match is per question: a question counts only when all its answers are right.
    """

    def grouped(targets: Sequence[dict], predictions: Sequence[dict]) -> Metrics:
        _check_lengths(targets, predictions)
        groups: Dict[Hashable, Tuple[List, List]] = collections.defaultdict(lambda: ([], []))
        for target, prediction in zip(targets, predictions):
            key = _hashable(target[group_key])
            groups[key][0].append(target[value_key])
            groups[key][1].append(prediction[value_key])
        scores: Dict[str, List[float]] = collections.defaultdict(list)
        for group_targets, group_predictions in groups.values():
            for name, value in metric_fn(group_targets, group_predictions).items():
                scores[name].append(value)
        return {name: float(np.mean(values)) for name, values in scores.items()}

    grouped.__name__ = f"mean_group_{getattr(metric_fn, '__name__', 'metric')}"
    return grouped


def multirc_f1_over_all_answers(targets: Sequence[dict], predictions: Sequence[dict]) -> Metrics:
    """MultiRC's F1a: binary F1 over every answer of every question, invalid predictions wrong."""
    return f1_score_with_invalid([t["value"] for t in targets], [p["value"] for p in predictions])


def deduplicate_metric(metric_fn: Callable[[Sequence, Sequence], Metrics], group_key: str = "group",
                       value_key: str = "value") -> Callable[[Sequence, Sequence], Metrics]:
    """Scores only the first example of each group (T5's ``deduplicate_metric``).

    T5 turns one ReCoRD query with n answers into n examples; each must count once.
    """

    def deduplicated(targets: Sequence[dict], predictions: Sequence[dict]) -> Metrics:
        _check_lengths(targets, predictions)
        seen = set()
        kept_targets, kept_predictions = [], []
        for target, prediction in zip(targets, predictions):
            key = _hashable(target[group_key])
            if key in seen:
                continue
            seen.add(key)
            kept_targets.append(target[value_key])
            kept_predictions.append(prediction[value_key])
        return metric_fn(kept_targets, kept_predictions)

    deduplicated.__name__ = f"deduplicated_{getattr(metric_fn, '__name__', 'metric')}"
    return deduplicated


def normalize_squad(text: str) -> str:
    """The official SQuAD v1.1 answer normalisation: lower case, no punctuation, articles or extra spaces."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


_PUNCTUATION = frozenset(string.punctuation)


def _token_f1(target: str, prediction: str) -> float:
    prediction_tokens = prediction.split()
    target_tokens = target.split()
    common = collections.Counter(prediction_tokens) & collections.Counter(target_tokens)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision = same / len(prediction_tokens)
    recall = same / len(target_tokens)
    return 2 * precision * recall / (precision + recall)


def squad(targets: Sequence[Sequence[str]], predictions: Sequence[str]) -> Metrics:
    """Exact match and token F1, each the maximum over an example's gold answers, after normalisation."""
    _check_lengths(targets, predictions)
    if not targets:
        return {"em": float("nan"), "f1": float("nan")}
    em, f1 = [], []
    for answers, prediction in zip(targets, predictions):
        answers = [normalize_squad(a) for a in answers]
        prediction = normalize_squad(prediction)
        em.append(max(float(a == prediction) for a in answers) if answers else 0.0)
        f1.append(max(_token_f1(a, prediction) for a in answers) if answers else 0.0)
    return {"em": 100.0 * float(np.mean(em)), "f1": 100.0 * float(np.mean(f1))}


record = deduplicate_metric(squad)
record.__name__ = "record_squad"

multirc_exact_match = mean_group_metric(all_match)
multirc_exact_match.__name__ = "multirc_exact_match"


def _hashable(value):
    """Groups arrive as ints, tuples, or (from JSON) lists and dicts; make them usable as keys."""
    if isinstance(value, (list, tuple)):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _hashable(v)) for k, v in value.items()))
    if isinstance(value, np.ndarray):
        return _hashable(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    return value


def _check_lengths(targets: Sequence, predictions: Sequence) -> None:
    if len(targets) != len(predictions):
        raise ValueError(f"{len(targets)} targets but {len(predictions)} predictions: score the same examples")
