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
import logging
import sys
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from xprompt_jax.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

# Modules whose import registers seqio tasks; a module may add label names of its own (``LABEL_NAMES``).
TASK_MODULES = ("tasks.superglue", "tasks.glue", "tasks.suite", "tasks.demo")


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


# ------------------------------------------------------------------------------------------------
# Labelled or not: training and scoring need labels
# ------------------------------------------------------------------------------------------------
UNLABELLED_TARGET = "<unk>"  # T5's preprocessors' target for label -1 (SuperGLUE's and GLUE's test splits)


def is_unlabelled(example: Mapping) -> bool:
    """An example without a label: label -1 (the test splits' marker), or the ``<unk>`` target it becomes."""
    label = example.get("label")
    if isinstance(label, (int, float)) and not isinstance(label, bool) and label == -1:
        return True
    return str(example.get("targets_pretokenized", "")).strip() == UNLABELLED_TARGET


def unlabelled_count(split) -> int:
    """How many examples of a cached split have no label (recorded by the cache writer, else counted)."""
    recorded = split.meta.get("unlabelled_examples")
    if recorded is not None:
        return int(recorded)
    return sum(is_unlabelled(example) for example in split.examples)


def check_labelled(split, role: str, setting: str) -> None:
    """Refuse to train on (``role='training'``) or score (``'evaluation'``) a split that is empty or has
    no labels: either would exit 0 with numbers that mean nothing. ``setting`` is what the user changes."""
    name = f"{split.meta.get('task', '?')}:{split.meta.get('split', '?')}"
    if split.num_examples == 0:
        raise DataError(f"the {role} split {name} ({split.path}) has no examples: its data file is empty or "
                        f"filtered to nothing; check the file, or choose another split with {setting}")
    missing = unlabelled_count(split)
    if missing == split.num_examples:
        use = ("name a labelled cache with " + setting if "cache" in setting else
               f"use a labelled split ({setting}={'validation' if role == 'evaluation' else 'train'!r})")
        raise ConfigError(f"the {role} split {name} has no labels (every example's label is -1, as in SuperGLUE's "
                          f"and GLUE's test splits), so it cannot be {'trained on' if role == 'training' else 'scored'}: "
                          f"{use}; a prompt's predictions on it come from `xprompt-jax predict` (runs/predict.gin)")
    if missing:
        logger.warning(f"[data] {missing} of {split.num_examples} examples of {name} have no "
                                            "label (-1): they count as wrong answers in scores and train on '<unk>'")
