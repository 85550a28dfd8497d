"""Where a task's examples come from: TFDS (the default) or official files, plus derived splits.

``TaskSource`` is one seqio ``DataSource`` for every task of ``tasks.specs``. Its standard splits come from
TFDS (``super_glue/<config>:1.0.2``, ``glue/<config>:2.0.0``, ``mrqa/<config>:1.0.0`` ...) unless a local
folder of the official files is named, in which case ``tasks.superglue_files`` (SuperGLUE) or
``tasks.official_files`` (the others) reads them into the same features. On top it offers
``train_k4``/``train_k16``/``train_k32`` for GLUE and SuperGLUE (a fixed-seed draw from ``train``, see
``superglue_files.few_shot_subset``), with a FewGLUE folder ``fewglue_train``/``fewglue_dev32``, and EPT's
``ept_train``/``ept_validation``/``ept_test`` (``tasks.ept_splits``) wherever there is a train split and a
validation set.
"""
from __future__ import annotations

import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import numpy as np
import seqio
import tensorflow as tf

from tasks import ept_splits, official_files
from tasks import superglue_files as files
from tasks.errors import TaskDataError as DataError
from tasks.specs import TaskSpec

_KINDS = {
    "text": tf.TensorSpec([], tf.string),
    "int32": tf.TensorSpec([], tf.int32),
    "idx": tf.TensorSpec([], tf.int32),
    "label": tf.TensorSpec([], tf.int64),
    "float": tf.TensorSpec([], tf.float32),
    "text_list": tf.TensorSpec([None], tf.string),
}
Kinds = Mapping[str, str]


def source_kinds(spec: TaskSpec) -> Dict[str, str]:
    """The field kinds of the task's TFDS examples (``superglue_files.FEATURES`` / ``official_files``)."""
    if spec.benchmark == "super_glue":
        return files.FEATURES[spec.config]
    return official_files.features(spec.benchmark, spec.config)


def output_signature(kinds: Union[str, Kinds]) -> Dict[str, Any]:
    """The tf.data element spec TFDS gives these fields (a string: a SuperGLUE config's), for local rows."""
    kinds = files.FEATURES[kinds] if isinstance(kinds, str) else kinds
    signature: Dict[str, Any] = {}
    for name, kind in kinds.items():
        if kind.startswith("idx:"):
            signature[name] = {part: tf.TensorSpec([], tf.int32) for part in kind[4:].split(",")}
        else:
            signature[name] = _KINDS[kind]
    return signature


def rows_to_dataset(kinds: Union[str, Kinds], rows: Sequence[Mapping[str, Any]]) -> tf.data.Dataset:
    """Python rows (``superglue_files``, ``official_files``) -> tf.data with TFDS's dtypes and nesting.

    Columns become tensors in one go (fast); variable-length lists (ReCoRD, MRQA) go through a generator.
    """
    rows = list(rows)
    kinds = files.FEATURES[kinds] if isinstance(kinds, str) else kinds
    signature = output_signature(kinds)
    if any(kind == "text_list" for kind in kinds.values()):
        return tf.data.Dataset.from_generator(lambda: iter(rows), output_signature=signature)

    def column(spec, values):
        if isinstance(spec, dict):
            return {k: column(spec[k], [v[k] for v in values]) for k in spec}
        return tf.constant(values, dtype=spec.dtype, shape=[len(values)])

    return tf.data.Dataset.from_tensor_slices({name: column(spec, [row[name] for row in rows])
                                               for name, spec in signature.items()})


