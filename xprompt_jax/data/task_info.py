"""What the data and evaluation sides both need to know about a task: label names, scoring, label ids.

A cache names its task; ``tasks.specs`` (stdlib only, no TensorFlow) gives that task's label names,
postprocessor and metrics. A task it does not know (a user's own seqio task) is scored by exact match
of the generated text against ``targets_pretokenized``, ranking over the ``label_names`` its cache
recorded when it was written (``task_label_names`` at write time), if any.

Both ``run/data.py`` (label token ids for class-label initialisation) and ``run/evaluator.py`` import
this module; it imports neither.
"""
from __future__ import annotations

import dataclasses
import sys
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

# Modules whose import registers seqio tasks; a module may add label names of its own (``LABEL_NAMES``).
TASK_MODULES = ("tasks.superglue", "tasks.glue", "tasks.demo")


@dataclasses.dataclass(frozen=True)
class TaskInfo:
    """A task's label names (for rank classification) and its scoring (postprocessor + metrics)."""
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


def task_label_names(name: str) -> Optional[List[str]]:
    """Label names of a task: its spec's, else a loaded task module's ``LABEL_NAMES`` (the demo family's)."""
    from tasks.specs import TASK_SPECS

    if name in TASK_SPECS:
        names = TASK_SPECS[name].label_names
        return list(names) if names else None
    for module in TASK_MODULES:
        extra = getattr(sys.modules.get(module), "LABEL_NAMES", {})
        if name in extra:
            return list(extra[name])
    return None


def task_info(name: str, recorded_label_names: Optional[Sequence[str]] = None) -> TaskInfo:
    """The task's scoring; ``recorded_label_names``: what its cache recorded (used when no spec knows it)."""
    from tasks import specs
    if name in specs.TASK_SPECS:
        spec = specs.get_spec(name)
        return TaskInfo(name, tuple(spec.label_names) if spec.label_names else None, spec.evaluate)
    names = task_label_names(name) or recorded_label_names
    return TaskInfo(name, tuple(names) if names else None, exact_match)


def task_info_of_split(split) -> TaskInfo:
    """The task of a ``CachedSplit`` (its ``meta.json`` names it and records its label names)."""
    return task_info(split.meta.get("task", ""), split.meta.get("label_names"))


def metric_names(split) -> List[str]:
    """The metrics a split's evaluation reports, found without running a model (scores no predictions)."""
    info = task_info_of_split(split)
    examples = split.examples[:1]
    guess = [info.label_names[0] if info.label_names else ""] * len(examples)
    try:
        return sorted(info.score(guess, examples))
    except Exception:  # a metric that cannot score a single example: known only at the first evaluation
        return []


def label_token_ids(vocabulary, split) -> Optional[list]:
    """Token ids of the task's label names (class-label prompt initialisation), or None."""
    names = task_info_of_split(split).label_names
    return [vocabulary.encode(n, add_eos=False) for n in names] if names else None
