"""Turn generated text (and an example's target text) back into what the metrics score, without TensorFlow.

Every function follows seqio's postprocessor convention ``fn(text, example=None, is_target=False)``:
seqio calls it once with the decoded prediction and once with ``targets_pretokenized`` and
``is_target=True``; ``example`` is the whole preprocessed example. That example may come from seqio
(TensorFlow values: bytes, flattened keys such as ``"idx/question"``) or from a NumPy cache's
``examples.jsonl`` (str, nested ``{"idx": {"question": ...}}``); both are read here, so the same functions
serve the seqio evaluator and the TF-free training hosts. Behaviour matches T5's ``t5.data.postprocessors``.
"""
from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence


def as_text(value: Any) -> str:
    """bytes (TensorFlow) or str (JSON) -> str."""
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if hasattr(value, "item") and not isinstance(value, str):  # NumPy scalar of bytes
        return as_text(value.item())
    return str(value)


def index_of(example: Mapping[str, Any], key: str) -> Any:
    """One part of an example's index: ``example["idx/<key>"]`` (seqio) or ``example["idx"][key]`` (cache)."""
    flat = f"idx/{key}"
    if flat in example:
        return _plain(example[flat])
    idx = example.get("idx")
    if isinstance(idx, Mapping) and key in idx:
        return _plain(idx[key])
    raise KeyError(f"the example has no index part {key!r} (looked for {flat!r} and idx[{key!r}]); "
                   f"its keys are {sorted(example)}")


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def string_label_to_class_id(string_label: Any, label_classes: Sequence[str], default: int = -1,
                             **unused_kwargs) -> int:
    """The label's position in ``label_classes``; ``default`` (-1) for any other text, so it scores as wrong."""
    text = as_text(string_label)
    return list(label_classes).index(text) if text in label_classes else default


def string_to_float(string: Any, default: float = -1.0, **unused_kwargs) -> float:
    """STS-B: "3.4" -> 3.4; text that is no number -> ``default``."""
    try:
        return float(as_text(string))
    except ValueError:
        return default


def multirc(string_label: Any, example: Optional[Mapping[str, Any]] = None, is_target: bool = False) -> dict:
    """``{"value": class id}``, plus ``"group"``: the question id, on the target side only.

    The group lets the exact-match metric score whole questions; the model's output cannot carry it.
    """
    result = {"value": string_label_to_class_id(string_label, label_classes=("False", "True"))}
    if is_target:
        result["group"] = index_of(example, "question")
    return result


def record(answer: Any, example: Optional[Mapping[str, Any]] = None, is_target: bool = False) -> dict:
    """Prediction -> ``{"value": text}``; target -> ``{"value": [all gold answers], "group": (passage, query)}``.

    T5 repeats a ReCoRD query once per gold answer; the group lets the metric keep one copy of each query
    and score the prediction against all its answers (max over gold).
    """
    if is_target:
        return {"value": [as_text(a) for a in example["answers"]],
                "group": (index_of(example, "passage"), index_of(example, "query"))}
    return {"value": as_text(answer)}


_DETERMINERS = frozenset({
    "a", "an", "few", "her", "his", "each", "every", "many", "much", "my", "our", "some", "that", "the",
    "their", "these", "this", "those", "which", "whose", "your"})


def _clean_referent(text: str) -> str:
    """Lower case, without determiners: "The demonstrators" and "demonstrators" name the same referent."""
    return " ".join(w for w in text.strip().lower().split(" ") if w not in _DETERMINERS)


def wsc_simple(prediction: Any, example: Optional[Mapping[str, Any]] = None, is_target: bool = False) -> int:
    """WSC "simple" format: did the model name the candidate referent (span1)?

    Target side: the example's label (1: span1 is the pronoun's referent). Prediction side: 1 when the
    generated words and the candidate's words (determiners and case ignored) are a subset of one another
    and agree on containing a possessive apostrophe, else 0; empty output is -1 so it never matches a
    label by accident. The prediction is compared with the candidate (``targets_pretokenized``), not with
    the label, exactly as T5 scores WSC.
    """
    if is_target:
        return int(_plain(example["label"]))
    predicted = _clean_referent(as_text(prediction))
    if not predicted:
        return -1
    referent = _clean_referent(as_text(example["targets_pretokenized"]))
    if ("'" in predicted) != ("'" in referent):
        return 0  # "Bob" is not "Bob's hat"
    predicted_words, referent_words = set(predicted.split(" ")), set(referent.split(" "))
    return int(predicted_words <= referent_words or referent_words <= predicted_words)


def qa(answer: Any, example: Optional[Mapping[str, Any]] = None, is_target: bool = False):
    """Question answering (T5's ``qa``): a target is every gold answer of the example, a prediction its text."""
    if is_target:
        return [as_text(a) for a in example["answers"]]
    return as_text(answer)
