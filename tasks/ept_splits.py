"""EPT's split protocol (appendix B.1) as three named splits any task with a train split can offer.

  under 10k training examples   ept_train = train; the validation set halved: ept_validation, ept_test
  under 100k                    1k training examples become ept_validation; ept_test = the validation set
  larger                        10k training examples become ept_validation; ept_test = the validation set

"The validation set" is the task's ``validation`` split (MNLI's ``validation_matched``; Yelp, which has
none, its labelled ``test``). Which examples are carved out is decided by a seeded hash of each example's
text fields, not by its position: TFDS and the official files list examples in different orders, and both
paths must carve the same examples. Examples with the same text (and a MultiRC paragraph's answers, a ReCoRD
passage's queries) share a key, so they land on the same side. The seed and ``PROTOCOL_VERSION`` are part
of the cache's fingerprint (``tasks.fingerprint``): another seed writes another cache. Standard library only.
"""
from __future__ import annotations

import hashlib
from typing import Any, Dict, Iterable, List, Mapping, Sequence, Tuple

SPLITS = ("ept_train", "ept_validation", "ept_test")
PROTOCOL_VERSION = 1
DEFAULT_SEED = 0
SMALL, MEDIUM = 10_000, 100_000
HELDOUT_CANDIDATES = ("validation", "validation_matched", "test")
# A unit the carving keeps together: every row of a MultiRC paragraph or a ReCoRD passage.
_UNIT_FIELDS = {"multirc": ("paragraph",), "record": ("passage",)}


def heldout_split(splits: Sequence[str]) -> str | None:
    """The split EPT calls the validation set; None where a task has none (then it offers no EPT splits)."""
    return next((s for s in HELDOUT_CANDIDATES if s in splits), None)


def offered(splits: Sequence[str]) -> Tuple[str, ...]:
    """EPT's splits when the task has a train split and a validation set, else none."""
    return SPLITS if "train" in splits and heldout_split(splits) else ()


def plan(num_train: int) -> Tuple[str, int]:
    """("halve", 0) under 10k training examples, else ("carve", 1000 or 10000)."""
    if num_train < SMALL:
        return "halve", 0
    return "carve", 1_000 if num_train < MEDIUM else 10_000


def unit_fields(config: str, feature_names: Sequence[str]) -> Tuple[str, ...]:
    return _UNIT_FIELDS.get(config, tuple(feature_names))


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, (list, tuple)) or hasattr(value, "tolist"):
        return "\x01".join(_text(v) for v in (value.tolist() if hasattr(value, "tolist") else value))
    return str(value)


def example_key(example: Mapping[str, Any], fields: Sequence[str], seed: int) -> str:
    """The seeded hash that orders examples for carving (same text, same key, whatever the source)."""
    text = "\x00".join([str(seed)] + [_text(example[f]) for f in fields])
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def first_units(keys: Sequence[str], count: int) -> List[bool]:
    """A mask over ``keys``: the examples of the units with the smallest keys, until ``count`` are taken
    (a unit is taken whole, so the count may be passed by the last unit's size)."""
    sizes: Dict[str, int] = {}
    for key in keys:
        sizes[key] = sizes.get(key, 0) + 1
    chosen, taken = set(), 0
    for key in sorted(sizes):
        if taken >= count:
            break
        chosen.add(key)
        taken += sizes[key]
    return [key in chosen for key in keys]


def carve(split: str, num_train: int, keys: Iterable[str]) -> Tuple[str, List[bool]]:
    """(source split role, mask) of one EPT split: role ``"train"`` or ``"heldout"``; ``keys`` are that source
    split's example keys in its own order (for ``ept_train`` under "halve", nothing is read: all of train)."""
    how, count = plan(num_train)
    keys = list(keys)
    if how == "halve":
        if split == "ept_train":
            return "train", [True] * len(keys)
        first = first_units(keys, len(keys) // 2)
        return "heldout", first if split == "ept_validation" else [not f for f in first]
    if split == "ept_test":
        return "heldout", [True] * len(keys)
    carved = first_units(keys, count)
    return "train", carved if split == "ept_validation" else [not c for c in carved]


def source_role(split: str, num_train: int) -> str:
    """Which source split (``"train"`` or ``"heldout"``) an EPT split draws from."""
    how, _ = plan(num_train)
    if split == "ept_train" or (split == "ept_validation" and how == "carve"):
        return "train"
    return "heldout"
