"""T5X checkpoints: the msgpack ``checkpoint`` file (leaves inline or tensorstore/zarr specs), and the
Orbax layout newer T5X versions write.

Only the model parameters (``target``) are read; optimizer state is skipped. A T5X checkpoint stores
no architecture, so the caller checks the returned tree against a ``T5Config``.
"""
from __future__ import annotations

import concurrent.futures
import os
from typing import Any, Dict, Mapping

import numpy as np
import tensorstore as ts
from flax import serialization, traverse_util

from xprompt_jax.errors import CheckpointError
from xprompt_jax.t5_import import storage

MSGPACK_FILE = "checkpoint"
ORBAX_MARKERS = ("_METADATA", "_CHECKPOINT_METADATA", "manifest.ocdbt")


def _is_ts_spec(leaf: Any) -> bool:
    return isinstance(leaf, Mapping) and "driver" in leaf and ("kvstore" in leaf or "path" in leaf)


def _absolute_spec(checkpoint_dir: str, spec: Mapping) -> dict:
    """Point a leaf's relative zarr path at ``checkpoint_dir``, locally or on Cloud Storage.

    T5X writes ``{"driver": "zarr", "kvstore": {"driver": "gfile"|"file", "path": <relative>}}``
    (tensorstore < 0.1.14 put ``path`` at the top level). ``gfile`` is TensorFlow's file system; we
    read the same bytes through tensorstore's own ``file``/``gcs`` drivers.
    """
    relative = spec["kvstore"]["path"] if "kvstore" in spec else spec["path"]
    folder = storage.kvstore_spec(storage.join(checkpoint_dir, relative))
    # Open what is on disk: the folder's .zarray is the truth for dtype, shape and chunks (a checkpoint
    # converted to bfloat16 after saving still carries the old metadata in its msgpack).
    return {"driver": spec.get("driver", "zarr"), "kvstore": folder}


def _read_ts_leaf(checkpoint_dir: str, name: str, spec: Mapping) -> np.ndarray:
    full = _absolute_spec(checkpoint_dir, spec)
    try:
        store = ts.open(full, open=True, read=True).result()
        return np.asarray(store.read().result())
    except Exception as err:
        raise CheckpointError(
            f"Cannot read parameter {name} of the T5X checkpoint {checkpoint_dir} from "
            f"{storage.join(checkpoint_dir, spec.get('kvstore', spec).get('path', '?'))}: {err}. "
            "The zarr folder is missing, truncated or corrupt: copy the checkpoint again.") from err


def _target_tree(state: Mapping, source: str) -> Mapping:
    """``optimizer/target`` (T5X msgpack v2+), ``target`` (state dicts, Orbax) or ``params``."""
    for keys in (("optimizer", "target"), ("target",), ("params",), ("state", "params")):
        node = state
        for key in keys:
            node = node.get(key) if isinstance(node, Mapping) else None
        if isinstance(node, Mapping):
            return node
    raise CheckpointError(
        f"{source} holds no model parameters: expected 'optimizer/target', 'target' or 'params' at the "
        f"top level, found keys {sorted(state)}")


def read_msgpack_checkpoint(checkpoint_dir: str) -> Dict[str, np.ndarray]:
    """The flat ``{'encoder/layers_0/...': array}`` parameters of a T5X msgpack checkpoint."""
    raw = storage.read_bytes(checkpoint_dir, MSGPACK_FILE)
    path = storage.join(checkpoint_dir, MSGPACK_FILE)
    if raw is None:
        raise CheckpointError(f"No T5X checkpoint file at {path}")
    try:
        state = serialization.msgpack_restore(raw)
    except Exception as err:
        raise CheckpointError(f"{path} is not a readable T5X msgpack checkpoint (truncated or corrupt: "
                              f"{type(err).__name__}: {err})") from err
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{path} does not hold a T5X state dict")
    target = _target_tree(state, path)
    flat = traverse_util.flatten_dict(target, sep="/", is_leaf=lambda _, v: _is_ts_spec(v))
    params = {name: np.asarray(leaf) for name, leaf in flat.items() if not _is_ts_spec(leaf)}
    stored = {name: leaf for name, leaf in flat.items() if _is_ts_spec(leaf)}
    # Zarr leaves are read concurrently: on Cloud Storage each one is a round trip or more.
    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        arrays = pool.map(lambda item: _read_ts_leaf(checkpoint_dir, *item), stored.items())
        params.update(zip(stored, arrays))
    return params


def read_orbax_checkpoint(checkpoint_dir: str) -> Dict[str, np.ndarray]:
    """The flat parameters of an Orbax PyTree checkpoint holding a T5X state dict, restored as NumPy."""
    import orbax.checkpoint as ocp  # imported here: its start-up cost is paid only for this format

    path = checkpoint_dir if storage.is_remote(checkpoint_dir) else os.path.abspath(checkpoint_dir)
    checkpointer = ocp.PyTreeCheckpointer()
    try:
        metadata = checkpointer.metadata(path)
        tree = metadata.item_metadata.tree if hasattr(metadata, "item_metadata") else metadata
        _target_tree(tree, path)  # fail before reading anything if there are no parameters
        # Every leaf as NumPy, whatever sharding it was saved with (the saving mesh may not exist here).
        restore_args = _map_leaves(tree, lambda _: ocp.RestoreArgs(restore_type=np.ndarray))
        restored = checkpointer.restore(path, args=ocp.args.PyTreeRestore(restore_args=restore_args))
    except CheckpointError:
        raise
    except Exception as err:
        raise CheckpointError(f"Cannot restore the Orbax checkpoint {path}: {type(err).__name__}: {err}") from err
    target = _target_tree(restored, path)
    flat = traverse_util.flatten_dict(target, sep="/")
    return {name: np.asarray(value) for name, value in flat.items()}


def _map_leaves(tree: Mapping, fn) -> dict:
    """``fn`` applied to every leaf of a nested mapping, keeping its structure."""
    return {k: _map_leaves(v, fn) if isinstance(v, Mapping) else fn(v) for k, v in tree.items()}
