"""What determines the examples of a task split, as a JSON-able fingerprint: standard library only.

A task cache records the fingerprint of the sources it was written from; the run compares it with the
current one, so an edited ``.jsonl``, another data folder or another vocabulary rewrites the cache instead of
training on the old examples. The fingerprint holds:

  version          ``TASKS_DATA_VERSION``: bump it when a change in ``tasks/`` changes what a task yields
  task, split, sequence_length, spec (the spec fields that shape the examples)
  source           where the examples come from: {"kind": "files", "folder"}, {"kind": "tfds", "folder",
                   "name"}, {"kind": "generated"} (the demo family) or {"kind": "unknown"} (another module's task)
  files            {absolute path: [size, mtime_ns] or null (missing)} of every file the split reads
  ept              (EPT's splits only) {"seed", "protocol"}: the carving, see ``tasks.ept_splits``
  vocabulary       {"path", "file": [size, mtime_ns] or null}; a ``gs://`` path is compared by name only

The settings come from the task's latest registration (``record_registration``, called by
``register_superglue`` / ``register_glue`` / ``register_suite``), else from the environment, exactly as registration at import
would resolve them: no TensorFlow is needed to tell whether a cache is current.
"""
from __future__ import annotations

import os
from typing import Any, Dict, List, Mapping, Optional

from tasks import ept_splits, official_files
from tasks import superglue_files as files
from tasks.errors import TaskDataError
from tasks.specs import TASK_SPECS

TASKS_DATA_VERSION = 1
DEFAULT_VOCAB_PATH = "gs://t5-data/vocabs/cc_all.32000/sentencepiece.model"
VOCAB_PATH_ENV = "XPROMPT_VOCAB_PATH"
TFDS_DATA_DIR_ENV = "TFDS_DATA_DIR"

# task name -> the settings of its latest registration (data_dir, fewglue_dir, tfds_data_dir, vocab_path)
_REGISTERED: Dict[str, Dict[str, Optional[str]]] = {}


def record_registration(names, **settings: Optional[str]) -> None:
    """Remembers how ``names`` were (re-)registered: their folders and vocabulary, as resolved."""
    for name in names:
        _REGISTERED[name] = dict(settings)


def _env_dir(env: str) -> Optional[str]:
    value = os.environ.get(env)
    return os.path.abspath(value) if value else None


def _settings(task: str) -> Dict[str, Optional[str]]:
    if task in _REGISTERED:
        return _REGISTERED[task]
    benchmark = TASK_SPECS[task].benchmark
    super_glue = benchmark == "super_glue"
    return {"data_dir": _env_dir(files.SUPERGLUE_DIR_ENV if super_glue else official_files.DIR_ENVS[benchmark]),
            "fewglue_dir": _env_dir(files.FEWGLUE_DIR_ENV) if super_glue else None,
            "tfds_data_dir": None, "vocab_path": os.environ.get(VOCAB_PATH_ENV) or DEFAULT_VOCAB_PATH,
            "ept_seed": ept_splits.DEFAULT_SEED}


def _stat(path: str) -> Optional[List[int]]:
    try:
        status = os.stat(path)
    except OSError:
        return None
    return [int(status.st_size), int(status.st_mtime_ns)]


def _vocabulary(path: str) -> Dict[str, Any]:
    if "://" in path or path in ("byte", "bytes"):  # a bucket (by name), or ByT5's built-in byte vocabulary
        return {"path": path, "file": None}
    return {"path": os.path.abspath(path), "file": _stat(path)}


def _tfds_files(folder: str) -> Dict[str, Any]:
    found = {}
    for root, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(root, name)
            found[path] = _stat(path)
    return found


def _read_splits(task: str, split: str) -> List[str]:
    """The task's own splits that ``split`` is drawn from (few-shot: train; EPT: train and validation)."""
    spec = TASK_SPECS[task]
    if split.startswith("train_k"):
        return ["train"]
    if split in ept_splits.SPLITS:
        return ["train", ept_splits.heldout_split(spec.splits)]
    return [split]


def _local_files(task: str, split: str, data_dir: str) -> List[str]:
    spec = TASK_SPECS[task]
    paths: List[str] = []
    for standard in _read_splits(task, split):
        if spec.benchmark == "super_glue":
            paths.append(files.split_file(data_dir, spec.local_name, spec.config, standard))
        else:
            paths += official_files.split_paths(spec.benchmark, spec.config, data_dir, standard)
    return paths


