"""Device meshes and logical-axis rules: how every array of a run is laid out over devices.

The model names its axes logically (``vocab``, ``embed``, ``mlp``, ``heads``, ``joined_kv``, ``batch`` ...);
these rules map them to the two mesh axes, ``data`` (batch parallelism) and ``model`` (tensor
parallelism), as T5X's ``standard_logical_axis_rules`` do. A 1x1 mesh, one GPU and a TPU pod slice run
the same jitted step; only the mesh differs.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import jax
import numpy as np
from flax import linen as nn
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from xprompt_jax.errors import ConfigError

DATA, MODEL = "data", "model"

DEFAULT_RULES: Tuple[Tuple[str, Optional[str]], ...] = (
    ("batch", DATA),
    ("vocab", MODEL),
    ("mlp", MODEL),
    ("heads", MODEL),
    ("joined_kv", MODEL),
    ("embed", None),
    ("layers", None),          # the layer axis of scanned stacks (T5Config.scan_layers)
    ("kv", None),
    ("length", None),
    ("relpos_buckets", None),
    ("prompt_length", None),   # prompts are tiny: replicated everywhere
    ("prompt_embed", None),
    ("prompt_hidden", None),   # hidden units of a reparameterised prompt (EPT, P-Tuning, ResPrompt)
)


def make_mesh(data: int = -1, model: int = 1, devices: Optional[Sequence[jax.Device]] = None) -> Mesh:
    """A (data, model) mesh over ``devices`` (default: all). ``data=-1`` takes what ``model`` leaves."""
    devices = list(devices if devices is not None else jax.devices())
    if model < 1 or len(devices) % model:
        raise ConfigError(f"mesh model axis {model} must divide the {len(devices)} devices (partitioning.model)")
    if data == -1:
        data = len(devices) // model
    if data * model < len(devices) and jax.process_count() == 1:
        devices = devices[:data * model]  # a smaller mesh on one host (debugging, tests): use the first devices
    if data * model != len(devices):
        raise ConfigError(f"mesh {data}x{model} needs {data * model} devices but {len(devices)} are available; "
                          "set partitioning data/model so that data * model equals the device count")
    return Mesh(np.asarray(devices).reshape(data, model), (DATA, MODEL))


def logical_to_sharding(logical_specs, mesh: Mesh, rules=DEFAULT_RULES):
    """A tree of logical ``PartitionSpec``s -> a tree of ``NamedSharding``s on ``mesh``."""
    return nn.logical_to_mesh_sharding(logical_specs, mesh, list(rules))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Examples split over ``data``; every other dimension whole."""
    return NamedSharding(mesh, PartitionSpec(DATA))


def check_divisible(global_batch: int, mesh: Mesh):
    data = mesh.shape[DATA]
    if global_batch % data:
        raise ConfigError(f"batch size {global_batch} is not divisible by the mesh's data axis ({data}); "
                          "change BATCH_SIZE or the mesh shape")
    if global_batch % jax.process_count():
        raise ConfigError(f"batch size {global_batch} is not divisible by the {jax.process_count()} processes")


def abstract_global_batch(local_batch: dict, mesh: Mesh) -> dict:
    """The shapes, dtypes and shardings ``global_batch`` gives this process's slice, nothing transferred."""
    sharding = batch_sharding(mesh)
    return {k: jax.ShapeDtypeStruct((np.shape(v)[0] * jax.process_count(),) + np.shape(v)[1:], np.asarray(v).dtype,
                                    sharding=sharding) for k, v in local_batch.items()}


def global_batch(local_batch: dict, mesh: Mesh) -> dict:
    """Assemble each process's slice of the global batch into global arrays sharded over ``data``.

    On one process this is a plain ``device_put``; on several, every process passes only the rows it
    read (its contiguous slice of the global batch) and JAX stitches them together.
    """
    sharding = batch_sharding(mesh)
    if jax.process_count() == 1:
        return jax.device_put(local_batch, sharding)
    return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v)) for k, v in local_batch.items()}
