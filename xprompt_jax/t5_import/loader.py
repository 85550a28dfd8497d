"""One call to read any T5 checkpoint a researcher has: ``load_t5_checkpoint(path, config)``.

Formats, detected from the files present:
  * T5X msgpack: ``<dir>/checkpoint`` (leaves inline or tensorstore/zarr folders beside it);
  * T5X Orbax: ``<dir>/_METADATA`` / ``_CHECKPOINT_METADATA`` / ``manifest.ocdbt``;
  * Hugging Face: ``<dir>/config.json`` with safetensors or ``pytorch_model.bin`` weights.
A T5X run folder (holding ``checkpoint_N`` sub-folders) resolves to its latest step. Paths may be
local or ``gs://``. Every parameter is checked against the config before anything is returned.
"""
from __future__ import annotations

import functools
import logging
import os
import re
from typing import Dict, Optional, Tuple, Union

import numpy as np
from flax import traverse_util

from xprompt_jax.errors import CheckpointError
from xprompt_jax.models import scan_layout
from xprompt_jax.models.config import NAMED_CONFIGS, T5Config, t5_config, variant_and_size
from xprompt_jax.models.t5 import param_shapes
from xprompt_jax.t5_import import huggingface, mesh_tf, storage, t5x

logger = logging.getLogger(__name__)

_STEP_DIR = re.compile(r"^checkpoint_(\d+)$")


def _format_of(path: str) -> Optional[str]:
    """'huggingface', 't5x_orbax', 'mesh_tf' or 't5x_msgpack' by the marker file present; None if none.
    (A Mesh TF folder also has a file named ``checkpoint``, a text one: its ``*.index`` files tell.)"""
    if huggingface.is_huggingface_folder(path):
        return "huggingface"
    if any(storage.exists(path, marker) for marker in t5x.ORBAX_MARKERS):
        return "t5x_orbax"
    if not storage.is_remote(path) and mesh_tf.is_mesh_tf_checkpoint(path):
        return "mesh_tf"
    if storage.exists(path, t5x.MSGPACK_FILE):
        return "t5x_msgpack"
    return None


def resolve_checkpoint(path: str) -> Tuple[str, str]:
    """(checkpoint folder, format) for ``path``; a T5X run folder stands for its latest ``checkpoint_N``."""
    if not storage.is_remote(path) and mesh_tf.is_mesh_tf_checkpoint(path) and not os.path.isdir(path):
        return path, "mesh_tf"  # a model.ckpt-N prefix
    if not storage.is_remote(path) and not os.path.isdir(path):
        raise CheckpointError(f"No checkpoint at {path}: the path does not exist or is not a folder")
    fmt = _format_of(path)
    if fmt is None:
        latest = latest_step_dir(path)
        fmt = _format_of(latest) if latest is not None else None
        path = latest if fmt is not None else path
    if fmt is None:
        raise CheckpointError(
            f"{path} is not a checkpoint this project reads: expected a T5X '{t5x.MSGPACK_FILE}' file, an Orbax "
            f"checkpoint ({', '.join(t5x.ORBAX_MARKERS)}) or a Hugging Face folder ({huggingface.CONFIG_FILE} + "
            "model.safetensors), or a T5X run folder with checkpoint_N sub-folders")
    return path, fmt


def latest_step_dir(path: str) -> Optional[str]:
    """The ``checkpoint_N`` sub-folder with the largest N, when ``path`` is a T5X run folder."""
    steps = [(int(m.group(1)), name) for name in storage.list_names(path) if (m := _STEP_DIR.match(name))]
    return storage.join(path, max(steps)[1]) if steps else None


def _resolve_config(config: Union[T5Config, str, None]) -> Optional[T5Config]:
    if config is None or isinstance(config, T5Config):
        return config
    return t5_config(config)


def _size_of(name: str) -> str:
    """The sizes/ gin file of a named config (``t5_1_1_prompt_tuning_test`` -> ``prompt_tuning_test``)."""
    return variant_and_size(name)[1]


@functools.lru_cache(maxsize=None)
def _expected_shapes(config: T5Config) -> Dict[str, tuple]:
    return {k: tuple(v.shape) for k, v in traverse_util.flatten_dict(param_shapes(config), sep="/").items()}


