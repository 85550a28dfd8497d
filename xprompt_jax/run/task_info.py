"""What evaluation needs to know about a cached split's task, without TensorFlow.

A cache names its task; ``tasks.specs`` (stdlib only) gives that task's label names, postprocessor
and metrics, the same ones its seqio registration uses. A cache of a task that ``tasks.specs`` does not
know (a user's own seqio task) is scored by exact match of the generated text against
``targets_pretokenized``, and ranks over the ``label_names`` its ``meta.json`` lists, if any.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Dict, Mapping, Optional, Sequence, Tuple


@dataclasses.dataclass(frozen=True)
class TaskInfo:
    name: str
    label_names: Optional[Tuple[str, ...]]
    evaluate: Callable[[Sequence[str], Sequence[Mapping]], Dict[str, float]]

    def score(self, predictions: Sequence[str], examples: Sequence[Mapping]) -> Dict[str, float]:
        return self.evaluate(list(predictions), list(examples))


def exact_match(predictions: Sequence[str], examples: Sequence[Mapping]) -> Dict[str, float]:
    """Accuracy (percent) of generated text equal to the target text (whitespace-stripped)."""
    if not examples:
        return {"accuracy": 0.0}
    hits = sum(str(p).strip() == str(ex["targets_pretokenized"]).strip() for p, ex in zip(predictions, examples))
    return {"accuracy": 100.0 * hits / len(examples)}


def for_task(name: str, meta_label_names: Optional[Sequence[str]] = None) -> TaskInfo:
    from tasks import specs
    if name in specs.TASK_SPECS:
        spec = specs.get_spec(name)
        return TaskInfo(name, tuple(spec.label_names) if spec.label_names else None, spec.evaluate)
    return TaskInfo(name, tuple(meta_label_names) if meta_label_names else None, exact_match)


def for_split(split) -> TaskInfo:
    """The task of a ``CachedSplit`` (its ``meta.json`` names it)."""
    meta = split.meta
    return for_task(meta.get("task", ""), meta.get("label_names"))