class TaskSource(seqio.DataSource):
    """Standard splits from TFDS or local files; ``train_k<k>``, FewGLUE and EPT splits on top.

    Args:
      spec: the task's ``TaskSpec``.
      data_dir: folder of the official files (SuperGLUE: ``<dir>/<Task>/{train,val,test}.jsonl``; the
        others: ``tasks.official_files``); None: TFDS.
      fewglue_dir: FewGLUE folder (``<dir>/<Task>/{train,dev32}.jsonl``); None: no FewGLUE splits.
      tfds_data_dir: TFDS's data folder (None: TFDS's default).
      origin: how ``data_dir``/``fewglue_dir`` were chosen, for error messages.
      ept_seed: the seed of the EPT splits' carving (``tasks.ept_splits``).
    """

    def __init__(self, spec: TaskSpec, *, data_dir: Optional[str] = None, fewglue_dir: Optional[str] = None,
                 tfds_data_dir: Optional[str] = None, origin: str = "", ept_seed: int = ept_splits.DEFAULT_SEED):
        self._spec = spec
        self._data_dir = data_dir
        self._fewglue_dir = fewglue_dir
        self._origin = origin
        self._ept_seed = int(ept_seed)
        self._tfds = None if data_dir else seqio.TfdsDataSource(
            tfds_name=spec.tfds_name, tfds_data_dir=tfds_data_dir,
            splits={split: spec.source_split(split) for split in spec.splits})
        splits = list(spec.splits) + [f"train_k{k}" for k in spec.few_shot_ks]
        if fewglue_dir and spec.local_name:
            splits += list(spec.fewglue_splits)
        splits += list(ept_splits.offered(spec.splits))
        super().__init__(splits=splits)

    @property
    def supports_arbitrary_sharding(self) -> bool:
        return False

    def list_shards(self, split: str) -> Sequence[str]:
        if self._tfds is not None and split in self._spec.splits:
            return self._tfds.list_shards(split)
        return [split]

    def __repr__(self) -> str:
        where = f"local files in {self._data_dir}" if self._data_dir else self._spec.tfds_name
        return f"TaskSource({self._spec.name}: {where}, splits={list(self.splits)})"

    def get_dataset(self, split: str = "train", shuffle: bool = True, seed: Optional[int] = None,
                    shard_info: Optional[seqio.ShardInfo] = None, *, sequence_length=None, use_cached=False,
                    num_epochs=1) -> tf.data.Dataset:
        del sequence_length, use_cached, num_epochs  # the Task applies these
        if split not in self.splits:
            raise DataError(self._unknown_split_message(split))
        if self._tfds is not None and split in self._spec.splits:
            return self._tfds.get_dataset(split=split, shuffle=shuffle, seed=seed, shard_info=shard_info)
        if split.startswith("train_k"):
            ds = self._few_shot(int(split[len("train_k"):]))
        elif split in ept_splits.SPLITS:
            ds = self._ept(split)
        elif split in files.FEWGLUE_FILES:
            ds = rows_to_dataset(source_kinds(self._spec), self._fewglue_rows(split))
        else:
            ds = rows_to_dataset(source_kinds(self._spec), self._local_rows(split))
        if shard_info and shard_info.num_shards > 1:
            ds = ds.shard(shard_info.num_shards, shard_info.index)
        return ds

    # ----------------------------------------------------------------------------------------------
    def _keep(self):
        """WSC simple training draws its few-shot examples among the positive ones (the only ones it keeps)."""
        if self._spec.correct_referent_only:
            return lambda ex: int(ex["label"]) == 1
        return None

    def _few_shot(self, k: int) -> tf.data.Dataset:
        config = self._spec.config
        if self._tfds is None:
            rows = files.few_shot_subset(config, self._local_rows("train"), k, keep=self._keep())
            return rows_to_dataset(source_kinds(self._spec), rows)
        # TFDS: read only the ids (and labels) once, draw, then filter the full examples in TensorFlow.
        full = self._tfds.get_dataset(split="train", shuffle=False)
        light = full.map(lambda x: {"idx": x["idx"], "label": x.get("label", tf.constant(-1, tf.int64))})
        rows = [_to_python(r) for r in light.as_numpy_iterator()]
        chosen = sorted({files.unit_id(config, r) for r in files.few_shot_subset(config, rows, k, keep=self._keep())})
        chosen_t = tf.constant(chosen, tf.int64)

        def unit(x):
            idx = x["idx"]
            if isinstance(idx, dict):
                idx = idx["paragraph"] if config == "multirc" else idx["passage"]
            return tf.cast(idx, tf.int64)

        return full.filter(lambda x: tf.reduce_any(tf.equal(unit(x), chosen_t)))

    def _ept(self, split: str) -> tf.data.Dataset:
        """EPT's split: the carving's mask over the train or validation split, in the source's order."""
        spec = self._spec
        heldout = ept_splits.heldout_split(spec.splits)
        fields = ept_splits.unit_fields(spec.config, spec.feature_names)
        if self._tfds is None:
            train = self._local_rows("train")  # read once: its size picks the plan, and it may be the source
            num_train = len(train)
            role = ept_splits.source_role(split, num_train)
            rows = train if role == "train" else self._local_rows(heldout)
            keys = [ept_splits.example_key(r, fields, self._ept_seed) for r in rows]
            _, mask = ept_splits.carve(split, num_train, keys)
            return rows_to_dataset(source_kinds(spec), [r for r, keep in zip(rows, mask) if keep])
        num_train = self._tfds.num_input_examples("train")
        role = ept_splits.source_role(split, num_train)
        full = self._tfds.get_dataset(split="train" if role == "train" else heldout, shuffle=False)
        light = full.map(lambda x: {f: x[f] for f in fields})
        keys = [ept_splits.example_key(r, fields, self._ept_seed) for r in light.as_numpy_iterator()]
        _, mask = ept_splits.carve(split, num_train, keys)
        keep = tf.constant(mask, tf.bool)
        return full.enumerate().filter(lambda i, x: keep[i]).map(lambda i, x: x)

    def _local_rows(self, split: str) -> List[Dict[str, Any]]:
        root = self._data_dir
        spec = self._spec
        if spec.benchmark != "super_glue":
            if not os.path.isdir(root):
                raise DataError(f"{spec.benchmark} folder {root} ({self._origin or 'data_dir'}) does not exist: set "
                                f"${official_files.DIR_ENVS[spec.benchmark]} or pass its folder to the task "
                                "registration, or unset both to read TFDS")
            return official_files.load_rows(spec.benchmark, spec.config, root, split)
        if not os.path.isdir(root):
            raise DataError(f"SuperGLUE folder {root} ({self._origin or 'data_dir'}) does not exist: set "
                            f"{files.SUPERGLUE_DIR_ENV} or pass data_dir= to register_superglue() to a folder "
                            "holding <Task>/{train,val,test}.jsonl, or unset both to read TFDS")
        path = files.split_file(root, spec.local_name, spec.config, split)
        if not os.path.isfile(path):
            raise DataError(f"{spec.name}: split {split!r} needs {path}, which is missing from the "
                            f"SuperGLUE folder {root} ({self._origin or 'data_dir'}); put the official file "
                            f"there or pick another split ({', '.join(self.splits)})")
        return files.load_examples(spec.config, path)

    def _fewglue_rows(self, split: str) -> List[Dict[str, Any]]:
        root = self._fewglue_dir
        path = os.path.join(root, self._spec.local_name, files.FEWGLUE_FILES[split])
        if not os.path.isdir(root):
            raise DataError(f"FewGLUE folder {root} does not exist: set {files.FEWGLUE_DIR_ENV} or pass "
                            "fewglue_dir= to register_superglue() to a folder holding <Task>/{train,dev32}.jsonl")
        if not os.path.isfile(path):
            raise DataError(f"{self._spec.name}: split {split!r} needs {path}, missing from the FewGLUE folder {root}")
        return files.load_examples(self._spec.config, path)

    def _unknown_split_message(self, split: str) -> str:
        message = f"task {self._spec.name} has no split {split!r}; its splits: {', '.join(self.splits)}"
        if split in files.FEWGLUE_FILES and not self._fewglue_dir:
            message += (f". FewGLUE splits need a FewGLUE folder: set {files.FEWGLUE_DIR_ENV} or pass "
                        "fewglue_dir= to register_superglue()")
        return message


def _to_python(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _to_python(v) for k, v in value.items()}
    if isinstance(value, np.generic):
        return value.item()
    return value