def _guess_names(shapes: Dict[str, tuple]) -> list:
    """Named configs whose every parameter shape equals the checkpoint's (for error messages and smoke).

    Only configs with the checkpoint's embedding and layer counts are built (abstractly): tracing the
    init of every named config, 20B ones included, would take a minute."""
    layers = {stack: len({k.split("/")[1] for k in shapes if k.startswith(f"{stack}/layers_")})
              for stack in ("encoder", "decoder")}
    embedding = shapes.get("token_embedder/embedding")
    return [name for name, cfg in NAMED_CONFIGS.items()
            if (cfg.vocab_size, cfg.emb_dim) == embedding and cfg.num_encoder_layers == layers["encoder"]
            and cfg.num_decoder_layers == layers["decoder"] and _expected_shapes(cfg) == shapes]


def check_params(flat: Dict[str, np.ndarray], config: T5Config, source: str) -> None:
    """Every parameter present, none extra, every shape equal to what ``config`` builds."""
    expected = traverse_util.flatten_dict(param_shapes(config), sep="/")
    embedding = flat.get("token_embedder/embedding")
    if embedding is not None and embedding.shape[0] != config.vocab_size:
        raise CheckpointError(
            f"Vocabulary mismatch in {source}: token_embedder/embedding has {embedding.shape[0]} rows, the "
            f"config's vocab_size is {config.vocab_size}. Use the vocabulary the checkpoint was trained "
            "with, or set vocab_size to match")
    for name, spec in sorted(expected.items()):
        found = tuple(flat[name].shape) if name in flat else None
        if found is not None and found != tuple(spec.shape):
            raise CheckpointError(f"Shape mismatch in {source}: parameter {name} has shape {found}, the config "
                                  f"expects {tuple(spec.shape)}")
    missing = sorted(set(expected) - set(flat))
    if missing:
        raise CheckpointError(f"{source} lacks parameters the config needs ({config.variant}, "
                              f"{config.num_encoder_layers}+{config.num_decoder_layers} layers): "
                              f"{', '.join(missing[:6])}{' ...' if len(missing) > 6 else ''}")
    extra = sorted(set(flat) - set(expected))
    if extra:
        raise CheckpointError(f"{source} has parameters the config does not build: "
                              f"{', '.join(extra[:6])}{' ...' if len(extra) > 6 else ''}. Is it a different "
                              "variant (T5 1.0 vs 1.1) or depth?")


def check_finite(flat: Dict[str, np.ndarray], source: str) -> None:
    """NaN or Inf in a weight is refused at load, naming the arrays: training on it would stop at step 1
    with advice about the learning rate, which is not the cause."""
    bad = {}
    for name, value in flat.items():
        value = np.asarray(value)
        if value.dtype.kind not in "fV":  # floats, and ml_dtypes' bfloat16 (kind 'V')
            continue
        finite = np.isfinite(value)
        if not finite.all():
            bad[name] = int(finite.size - finite.sum())
    if bad:
        shown = ", ".join(f"{name} ({count:,})" for name, count in sorted(bad.items())[:3])
        more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
        raise CheckpointError(f"{source} holds non-finite weights (NaN or Inf) in {len(bad)} array(s): {shown}{more}; "
                              "the checkpoint is damaged or was saved from a diverged run: use another one")


