"""Hugging Face T5 folders (``config.json`` + ``model.safetensors``, sharded safetensors, or
``pytorch_model.bin``) converted to T5X parameter names and layouts.

Layout differences handled here: HF linear weights are ``[out, in]`` (T5X kernels ``[in, out]``); HF
keeps each stack's relative-position table only in block 0, as ``[buckets, heads]`` (T5X:
``[heads, buckets]``); HF names layers by position inside a block (``layer.0`` self-attention,
``layer.1`` cross-attention or MLP, ...). PyTorch is imported only for ``pytorch_model.bin``.
"""
from __future__ import annotations

import json
from typing import Callable, Dict, Mapping

import numpy as np

from xprompt_jax.errors import CheckpointError
from xprompt_jax.models.config import T5Config
from xprompt_jax.t5_import import storage

CONFIG_FILE = "config.json"
SAFETENSORS_FILE = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
TORCH_FILE = "pytorch_model.bin"

_ACTIVATIONS = {"relu": "relu", "gelu_new": "gelu", "gelu": "gelu", "silu": "silu"}  # silu: UL2's gated SiLU


def config_from_hf(hf: Mapping, source: str = CONFIG_FILE) -> T5Config:
    """A ``T5Config`` from a Hugging Face ``config.json``, following transformers' own defaults.

    T5 1.0 configs leave ``feed_forward_proj`` (relu), ``num_decoder_layers`` and
    ``tie_word_embeddings`` (true: output scaled by d_model^-0.5) at their defaults. transformers 5
    writes ``scale_decoder_outputs`` and always ``tie_word_embeddings: true``; that key wins when
    present. Whether the output layer is tied is settled by the weights (see ``convert``).
    """
    if hf.get("model_type", "t5") not in ("t5", "mt5"):
        raise CheckpointError(f"{source}: model_type {hf.get('model_type')!r} is not a T5 model")
    proj = hf.get("feed_forward_proj", "relu")
    parts = proj.split("-")
    gated = parts[0] == "gated"
    act_name = parts[-1]
    if act_name == "gelu" and not gated:
        raise CheckpointError(f"{source}: feed_forward_proj 'gelu' (exact erf GELU) is not supported; "
                              "T5 uses 'relu' (T5 1.0), 'gated-gelu' (T5 1.1, mT5, ByT5) or 'gated-silu' (UL2)")
    if act_name not in _ACTIVATIONS or len(parts) > 2 or (len(parts) == 2 and not gated):
        raise CheckpointError(f"{source}: unsupported feed_forward_proj {proj!r} (use 'relu', 'gated-gelu' or "
                              "'gated-silu')")
    activations = (_ACTIVATIONS[act_name], "linear") if gated else (_ACTIVATIONS[act_name],)
    if "scale_decoder_outputs" in hf:
        scale = bool(hf["scale_decoder_outputs"])
    else:
        scale = hf.get("tie_word_embeddings", True) is not False
    try:
        num_layers = int(hf["num_layers"])
        return T5Config(
            vocab_size=int(hf["vocab_size"]),
            emb_dim=int(hf["d_model"]),
            num_heads=int(hf["num_heads"]),
            num_encoder_layers=num_layers,
            num_decoder_layers=int(hf.get("num_decoder_layers") or num_layers),
            head_dim=int(hf["d_kv"]),
            mlp_dim=int(hf["d_ff"]),
            mlp_activations=activations,
            logits_via_embedding=True,  # settled by the weights in `convert`
            scale_logits=scale,
            relative_attention_num_buckets=int(hf.get("relative_attention_num_buckets", 32)),
            relative_attention_max_distance=int(hf.get("relative_attention_max_distance", 128)),
            layer_norm_epsilon=float(hf.get("layer_norm_epsilon", 1e-6)),
        )
    except KeyError as err:
        raise CheckpointError(f"{source} lacks the field {err.args[0]!r} every T5 config has") from err


def read_config(folder: str) -> dict:
    raw = storage.read_bytes(folder, CONFIG_FILE)
    path = storage.join(folder, CONFIG_FILE)
    if raw is None:
        raise CheckpointError(f"No {CONFIG_FILE} in {folder}")
    try:
        return json.loads(raw)
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path} is not valid JSON ({err}); the file is truncated or corrupt") from err


