"""Scanned and unrolled parameter trees, and flaxformer's scanned checkpoints.

An unrolled stack keeps one sub-tree per layer (``encoder/layers_0/...``, T5X's default tree). A scanned
stack (``T5Config.scan_layers``) keeps one sub-tree, ``encoder/layers/...``, whose every array carries the
layers on axis ``SCAN_AXIS`` = 1: a kernel ``[embed, joined_kv]`` becomes ``[embed, layers, joined_kv]``
and a norm scale ``[embed]`` becomes ``[embed, layers]``. Axis 1 is T5X's ``param_scan_axis`` default
(an XLA layout choice), so the arrays are flaxformer's exactly.

Checkpoints written by a scanned T5X model come in two spellings, both read here:
- flaxformer (``t5_architecture`` with ``scan_layers=True``): ``encoder/encoder/<layer>`` and
  ``decoder/decoder/<layer>``; flaxformer cannot share a relative-position table across scanned layers,
  so every layer has its own ``relpos_bias/rel_embedding`` ``[heads, layers, buckets]``;
- T5X's ``examples/scalable_t5``: ``encoder/layers/<layer>``, its per-layer table named
  ``relative_posemb``.
Per-layer tables that are all equal become the one shared table T5 has; otherwise the model is built with
``per_layer_relpos_bias`` (``load_t5_checkpoint`` decides, ``per_layer_tables`` tells it).
"""
from __future__ import annotations

from typing import Dict, Tuple

import numpy as np

SCAN_AXIS = 1
STACKS = ("encoder", "decoder")
_LAYER_RELPOS = "relpos_bias/rel_embedding"


def _layer_count(flat: Dict[str, np.ndarray], stack: str) -> int:
    return len({k.split("/")[1] for k in flat if k.startswith(f"{stack}/layers_")})


def stack_flat(flat: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """Unrolled ``{stack}/layers_N/<rest>`` -> scanned ``{stack}/layers/<rest>`` (layers on axis 1)."""
    out = {k: v for k, v in flat.items() if "/layers_" not in k}
    for stack in STACKS:
        count = _layer_count(flat, stack)
        rests = sorted({k.split("/", 2)[2] for k in flat if k.startswith(f"{stack}/layers_0/")})
        for rest in rests:
            parts = [flat[f"{stack}/layers_{i}/{rest}"] for i in range(count)]
            out[f"{stack}/layers/{rest}"] = np.stack([np.asarray(p) for p in parts], axis=SCAN_AXIS)
    return out


def unstack_flat(flat: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """Scanned ``{stack}/layers/<rest>`` -> unrolled ``{stack}/layers_N/<rest>``."""
    out = {}
    for name, value in flat.items():
        parts = name.split("/", 2)
        if len(parts) == 3 and parts[0] in STACKS and parts[1] == "layers":
            value = np.asarray(value)
            for i in range(value.shape[SCAN_AXIS]):
                out[f"{parts[0]}/layers_{i}/{parts[2]}"] = np.take(value, i, axis=SCAN_AXIS)
        else:
            out[name] = value
    return out


def is_scanned(flat: Dict[str, np.ndarray]) -> bool:
    """A checkpoint whose layers are stacked (any of the three spellings above)."""
    return any(k.startswith((f"{s}/layers/", f"{s}/{s}/")) for s in STACKS for k in flat)


def from_scanned_checkpoint(flat: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """A scanned checkpoint's arrays (flaxformer's, scalable_t5's or this project's) as the unrolled tree,
    per-layer relative-position tables kept per layer (``collapse_relpos`` may share them)."""
    renamed = {}
    for name, value in flat.items():
        for stack in STACKS:
            if name.startswith(f"{stack}/{stack}/"):
                name = f"{stack}/layers/" + name[len(f"{stack}/{stack}/"):]
        if name.endswith("/layers/relative_posemb/rel_embedding"):
            name = name.replace("/relative_posemb/", "/relpos_bias/")
        renamed[name] = value
    return unstack_flat(renamed)


def per_layer_tables(flat: Dict[str, np.ndarray]) -> bool:
    """Whether an unrolled tree holds a relative-position table per layer (``layers_N/relpos_bias``)."""
    return any(k.endswith(_LAYER_RELPOS) and "/layers_" in k for k in flat)


def collapse_relpos(flat: Dict[str, np.ndarray]) -> Tuple[Dict[str, np.ndarray], bool]:
    """Per-layer tables that are equal in every layer of each stack become the stack's one shared
    ``{stack}/relpos_bias/rel_embedding`` (T5's architecture); returns (tree, collapsed)."""
    if not per_layer_tables(flat):
        return flat, False
    out = dict(flat)
    for stack in STACKS:
        tables = [np.asarray(flat[f"{stack}/layers_{i}/{_LAYER_RELPOS}"]) for i in range(_layer_count(flat, stack))]
        if not all(np.array_equal(tables[0], t) for t in tables[1:]):
            return flat, False
        for i in range(len(tables)):
            del out[f"{stack}/layers_{i}/{_LAYER_RELPOS}"]
        out[f"{stack}/{_LAYER_RELPOS}"] = tables[0]
    return out, True
