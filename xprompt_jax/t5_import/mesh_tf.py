"""The original T5 release: Mesh TensorFlow checkpoints (``model.ckpt-N``), read with TensorFlow.

Lester et al.'s experiments started from these, and many T5 1.0 and 1.1 checkpoints exist only in this
format. This is a data-side reader: it needs TensorFlow, so the training path never calls it.
``xprompt-jax convert`` reads one once and writes an Orbax checkpoint (``{'target': params}``, T5X's
names) that then loads on TensorFlow-free hosts.

The names map as T5X's ``checkpoint_importer`` maps them: ``shared/embedding`` -> the token embedder,
``{encoder,decoder}/block_NNN/layer_MMM/{SelfAttention,EncDecAttention}/{q,k,v,o}`` -> attention
kernels (the same ``[in, out]`` layout, no transpose), ``.../DenseReluDense/{wi,wi_0,wi_1,wo}/kernel``
-> the MLP, ``layer_norm``/``rms_norm`` scales -> the pre-layer norms, ``final_layer_norm`` -> the
stack norms, ``decoder/logits/kernel`` -> ``logits_dense`` (T5 1.1; T5 1.0 ties it to the embedding).
Mesh TF keeps each stack's relative-position table only in ``block_000``'s self-attention, shared by
every layer. Optimiser slots (``*_slot_v``, ``_slot_vr``, ``_slot_vc``) and ``global_step`` are skipped.

A Mesh TF checkpoint stores no architecture object, so the config is read off the shapes (heads from
the relative-position table, widths from the kernels, T5 1.0 vs 1.1 from the gated MLP and the
``logits`` kernel) and checked against ``operative_config.gin`` where it is present.
"""
from __future__ import annotations

import glob
import os
import re
from typing import Dict, Optional, Tuple

import numpy as np

from xprompt_jax.errors import CheckpointError
from xprompt_jax.models.config import T5Config

OPERATIVE_CONFIG = "operative_config.gin"
_SKIPPED = re.compile(r"(_slot_\w+|^global_step|^Variable\w*)$")
_RULES = [
    (re.compile(r"shared/embedding"), lambda: "token_embedder/embedding"),
    (re.compile(r"(encoder|decoder)/block_000/layer_000/SelfAttention/relative_attention_bias"),
     lambda stack: f"{stack}/relpos_bias/rel_embedding"),
    (re.compile(r"(encoder|decoder)/block_(\d+)/layer_\d+/(SelfAttention|EncDecAttention)/(q|k|v|o)"),
     lambda stack, block, kind, m: f"{stack}/layers_{int(block)}/{_attention(stack, kind)}/"
                                   f"{dict(q='query', k='key', v='value', o='out')[m]}/kernel"),
    (re.compile(r"(encoder|decoder)/block_(\d+)/layer_\d+/DenseReluDense/(wi|wi_0|wi_1|wo)/kernel"),
     lambda stack, block, name: f"{stack}/layers_{int(block)}/mlp/{name}/kernel"),
    (re.compile(r"(encoder|decoder)/block_(\d+)/layer_(\d+)/(?:layer|rms)_norm/scale"),
     lambda stack, block, layer: f"{stack}/layers_{int(block)}/{_norm(stack, int(layer))}/scale"),
    (re.compile(r"(encoder|decoder)/(?:final_layer|rms)_norm/scale"), lambda stack: f"{stack}/{stack}_norm/scale"),
    (re.compile(r"decoder/logits/kernel"), lambda: "decoder/logits_dense/kernel"),
]


def _attention(stack: str, kind: str) -> str:
    if stack == "encoder":
        return "attention"
    return {"SelfAttention": "self_attention", "EncDecAttention": "encoder_decoder_attention"}[kind]


def _norm(stack: str, layer: int) -> str:
    names = (["pre_attention_layer_norm", "pre_mlp_layer_norm"] if stack == "encoder" else
             ["pre_self_attention_layer_norm", "pre_cross_attention_layer_norm", "pre_mlp_layer_norm"])
    return names[layer]


def checkpoint_prefix(path: str) -> Optional[str]:
    """The ``model.ckpt-N`` prefix ``path`` names: the prefix itself, or a folder's newest checkpoint."""
    if os.path.isfile(path + ".index"):
        return path
    if os.path.isdir(path):
        indexes = glob.glob(os.path.join(path, "*.index"))
        if indexes:
            def step(index):
                found = re.search(r"-(\d+)\.index$", index)
                return int(found.group(1)) if found else -1
            return max(indexes, key=step)[: -len(".index")]
    return None


def is_mesh_tf_checkpoint(path: str) -> bool:
    return checkpoint_prefix(path) is not None


