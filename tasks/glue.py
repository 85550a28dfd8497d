"""GLUE as seqio tasks in T5's text-to-text format; importing registers them.

Names: ``glue_<task>_v002`` (T5's leading task word) and ``taskless_glue_<task>_v002`` (prompt tuning) for
cola, sst2, mrpc, qqp, stsb, mnli (train and both validation sets as splits), mnli_matched and
mnli_mismatched (validation/test only), qnli, rte. Formats, labels and metrics: ``tasks.specs``; STS-B's
target is its score rounded to the nearest 0.2 as text ("3.4"), scored by Pearson and Spearman correlation.
Every task also offers ``train_k4/16/32`` few-shot splits and EPT's ``ept_train/validation/test``.

Data: TFDS ``glue/<config>:2.0.0`` by default; the official files (GLUE's download layout, MRPC from the MSR
files and ``dev_ids``, see ``tasks.official_files``) when ``XPROMPT_GLUE_DIR`` or ``register_glue(data_dir=)``
names their folder. Both give the same examples (``tests/test_tasks_suite_tfds.py``).
"""
from __future__ import annotations

from typing import List, Optional

from tasks import ept_splits, official_files
from tasks.fingerprint import record_registration
from tasks.sources import TaskSource
from tasks.specs import TASK_SPECS
from tasks.superglue import add_task, gin_configurable, output_features, resolve_data_dir, resolve_vocab_path


def register_benchmarks(benchmarks, folders, *, vocab_path: Optional[str], tfds_data_dir: Optional[str],
                        ept_seed: int) -> List[str]:
    """(Re-)registers every task of ``benchmarks``, each from its folder in ``folders`` (None: TFDS)."""
    features = output_features(vocab_path)
    names = []
    for benchmark in benchmarks:
        folder, origin = resolve_data_dir(folders.get(benchmark), official_files.DIR_ENVS[benchmark], benchmark)
        registered = []
        for spec in TASK_SPECS.values():
            if spec.benchmark == benchmark:
                add_task(spec, TaskSource(spec, data_dir=folder, tfds_data_dir=tfds_data_dir, origin=origin,
                                          ept_seed=ept_seed), features)
                registered.append(spec.name)
        record_registration(registered, data_dir=folder, fewglue_dir=None, tfds_data_dir=tfds_data_dir,
                            vocab_path=resolve_vocab_path(vocab_path), ept_seed=int(ept_seed))
        names += registered
    return names


@gin_configurable("tasks.glue")
def register_glue(vocab_path: Optional[str] = None, tfds_data_dir: Optional[str] = None,
                  data_dir: Optional[str] = None, ept_seed: int = ept_splits.DEFAULT_SEED) -> List[str]:
    """(Re-)registers every GLUE task; returns their names.

    Args:
      vocab_path: as in ``register_superglue``.
      tfds_data_dir: TFDS data folder when reading TFDS (default: TFDS's own).
      data_dir: folder of GLUE's official files (``<dir>/<TASK>/...``); default ``$XPROMPT_GLUE_DIR``;
        unset: TFDS.
      ept_seed: seed of the EPT splits' carving.
    """
    return register_benchmarks(("glue",), {"glue": data_dir}, vocab_path=vocab_path, tfds_data_dir=tfds_data_dir,
                               ept_seed=ept_seed)


register_glue()
