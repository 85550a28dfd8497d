"""The built-in demo's synthetic text-to-text tasks: small enough for a tiny T5 to learn on a laptop CPU.

Every example is a keyword and a list of 3 to 8 digits: ``"max: 3 1 4"`` -> ``"4"``. A tiny T5
pre-trained on all keyword tasks learns to obey the keyword; frozen, and shown the digits of one task
*without* its keyword (an invocation it never saw), it cannot know what to do, and only a soft prompt
can tell it. That is prompt tuning in miniature, with no download: the generator, the vocabulary
(``tasks/demo_vocab.model``, built by ``python -m tasks.demo_vocab``) and the model are all local.

Pure Python and deterministic: the same (task, split, count, seed) always gives the same examples, so
caches, tests and the README's numbers are reproducible.
"""
from __future__ import annotations

import random
from typing import Callable, Dict, List, Sequence

DIGITS = tuple(str(d) for d in range(10))
MIN_LENGTH, MAX_LENGTH = 3, 8

OPERATIONS: Dict[str, Callable[[List[int]], List[int]]] = {
    "copy": lambda xs: list(xs),
    "reverse": lambda xs: list(reversed(xs)),
    "sort": lambda xs: sorted(xs),
    "first": lambda xs: [xs[0]],
    "last": lambda xs: [xs[-1]],
    "max": lambda xs: [max(xs)],
    "min": lambda xs: [min(xs)],
    "count": lambda xs: [len(xs)],
}
TASKS = tuple(OPERATIONS)
# Tasks whose answer is one digit: evaluated by rank classification over the ten digits.
SINGLE_DIGIT_TASKS = ("first", "last", "max", "min", "count")
KEYWORDS = tuple(f"{name}:" for name in TASKS)
WORDS = DIGITS + KEYWORDS  # every word the demo writes; the vocabulary holds each as one piece

SPLIT_SEEDS = {"train": 0, "validation": 1, "test": 2}


def make_example(task: str, rng: random.Random, keyword: bool = True) -> Dict[str, str]:
    """One ``{"inputs", "targets"}`` pair of ``task``; without its keyword when ``keyword`` is False."""
    if task not in OPERATIONS:
        raise ValueError(f"unknown demo task {task!r}; the demo tasks are {', '.join(TASKS)}")
    digits = [rng.randrange(10) for _ in range(rng.randint(MIN_LENGTH, MAX_LENGTH))]
    words = ([f"{task}:"] if keyword else []) + [str(d) for d in digits]
    return {"inputs": " ".join(words), "targets": " ".join(str(d) for d in OPERATIONS[task](digits))}


def generate(tasks: Sequence[str], split: str, count: int, keyword: bool = True, seed: int = 0) -> List[Dict[str, str]]:
    """``count`` examples drawn round-robin from ``tasks``; splits use disjoint seeds."""
    if split not in SPLIT_SEEDS:
        raise ValueError(f"unknown demo split {split!r}; use one of {', '.join(SPLIT_SEEDS)}")
    rng = random.Random(f"{seed}/{split}/{'+'.join(tasks)}/{keyword}")
    return [make_example(tasks[i % len(tasks)], rng, keyword) for i in range(count)]


def label_names(task: str):
    """The ten digits for single-digit tasks (rank classification); None for sequence answers."""
    return list(DIGITS) if task in SINGLE_DIGIT_TASKS else None
