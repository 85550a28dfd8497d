"""SuperGLUE as seqio tasks in T5's text-to-text format; importing this module registers them.

Names (see ``tasks.specs`` for the full table): ``super_glue_<task>_v102`` with T5's leading task word and
``taskless_super_glue_<task>_v102`` without it (prompt tuning), for boolq, cb, copa, multirc, record, rte,
wic, wsc (True/False classification), wsc_v102_simple_train / wsc_v102_simple_eval (T5's own WSC: generate
the referent), and the evaluation-only diagnostics axb, axg.

Data: TFDS ``super_glue/<config>:1.0.2`` by default. A local folder of the official files is used instead
when named by ``XPROMPT_SUPERGLUE_DIR`` or ``register_superglue(data_dir=...)`` (a gin parameter too);
FewGLUE splits appear when ``XPROMPT_FEWGLUE_DIR`` / ``fewglue_dir=`` names a FewGLUE folder. Vocabulary:
the public T5 SentencePiece model unless ``XPROMPT_VOCAB_PATH`` / ``vocab_path=`` names another.

Registration runs at import with the environment's settings, and ``register_superglue`` may be called again
(after gin has parsed its bindings, or with other folders): it replaces the tasks it registered before.
"""
from __future__ import annotations

import os
from typing import List, Optional

import gin
import seqio

from tasks import ept_splits
from tasks import preprocessors as text_steps
from tasks import superglue_files as files
from tasks.errors import TaskDataError as DataError
from tasks.fingerprint import DEFAULT_VOCAB_PATH, VOCAB_PATH_ENV, record_registration
from tasks.sources import TaskSource
from tasks.specs import TASK_SPECS, TaskSpec

EXTRA_IDS = 100


def resolve_vocab_path(path: Optional[str] = None) -> str:
    """The SentencePiece model to use: the argument, else ``XPROMPT_VOCAB_PATH``, else the public T5 one."""
    return path or os.environ.get(VOCAB_PATH_ENV) or DEFAULT_VOCAB_PATH


BYTE_VOCABULARY = "byte"  # vocab_path / XPROMPT_VOCAB_PATH naming ByT5's byte vocabulary


def get_vocabulary(path: Optional[str] = None) -> seqio.Vocabulary:
    """T5's vocabulary: 32,000 pieces plus 100 sentinels (``extra_ids``), or another SentencePiece model
    (mT5's); ``'byte'``: ``seqio.ByteVocabulary`` (ByT5). Loaded lazily, on first use."""
    resolved = resolve_vocab_path(path)
    if resolved in (BYTE_VOCABULARY, "bytes"):
        return seqio.ByteVocabulary()
    return seqio.SentencePieceVocabulary(resolved, extra_ids=EXTRA_IDS)


def output_features(path: Optional[str] = None) -> dict:
    """``inputs``/``targets`` with EOS, as T5's tasks declare them."""
    vocabulary = get_vocabulary(path)
    return {"inputs": seqio.Feature(vocabulary=vocabulary, add_eos=True, required=False),
            "targets": seqio.Feature(vocabulary=vocabulary, add_eos=True)}


def _task_kwargs(spec: TaskSpec, source: seqio.DataSource, features: dict) -> dict:
    """T5's pipeline: the text step, tokenisation, (cache point), EOS appended after trimming."""
    return dict(source=source, output_features=features, postprocess_fn=spec.postprocessor,
                metric_fns=list(spec.metric_fns),
                preprocessors=text_steps.text_preprocessors(spec) + [
                    seqio.preprocessors.tokenize, seqio.CacheDatasetPlaceholder(),
                    seqio.preprocessors.append_eos_after_trim])


def make_task(spec: TaskSpec, source: seqio.DataSource, features: dict) -> seqio.Task:
    """The task without registering it (to read another folder without touching the registry)."""
    return seqio.Task(spec.name, **_task_kwargs(spec, source, features))


def add_task(spec: TaskSpec, source: seqio.DataSource, features: dict) -> seqio.Task:
    """Registers one task, replacing an earlier registration of the same name."""
    seqio.TaskRegistry.remove(spec.name)
    return seqio.TaskRegistry.add(spec.name, **_task_kwargs(spec, source, features))


def resolve_data_dir(value: Optional[str], env: str, what: str):
    """(folder or None, how it was chosen); an explicitly passed folder must exist."""
    if value:
        if not os.path.isdir(value):
            raise DataError(f"{what} folder {value} (passed as an argument) does not exist")
        return os.path.abspath(value), "passed as an argument"
    from_env = os.environ.get(env)
    if from_env:
        return os.path.abspath(from_env), f"from ${env}"
    return None, ""


def gin_configurable(module: str):
    """``gin.configurable`` that survives ``importlib.reload``: gin refuses a second, different function
    under one name, so a reloaded module keeps the configurable of its first import (same module globals)."""

    def decorate(fn):
        try:
            return gin.configurable(fn.__name__, module=module)(fn)
        except ValueError:
            return gin.get_configurable(f"{module}.{fn.__name__}")

    return decorate


@gin_configurable("tasks.superglue")
def register_superglue(data_dir: Optional[str] = None, vocab_path: Optional[str] = None,
                       fewglue_dir: Optional[str] = None, tfds_data_dir: Optional[str] = None,
                       ept_seed: int = ept_splits.DEFAULT_SEED) -> List[str]:
    """(Re-)registers every SuperGLUE task; returns their names.

    Args:
      data_dir: folder of official SuperGLUE files, ``<dir>/<Task>/{train,val,test}.jsonl`` (AX-b/AX-g:
        ``<dir>/AX-b/AX-b.jsonl``). Default ``$XPROMPT_SUPERGLUE_DIR``; unset: TFDS.
      vocab_path: SentencePiece model. Default ``$XPROMPT_VOCAB_PATH``, else the public T5 vocabulary.
      fewglue_dir: FewGLUE folder, ``<dir>/<Task>/{train,dev32}.jsonl``. Default ``$XPROMPT_FEWGLUE_DIR``.
      tfds_data_dir: TFDS data folder when reading TFDS (default: TFDS's own).
      ept_seed: seed of the EPT splits' carving (``tasks.ept_splits``).
    """
    data_dir, data_origin = resolve_data_dir(data_dir, files.SUPERGLUE_DIR_ENV, "SuperGLUE")
    fewglue_dir, _ = resolve_data_dir(fewglue_dir, files.FEWGLUE_DIR_ENV, "FewGLUE")
    features = output_features(vocab_path)
    names = []
    for spec in TASK_SPECS.values():
        if spec.benchmark != "super_glue":
            continue
        source = TaskSource(spec, data_dir=data_dir, fewglue_dir=fewglue_dir, tfds_data_dir=tfds_data_dir,
                            origin=data_origin, ept_seed=ept_seed)
        add_task(spec, source, features)
        names.append(spec.name)
    record_registration(names, data_dir=data_dir, fewglue_dir=fewglue_dir, tfds_data_dir=tfds_data_dir,
                        vocab_path=resolve_vocab_path(vocab_path), ept_seed=int(ept_seed))
    return names


register_superglue()