def _load_safetensors_bytes(raw: bytes, path: str) -> Dict[str, np.ndarray]:
    from safetensors.numpy import load

    try:
        return load(raw)
    except Exception as err:
        raise CheckpointError(f"{path} is not a readable safetensors file (truncated or corrupt: {err})") from err


def _load_safetensors(folder: str, name: str) -> Dict[str, np.ndarray]:
    path = storage.join(folder, name)
    if not storage.is_remote(folder):
        from safetensors import safe_open

        try:
            with safe_open(path, framework="numpy") as f:
                return {key: f.get_tensor(key) for key in f.keys()}
        except Exception as err:
            raise CheckpointError(f"{path} is not a readable safetensors file (truncated or corrupt: "
                                  f"{err})") from err
    raw = storage.read_bytes(folder, name)
    if raw is None:
        raise CheckpointError(f"Missing {path}")
    return _load_safetensors_bytes(raw, path)


def _load_torch(folder: str) -> Dict[str, np.ndarray]:
    path = storage.join(folder, TORCH_FILE)
    try:
        import torch
    except ImportError as err:
        raise CheckpointError(f"{path} is a PyTorch pickle and PyTorch is not installed: install torch, "
                              "or convert the folder to model.safetensors") from err
    import io

    raw = storage.read_bytes(folder, TORCH_FILE)
    try:
        state = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except Exception as err:
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint (truncated or corrupt: {err})") from err
    return {k: v.detach().float().numpy() if v.dtype == torch.bfloat16 else v.detach().numpy()
            for k, v in state.items()}


def _index_shards(folder: str) -> list:
    """The shard files ``model.safetensors.index.json`` names; a damaged index is one line naming it."""
    path = storage.join(folder, SAFETENSORS_INDEX)
    try:
        index = json.loads(storage.read_bytes(folder, SAFETENSORS_INDEX))
    except (ValueError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path} is not valid JSON ({err}); the file is truncated or corrupt") from None
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not weight_map:
        raise CheckpointError(f"{path} has no 'weight_map' (tensor name -> shard file), which every "
                              "sharded safetensors index has; the file is truncated or not an index")
    return sorted(set(map(str, weight_map.values())))


def read_tensors(folder: str) -> Dict[str, np.ndarray]:
    """Every tensor of the folder by its HF name, from safetensors (single or sharded) or PyTorch."""
    if storage.exists(folder, SAFETENSORS_FILE):
        return _load_safetensors(folder, SAFETENSORS_FILE)
    if storage.exists(folder, SAFETENSORS_INDEX):
        tensors: Dict[str, np.ndarray] = {}
        for shard in _index_shards(folder):
            tensors.update(_load_safetensors(folder, shard))
        return tensors
    if storage.exists(folder, TORCH_FILE):
        return _load_torch(folder)
    raise CheckpointError(f"{folder} has {CONFIG_FILE} but no weights: expected {SAFETENSORS_FILE}, "
                          f"{SAFETENSORS_INDEX} or {TORCH_FILE}")


