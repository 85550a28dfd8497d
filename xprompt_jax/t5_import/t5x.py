"""T5X checkpoints: the msgpack ``checkpoint`` file (leaves inline or tensorstore/zarr specs), and the
Orbax layout newer T5X versions write.

Only the model parameters (``target``) are read; optimizer state is skipped. A T5X checkpoint stores
no architecture, so the caller checks the returned tree against a ``T5Config``.
"""
from __future__ import annotations

import concurrent.futures
import itertools
import logging
import os
import posixpath
from typing import Any, Dict, Mapping

import numpy as np
import tensorstore as ts
from flax import serialization, traverse_util

from xprompt_jax.errors import CheckpointError
from xprompt_jax.t5_import import storage

logger = logging.getLogger(__name__)

MSGPACK_FILE = "checkpoint"
ORBAX_MARKERS = ("_METADATA", "_CHECKPOINT_METADATA", "manifest.ocdbt")


def _is_ts_spec(leaf: Any) -> bool:
    return isinstance(leaf, Mapping) and "driver" in leaf and ("kvstore" in leaf or "path" in leaf)


def _relative_path(checkpoint_dir: str, name: str, spec: Mapping) -> str:
    """The leaf's zarr folder relative to the checkpoint; one that leaves the folder is refused.

    Checkpoints travel between people and buckets: a ``kvstore.path`` of ``../../elsewhere`` (or an
    absolute path or URL) would read weights from outside the folder the user named.
    """
    relative = spec["kvstore"]["path"] if "kvstore" in spec else spec["path"]
    normal = posixpath.normpath(str(relative).replace("\\", "/"))
    if "://" in str(relative) or posixpath.isabs(normal) or normal == ".." or normal.startswith("../"):
        raise CheckpointError(f"parameter {name} of the T5X checkpoint {checkpoint_dir} points outside the "
                              f"checkpoint folder ({relative!r}); refused: a checkpoint reads only its own files")
    return str(relative)


def _absolute_spec(checkpoint_dir: str, spec: Mapping) -> dict:
    """Point a leaf's relative zarr path at ``checkpoint_dir``, locally or on Cloud Storage.

    T5X writes ``{"driver": "zarr", "kvstore": {"driver": "gfile"|"file", "path": <relative>}}``
    (tensorstore < 0.1.14 put ``path`` at the top level). ``gfile`` is TensorFlow's file system; we
    read the same bytes through tensorstore's own ``file``/``gcs`` drivers.
    """
    relative = _relative_path(checkpoint_dir, "?", spec)
    folder = storage.kvstore_spec(storage.join(checkpoint_dir, relative))
    # Open what is on disk: the folder's .zarray is the truth for dtype, shape and chunks (a checkpoint
    # converted to bfloat16 after saving still carries the old metadata in its msgpack).
    return {"driver": spec.get("driver", "zarr"), "kvstore": folder}


ALLOW_MISSING_CHUNKS = "XPROMPT_ALLOW_MISSING_CHUNKS"


def _missing_chunks(store, kvstore) -> list:
    """Chunk keys the array's grid calls for and its folder lacks (tensorstore reads those as the fill value)."""
    shape, chunks = store.domain.shape, store.chunk_layout.read_chunk.shape
    separator = store.spec().to_json().get("metadata", {}).get("dimension_separator", ".")
    grid = [range(-(-size // chunk)) for size, chunk in zip(shape, chunks)]
    present = {key.decode() if isinstance(key, bytes) else key for key in ts.KvStore.open(kvstore).result().list().result()}
    return [key for key in (separator.join(map(str, idx)) for idx in itertools.product(*grid)) if key not in present]


def _check_chunks(checkpoint_dir: str, name: str, store, kvstore) -> None:
    """A missing chunk file is refused, naming the array and the chunk.

    tensorstore fills a missing chunk with the fill value (zeros) without a word, and it also leaves out
    chunks that are entirely the fill value when it writes. A trained weight matrix has no all-zero block
    of thousands of rows, so a missing chunk is taken as damage; ``XPROMPT_ALLOW_MISSING_CHUNKS=1`` reads
    them as zeros instead, with a warning (for arrays that really are zero in parts).
    """
    missing = _missing_chunks(store, kvstore)
    if not missing:
        return
    where = f"{storage.join(checkpoint_dir, name)} (chunk{'s' if len(missing) > 1 else ''} {', '.join(missing[:5])}" \
            f"{' ...' if len(missing) > 5 else ''})"
    if os.environ.get(ALLOW_MISSING_CHUNKS) == "1":
        logger.warning(f"[checkpoint] {where} missing: read as zeros ({ALLOW_MISSING_CHUNKS}=1)")
        return
    raise CheckpointError(f"the T5X checkpoint is missing chunk files of parameter {where}; tensorstore would "
                          f"read them as zeros. Copy the checkpoint again (or set {ALLOW_MISSING_CHUNKS}=1 if those "
                          "blocks really are all zero)")


def _read_ts_leaf(checkpoint_dir: str, name: str, spec: Mapping) -> np.ndarray:
    relative = _relative_path(checkpoint_dir, name, spec)
    full = _absolute_spec(checkpoint_dir, spec)
    try:
        store = ts.open(full, open=True, read=True).result()
        _check_chunks(checkpoint_dir, relative, store, full["kvstore"])
        return np.asarray(store.read().result())
    except CheckpointError:
        raise
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