def load_t5_checkpoint(path: str, config: Union[T5Config, str, None] = None,
                       param_dtype: Optional[str] = None, guess_size: bool = False) -> Tuple[T5Config, dict]:
    """Read a T5 checkpoint; return its ``T5Config`` and the nested T5X parameter tree (NumPy).

    ``config`` (a ``T5Config`` or a name such as ``'t5_1_1_base'``) is required for T5X checkpoints,
    which carry none; for Hugging Face folders it is read from ``config.json`` and, if given, must
    agree. Parameters are cast to ``param_dtype`` (default: the config's). ``guess_size``: a T5X checkpoint
    given without a config takes the one named config its shapes match, when exactly one does (logged).
    """
    wanted = _resolve_config(config)
    path, fmt = resolve_checkpoint(str(path))
    if fmt == "mesh_tf":  # TensorFlow is for the data side: convert once, then load anywhere
        raise CheckpointError(f"{path} is a Mesh TensorFlow checkpoint (the original T5 release); convert it once "
                              f"with `xprompt-jax convert --checkpoint={path} --out=DIR` (needs TensorFlow) and "
                              "use DIR, which loads on TensorFlow-free hosts")
    if fmt == "huggingface":
        found_config, flat = huggingface.read_huggingface_folder(path)
        if wanted is not None:
            found_config = _merge_runtime_fields(found_config, wanted)
    else:
        flat = t5x.read_msgpack_checkpoint(path) if fmt == "t5x_msgpack" else t5x.read_orbax_checkpoint(path)
        flat = _unrolled(flat, path)
        if wanted is None:
            guesses = _guess_names(_shared_relpos_shapes(flat))
            if not (guess_size and len({NAMED_CONFIGS[g] for g in guesses}) == 1):  # Flan-T5 = T5 1.1 shapes
                hint = (f" Its shapes match {', '.join(guesses)}: e.g. --gin_file=sizes/{_size_of(guesses[0])}.gin"
                        if guesses else " No known size matches its shapes.")
                raise CheckpointError(
                    f"{path} is a T5X checkpoint, which stores no architecture: give its size with "
                    f"--gin_file=sizes/<size>.gin (and --gin_file=models/t5_1_0.gin for T5 1.0) on the command "
                    f"line, or config='t5_1_1_base' (a name or a T5Config) in Python.{hint}")
            logger.info(f"[checkpoint] {path} stores no architecture; its shapes match only {' = '.join(guesses)}: "
                        "using it")
            wanted = t5_config(guesses[0])
        found_config = wanted
        if scan_layout.per_layer_tables(flat) and not found_config.per_layer_relpos_bias:
            logger.info(f"[checkpoint] {path} has a relative-position table per layer (a scanned flaxformer model): "
                        "building the model with per_layer_relpos_bias")
            found_config = found_config.replace(per_layer_relpos_bias=True)
    check_params(flat, found_config.replace(scan_layers=False), path)
    check_finite(flat, path)
    if param_dtype is not None:
        found_config = found_config.replace(param_dtype=param_dtype)
    flat = {k: _cast(v, found_config.param_dtype) for k, v in flat.items()}
    if found_config.scan_layers:  # the checkpoint's layout does not matter: the config's is built
        flat = scan_layout.stack_flat(flat)
    return found_config, traverse_util.unflatten_dict(flat, sep="/")


def _unrolled(flat: Dict[str, np.ndarray], path: str) -> Dict[str, np.ndarray]:
    """Any T5X layout as the unrolled tree: scanned checkpoints (flaxformer's ``encoder/encoder``, T5X
    scalable_t5's and this project's ``encoder/layers``) are split per layer, and per-layer
    relative-position tables that are equal in every layer become T5's one table per stack."""
    if not scan_layout.is_scanned(flat):
        return flat
    flat, collapsed = scan_layout.collapse_relpos(scan_layout.from_scanned_checkpoint(flat))
    logger.info(f"[checkpoint] {path} is a scanned checkpoint (layers stacked on axis {scan_layout.SCAN_AXIS}): "
                f"read per layer{'; its per-layer relative-position tables are equal: one table per stack' if collapsed else ''}")
    return flat


def _shared_relpos_shapes(flat: Dict[str, np.ndarray]) -> Dict[str, tuple]:
    """Parameter shapes with per-layer relative-position tables counted as one shared table: the named
    configs a checkpoint of a flaxformer scanned model matches."""
    shapes = {}
    for name, value in flat.items():
        if "/layers_" in name and name.endswith("relpos_bias/rel_embedding"):
            name = name.split("/")[0] + "/relpos_bias/rel_embedding"
        shapes[name] = tuple(value.shape)
    return shapes


def _cast(value: np.ndarray, dtype_name: str) -> np.ndarray:
    import jax.numpy as jnp

    dtype = jnp.dtype(dtype_name)
    return value if value.dtype == dtype else np.asarray(value).astype(dtype)


def _merge_runtime_fields(found: T5Config, wanted: T5Config) -> T5Config:
    """Keep the checkpoint's architecture, take run-time choices (dtypes, dropout, remat) from ``wanted``."""
    runtime = ("dtype", "param_dtype", "dropout_rate", "remat", "attention_implementation", "scan_layers")
    arch_fields = [f for f in T5Config.__dataclass_fields__ if f not in runtime]
    differ = [f for f in arch_fields if getattr(found, f) != getattr(wanted, f)]
    if differ:
        details = ", ".join(f"{f}: checkpoint {getattr(found, f)!r} vs config {getattr(wanted, f)!r}" for f in differ)
        raise CheckpointError(f"The checkpoint's config.json disagrees with the config given: {details}")
    return found.replace(**{f: getattr(wanted, f) for f in runtime})