def convert(tensors: Mapping[str, np.ndarray], config: T5Config, source: str):
    """HF tensors -> (config with the output layer settled, flat T5X parameter dict)."""
    used = {"lm_head.weight"}

    def take(name: str, transform: Callable = np.transpose) -> np.ndarray:
        used.add(name)
        if name not in tensors:
            raise CheckpointError(f"{source} lacks the tensor {name!r} that a T5 with {config.num_encoder_layers} "
                                  f"encoder and {config.num_decoder_layers} decoder layers needs")
        return np.asarray(transform(tensors[name]))

    same = lambda x: x
    mlp_names = ["wi"] if len(config.mlp_activations) == 1 else ["wi_0", "wi_1"]
    out = {"token_embedder/embedding": take("shared.weight", same)}

    def attention(prefix_hf: str, prefix_t5x: str):
        for hf_name, t5x_name in (("q", "query"), ("k", "key"), ("v", "value"), ("o", "out")):
            out[f"{prefix_t5x}/{t5x_name}/kernel"] = take(f"{prefix_hf}.{hf_name}.weight")

    def mlp(prefix_hf: str, prefix_t5x: str):
        for name in mlp_names + ["wo"]:
            out[f"{prefix_t5x}/{name}/kernel"] = take(f"{prefix_hf}.{name}.weight")

    for i in range(config.num_encoder_layers):
        hf, t5x = f"encoder.block.{i}.layer", f"encoder/layers_{i}"
        out[f"{t5x}/pre_attention_layer_norm/scale"] = take(f"{hf}.0.layer_norm.weight", same)
        attention(f"{hf}.0.SelfAttention", f"{t5x}/attention")
        out[f"{t5x}/pre_mlp_layer_norm/scale"] = take(f"{hf}.1.layer_norm.weight", same)
        mlp(f"{hf}.1.DenseReluDense", f"{t5x}/mlp")
    for i in range(config.num_decoder_layers):
        hf, t5x = f"decoder.block.{i}.layer", f"decoder/layers_{i}"
        out[f"{t5x}/pre_self_attention_layer_norm/scale"] = take(f"{hf}.0.layer_norm.weight", same)
        attention(f"{hf}.0.SelfAttention", f"{t5x}/self_attention")
        out[f"{t5x}/pre_cross_attention_layer_norm/scale"] = take(f"{hf}.1.layer_norm.weight", same)
        attention(f"{hf}.1.EncDecAttention", f"{t5x}/encoder_decoder_attention")
        out[f"{t5x}/pre_mlp_layer_norm/scale"] = take(f"{hf}.2.layer_norm.weight", same)
        mlp(f"{hf}.2.DenseReluDense", f"{t5x}/mlp")
    for stack in ("encoder", "decoder"):
        out[f"{stack}/relpos_bias/rel_embedding"] = take(
            f"{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight")
        out[f"{stack}/{stack}_norm/scale"] = take(f"{stack}.final_layer_norm.weight", same)

    # The output layer: its own lm_head (T5 1.1) unless the file has none or it equals the embedding.
    lm_head = tensors.get("lm_head.weight")
    untied = lm_head is not None and not np.array_equal(lm_head, tensors["shared.weight"])
    config = config.replace(logits_via_embedding=not untied)
    if untied:
        out["decoder/logits_dense/kernel"] = np.transpose(lm_head)
    _check_all_used(tensors, used, config, source)
    return config, out


# transformers keeps the embedding's tied copies in some files; they are the shared table itself.
TIED_COPIES = ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight")


def _check_all_used(tensors: Mapping[str, np.ndarray], used, config: T5Config, source: str) -> None:
    """Every tensor of the folder is part of the model its config.json describes: a config that says fewer
    layers than the weights hold would otherwise load a shallower model without a word."""
    extra = sorted(name for name in tensors if name not in used and not (
        name in TIED_COPIES and np.array_equal(tensors[name], tensors["shared.weight"])))
    if extra:
        shown = ", ".join(extra[:3]) + (f" and {len(extra) - 3} more" if len(extra) > 3 else "")
        raise CheckpointError(f"{source} holds {len(extra)} tensor(s) that the T5 its {CONFIG_FILE} describes "
                              f"({config.num_encoder_layers} encoder and {config.num_decoder_layers} decoder layers, "
                              f"{'gated ' if len(config.mlp_activations) > 1 else ''}feed-forward) does not use: "
                              f"{shown}; {CONFIG_FILE} disagrees with the weights (num_layers, num_decoder_layers "
                              "or feed_forward_proj): fix it to match them")


def read_huggingface_folder(folder: str):
    """(T5Config, flat T5X parameters) of a Hugging Face T5 folder."""
    hf_config = read_config(folder)
    config = config_from_hf(hf_config, storage.join(folder, CONFIG_FILE))
    return convert(read_tensors(folder), config, folder)


def is_huggingface_folder(folder: str) -> bool:
    return storage.exists(folder, CONFIG_FILE)


__all__ = ["config_from_hf", "convert", "read_huggingface_folder", "is_huggingface_folder"]
