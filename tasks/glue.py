"""GLUE as seqio tasks in T5's text-to-text format, from TFDS ``glue/<config>:2.0.0``; importing registers them.

Names: ``glue_<task>_v002`` (T5's leading task word) and ``taskless_glue_<task>_v002`` (prompt tuning) for
cola, sst2, mrpc, qqp, stsb, mnli (train and both validation sets as splits), mnli_matched and
mnli_mismatched (validation/test only), qnli, rte. Formats, labels and metrics: ``tasks.specs``; STS-B's
target is its score rounded to the nearest 0.2 as text ("3.4"), scored by Pearson and Spearman correlation.
Every task also offers ``train_k4/16/32`` few-shot splits. GLUE has no local-file path: there are no GLUE
files beside the project, so TFDS is the only source.
"""
from __future__ import annotations

from typing import List, Optional

from tasks.fingerprint import record_registration
from tasks.sources import TaskSource
from tasks.specs import TASK_SPECS
from tasks.superglue import add_task, gin_configurable, output_features, resolve_vocab_path


@gin_configurable("tasks.glue")
def register_glue(vocab_path: Optional[str] = None, tfds_data_dir: Optional[str] = None) -> List[str]:
    """(Re-)registers every GLUE task; returns their names. ``vocab_path`` as in ``register_superglue``."""
    features = output_features(vocab_path)
    names = []
    for spec in TASK_SPECS.values():
        if spec.benchmark == "glue":
            add_task(spec, TaskSource(spec, tfds_data_dir=tfds_data_dir), features)
            names.append(spec.name)
    record_registration(names, data_dir=None, fewglue_dir=None, tfds_data_dir=tfds_data_dir,
                        vocab_path=resolve_vocab_path(vocab_path))
    return names


register_glue()
