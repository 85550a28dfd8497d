"""seqio registrations of the built-in demo family (``tasks.demo_family``), with its own vocabulary.

    demo_pretrain               every keyword task, round-robin: what the demo's tiny T5 is trained on
    demo_<task>                 one keyword task (``demo_max``: ``max: 3 1 4`` -> ``4``)
    demo_<task>_no_keyword      the same task without its keyword (``3 1 4`` -> ``4``): the invocation
                                the pre-trained model never saw, which prompt tuning must teach

Splits ``train``, ``validation`` and ``test`` come from disjoint seeds. Single-digit tasks list the ten
digits as label names, so they are evaluated by rank classification.
"""
from __future__ import annotations

import functools

import seqio
import tensorflow as tf

from tasks import demo_family
from tasks.demo_vocab import VOCAB_PATH

PRETRAIN_TASK = "demo_pretrain"
SPLIT_SIZES = {"train": 50_000, "validation": 1_000, "test": 1_000}
SINGLE_TASK_SPLIT_SIZES = {"train": 4_000, "validation": 500, "test": 500}
# Label names of registered tasks that tasks.specs does not describe (read by the cache writer).
LABEL_NAMES = {}


@functools.lru_cache(maxsize=1)
def vocabulary() -> seqio.SentencePieceVocabulary:
    return seqio.SentencePieceVocabulary(VOCAB_PATH, extra_ids=0)


def _dataset_fn(tasks, keyword, sizes, split, shuffle_files, seed=None):
    del shuffle_files, seed  # the data is generated in a fixed order; the trainer shuffles
    examples = demo_family.generate(tasks, split, sizes[split], keyword=keyword)
    return tf.data.Dataset.from_tensor_slices({
        "inputs": [e["inputs"] for e in examples], "targets": [e["targets"] for e in examples]})


def _register(name, tasks, keyword, sizes):
    if name in seqio.TaskRegistry.names():
        seqio.TaskRegistry.remove(name)
    features = {"inputs": seqio.Feature(vocabulary(), add_eos=True),
                "targets": seqio.Feature(vocabulary(), add_eos=True)}
    seqio.TaskRegistry.add(
        name,
        source=seqio.FunctionDataSource(functools.partial(_dataset_fn, tuple(tasks), keyword, sizes),
                                        splits=tuple(sizes)),
        preprocessors=[seqio.preprocessors.tokenize, seqio.preprocessors.append_eos],
        output_features=features, metric_fns=[])


def register_demo_tasks():
    """(Re-)register every demo task; idempotent."""
    _register(PRETRAIN_TASK, demo_family.TASKS, True, SPLIT_SIZES)
    for task in demo_family.TASKS:
        _register(f"demo_{task}", [task], True, SINGLE_TASK_SPLIT_SIZES)
        _register(f"demo_{task}_no_keyword", [task], False, SINGLE_TASK_SPLIT_SIZES)
        labels = demo_family.label_names(task)
        if labels:
            LABEL_NAMES[f"demo_{task}"] = LABEL_NAMES[f"demo_{task}_no_keyword"] = labels


register_demo_tasks()