def translate(name: str) -> Optional[str]:
    """The T5X name of a Mesh TF variable; None for optimiser slots and counters; CheckpointError otherwise."""
    if _SKIPPED.search(name):
        return None
    for pattern, rename in _RULES:
        match = pattern.fullmatch(name)
        if match:
            return rename(*match.groups())
    if "relative_attention_bias" in name:
        raise CheckpointError(f"{name}: a relative-position table outside block_000, i.e. one per layer, which "
                              "T5 shares across its layers; this checkpoint is not a T5 1.0/1.1 layout")
    raise CheckpointError(f"{name} is not a variable of a T5 1.0/1.1 Mesh TensorFlow checkpoint")


def read_mesh_tf_checkpoint(path: str) -> Tuple[T5Config, Dict[str, np.ndarray]]:
    """(the architecture read off the shapes, flat T5X parameters) of a ``model.ckpt-N``. Needs TensorFlow."""
    prefix = checkpoint_prefix(path)
    if prefix is None:
        raise CheckpointError(f"no Mesh TensorFlow checkpoint (model.ckpt-N.index) at {path}")
    try:
        import tensorflow as tf
    except ImportError:
        raise CheckpointError(f"{prefix} is a Mesh TensorFlow checkpoint, which needs TensorFlow to read: run "
                              "`xprompt-jax convert` on a host with TensorFlow (the data side) once") from None
    try:
        reader = tf.train.load_checkpoint(prefix)
        names = sorted(reader.get_variable_to_shape_map())
    except Exception as err:  # noqa: BLE001 - TF raises several kinds for damaged bundles
        raise CheckpointError(f"{prefix} is not a readable TensorFlow checkpoint ({type(err).__name__}: "
                              f"{str(err).splitlines()[0][:160]})") from None
    flat = {}
    for name in names:
        target = translate(name)
        if target is not None:
            flat[target] = np.asarray(reader.get_tensor(name))
    return config_from_shapes(flat, _operative_config(prefix), prefix), flat


def _operative_config(prefix: str) -> str:
    path = os.path.join(os.path.dirname(prefix), OPERATIVE_CONFIG)
    if not os.path.isfile(path):
        return ""
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()


def _gin_value(text: str, name: str) -> Optional[str]:
    match = re.search(rf"^\s*{re.escape(name)}\s*=\s*(.+?)\s*$", text, re.M)
    return match.group(1) if match else None


def config_from_shapes(flat: Dict[str, np.ndarray], operative: str, source: str) -> T5Config:
    """The T5Config the parameters describe; ``operative_config.gin`` (if any) settles the activation and
    the relative-position distance, and must agree on the widths."""
    try:
        vocab, emb = flat["token_embedder/embedding"].shape
        heads, buckets = flat["encoder/relpos_bias/rel_embedding"].shape
        joined = flat["encoder/layers_0/attention/query/kernel"].shape[1]
    except KeyError as err:
        raise CheckpointError(f"{source} lacks {err.args[0]}, which every T5 checkpoint has") from None
    gated = "encoder/layers_0/mlp/wi_0/kernel" in flat
    mlp = flat["encoder/layers_0/mlp/" + ("wi_0" if gated else "wi") + "/kernel"].shape[1]
    layers = {stack: len({k.split("/")[1] for k in flat if k.startswith(f"{stack}/layers_")})
              for stack in ("encoder", "decoder")}
    tied = "decoder/logits_dense/kernel" not in flat
    activation = "gelu" if gated else "relu"
    named = re.findall(r"'(relu|gelu|gelu_new|silu|swish)'", _gin_value(operative, "DenseReluDense.activation") or "")
    if named:
        activation = {"gelu_new": "gelu", "swish": "silu"}.get(named[0], named[0])
    distance = _gin_value(operative, "relative_attention_max_distance")
    config = T5Config(vocab_size=vocab, emb_dim=emb, num_heads=heads, head_dim=joined // heads, mlp_dim=mlp,
                      num_encoder_layers=layers["encoder"], num_decoder_layers=layers["decoder"],
                      mlp_activations=(activation, "linear") if gated else (activation,),
                      logits_via_embedding=tied, scale_logits=tied, relative_attention_num_buckets=buckets,
                      relative_attention_max_distance=int(distance) if distance and distance.isdigit() else 128)
    for gin_name, value in (("d_model", emb), ("d_ff", mlp), ("d_kv", joined // heads), ("num_heads", heads)):
        stated = _gin_value(operative, gin_name)
        if stated is not None and stated.isdigit() and int(stated) != value:
            raise CheckpointError(f"{source}: {OPERATIVE_CONFIG} says {gin_name} = {stated} but the weights have "
                                  f"{value}; the folder mixes two models")
    return config