def _spec_source(task: str, split: str, settings: Mapping[str, Optional[str]]) -> Dict[str, Any]:
    spec = TASK_SPECS[task]
    data_dir, fewglue_dir = settings.get("data_dir"), settings.get("fewglue_dir")
    if split in spec.fewglue_splits and fewglue_dir and spec.local_name:
        path = os.path.join(fewglue_dir, spec.local_name, files.FEWGLUE_FILES[split])
        return {"source": {"kind": "files", "folder": fewglue_dir}, "files": {path: _stat(path)}}
    if data_dir and (spec.local_name or spec.benchmark != "super_glue"):
        try:
            paths = _local_files(task, split, data_dir)
        except TaskDataError:  # no such split: writing the cache says so
            return {"source": {"kind": "files", "folder": data_dir}, "files": {}}
        return {"source": {"kind": "files", "folder": data_dir}, "files": {p: _stat(p) for p in paths}}
    root = settings.get("tfds_data_dir") or os.environ.get(TFDS_DATA_DIR_ENV) or os.path.join(
        os.path.expanduser("~"), "tensorflow_datasets")
    folder = os.path.join(os.path.abspath(root), spec.tfds_name.replace(":", "/"))
    return {"source": {"kind": "tfds", "folder": folder, "name": spec.tfds_name}, "files": _tfds_files(folder)}


def _spec_fields(task: str) -> Dict[str, Any]:
    spec = TASK_SPECS[task]
    return {"config": spec.config, "tfds_name": spec.tfds_name, "text_format": spec.text_format,
            "prefix": spec.prefix, "taskless": spec.taskless, "feature_names": list(spec.feature_names),
            "label_names": list(spec.label_names) if spec.label_names else None,
            "rekey": dict(spec.rekey) if spec.rekey else None, "correct_referent_only": spec.correct_referent_only,
            **({"source_splits": dict(spec.source_splits)} if spec.source_splits else {})}


def source_fingerprint(task: str, split: str, sequence_length: Mapping[str, int]) -> Dict[str, Any]:
    """The fingerprint (see the module docstring) of ``task:split`` at ``sequence_length`` as it stands now."""
    out: Dict[str, Any] = {"version": TASKS_DATA_VERSION, "task": task, "split": split,
                           "sequence_length": {k: int(v) for k, v in sorted(sequence_length.items())}}
    if task in TASK_SPECS:
        settings = _settings(task)
        out.update(_spec_source(task, split, settings), spec=_spec_fields(task),
                   vocabulary=_vocabulary(settings["vocab_path"]))
        if split in ept_splits.SPLITS:
            out["ept"] = {"seed": int(settings.get("ept_seed") or ept_splits.DEFAULT_SEED),
                          "protocol": ept_splits.PROTOCOL_VERSION}
    elif task.startswith("demo_"):
        from tasks.demo_vocab import VOCAB_PATH
        out.update(source={"kind": "generated"}, files={}, vocabulary=_vocabulary(VOCAB_PATH))
    else:
        out.update(source={"kind": "unknown"}, files={})
    return out


def describe_change(old: Optional[Mapping[str, Any]], new: Mapping[str, Any]) -> Optional[str]:
    """What differs between two fingerprints, in a few words (None: nothing)."""
    if not old:
        return "it was written without a record of its sources"
    changes = []
    if old.get("version") != new.get("version") or old.get("spec") != new.get("spec") \
            or old.get("task") != new.get("task") or old.get("split") != new.get("split"):
        changes.append(f"the task definition changed (tasks data version {old.get('version')} -> {new.get('version')})")
    if old.get("ept") != new.get("ept"):
        changes.append(f"EPT split carving {old.get('ept')} -> {new.get('ept')}")
    if old.get("sequence_length") != new.get("sequence_length"):
        changes.append(f"sequence lengths {old.get('sequence_length')} -> {new.get('sequence_length')}")
    old_source, new_source = old.get("source") or {}, new.get("source") or {}
    if old_source != new_source:
        changes.append(f"source {old_source.get('folder') or old_source.get('kind')} -> "
                       f"{new_source.get('folder') or new_source.get('kind')}")
    else:
        old_files, new_files = old.get("files") or {}, new.get("files") or {}
        for path in sorted(set(old_files) | set(new_files)):
            if old_files.get(path) != new_files.get(path):
                changes.append(f"{path} {_file_change(old_files.get(path), new_files.get(path))}")
    old_vocab, new_vocab = old.get("vocabulary") or {}, new.get("vocabulary") or {}
    if old_vocab.get("path") != new_vocab.get("path"):
        changes.append(f"vocabulary {old_vocab.get('path')} -> {new_vocab.get('path')}")
    elif old_vocab.get("file") != new_vocab.get("file"):
        changes.append(f"vocabulary file {new_vocab.get('path')} {_file_change(old_vocab.get('file'), new_vocab.get('file'))}")
    if not changes and dict(old) != dict(new):
        changes.append("its record of sources differs")
    if not changes:
        return None
    more = f" and {len(changes) - 3} more" if len(changes) > 3 else ""
    return "; ".join(changes[:3]) + more


def _file_change(old: Optional[List[int]], new: Optional[List[int]]) -> str:
    if old is None:
        return "appeared"
    if new is None:
        return "is gone"
    if old[0] != new[0]:
        return f"changed ({old[0]} -> {new[0]} bytes)"
    return "was modified (same size, new mtime)"
