"""T5 1.0 / 1.1 encoder-decoder in Flax, with T5X's parameter tree and logical axis names.

The parameter tree is exactly T5X's (flaxformer layout), so a T5X checkpoint restores without renaming:

    token_embedder/embedding                      [vocab, embed]
    encoder/relpos_bias/rel_embedding             [heads, relpos_buckets]   one table per stack
    encoder/layers_N/pre_attention_layer_norm/scale
    encoder/layers_N/attention/{query,key,value}/kernel   [embed, joined_kv]
    encoder/layers_N/attention/out/kernel         [joined_kv, embed]
    encoder/layers_N/pre_mlp_layer_norm/scale
    encoder/layers_N/mlp/{wi | wi_0,wi_1}/kernel  [embed, mlp];  mlp/wo/kernel [mlp, embed]
    encoder/encoder_norm/scale
    decoder/layers_N/{pre_self_attention_layer_norm, self_attention,
                      pre_cross_attention_layer_norm, encoder_decoder_attention,
                      pre_mlp_layer_norm, mlp}
    decoder/decoder_norm/scale, decoder/relpos_bias/rel_embedding
    decoder/logits_dense/kernel                   [embed, vocab]   (T5 1.1 only)

With ``T5Config.scan_layers`` the ``layers_N`` of a stack become one ``layers`` whose every parameter has
a layer axis at position 1 (``[embed, layers, joined_kv]``, ``scale`` ``[embed, layers]``), T5X's
``param_scan_axis``; ``models/scan_layout.py`` converts trees both ways and reads flaxformer's scanned
checkpoints.

Every parameter is created through ``nn.with_logical_partitioning`` and the main activations pass
through ``nn.with_logical_constraint``: both are no-ops until a mesh and logical-axis rules are in
scope, and then shard the model without touching this file.

Soft prompts enter through one door, ``T5.encode_embedded(embedded, mask)``: ``xprompt_jax.prompted.PromptedT5``
combines ``T5.embed(tokens)`` with the prompt rows and encodes the result, whose rows the encoder's relative
positions and the cross-attention see as ordinary positions.

Modules: ``layers`` (norm, dense, embedding, MLP), ``attention`` (relative position bias, attention),
``t5`` (the layers, stacks and the encoder-decoder; it re-exports the public names of both).
"""
from __future__ import annotations

from typing import Optional, Tuple

import jax
import jax.numpy as jnp
from flax import linen as nn

from xprompt_jax.models.attention import Attention, RelativePositionBiases, relative_position_bucket
from xprompt_jax.models.config import T5Config
from xprompt_jax.models.layers import (
    BATCH,
    EMBED,
    LENGTH,
    VOCAB,
    Array,
    Dense,
    Embed,
    MlpBlock,
    RMSNorm,
    _constrain,
    _dtype,
    _wide,
)
from xprompt_jax.models.scan_layout import SCAN_AXIS

__all__ = ["T5", "Encoder", "Decoder", "EncoderLayer", "DecoderLayer", "Attention", "RelativePositionBiases",
           "relative_position_bucket", "RMSNorm", "Dense", "Embed", "MlpBlock", "init_params", "param_shapes",
           "logical_axes"]


def _norm(cfg: T5Config, name: str) -> RMSNorm:
    return RMSNorm(cfg.layer_norm_epsilon, _dtype(cfg.dtype), _dtype(cfg.param_dtype), name=name)


def _attention(cfg: T5Config, name: str) -> Attention:
    return Attention(cfg.num_heads, cfg.head_dim, _dtype(cfg.dtype), _dtype(cfg.param_dtype),
                     cfg.dropout_rate, cfg.attention_implementation, name=name)


def _relpos(cfg: T5Config, length: int, bidirectional: bool) -> Array:
    """The ``[1, heads, length, length]`` relative-position bias, from the table of the module it is called
    in: the stack's (shared, T5) or, with ``per_layer_relpos_bias``, each layer's own (flaxformer's scanned
    T5X models)."""
    return RelativePositionBiases(cfg.relative_attention_num_buckets, cfg.relative_attention_max_distance,
                                  cfg.num_heads, _dtype(cfg.dtype), _dtype(cfg.param_dtype),
                                  name="relpos_bias")(length, length, bidirectional=bidirectional)


def _mlp(cfg: T5Config) -> MlpBlock:
    return MlpBlock(cfg.mlp_dim, cfg.mlp_activations, _dtype(cfg.dtype), _dtype(cfg.param_dtype),
                    cfg.dropout_rate, name="mlp")


class EncoderLayer(nn.Module):
    """One encoder layer; ``scanned`` makes it return ``(x, None)``, the carry and output ``nn.scan`` wants."""
    config: T5Config
    scanned: bool = False

    @nn.compact
    def __call__(self, x: Array, mask: Array, bias: Optional[Array], deterministic: bool):
        cfg = self.config
        if cfg.per_layer_relpos_bias:
            bias = _relpos(cfg, x.shape[1], bidirectional=True)
        drop = nn.Dropout(rate=cfg.dropout_rate, broadcast_dims=(-2,))
        y = _norm(cfg, "pre_attention_layer_norm")(x)
        y = _attention(cfg, "attention")(y, y, mask, bias, deterministic)
        x = x + drop(y, deterministic=deterministic)
        y = _norm(cfg, "pre_mlp_layer_norm")(x)
        y = _mlp(cfg)(y, deterministic)
        x = x + drop(y, deterministic=deterministic)
        x = _constrain(x, (BATCH, LENGTH, EMBED))
        return (x, None) if self.scanned else x


class DecoderLayer(nn.Module):
    """One decoder layer; ``scanned`` as for ``EncoderLayer``."""
    config: T5Config
    scanned: bool = False
    bias_length: int = 0  # per-layer tables only: the decode cache's length (the input's when 0)

    @nn.compact
    def __call__(self, x: Array, encoded: Array, self_mask: Array, cross_mask: Array, bias: Optional[Array],
                 deterministic: bool, decode: bool):
        cfg = self.config
        if cfg.per_layer_relpos_bias:
            bias = _relpos(cfg, self.bias_length or x.shape[1], bidirectional=False)
        drop = nn.Dropout(rate=cfg.dropout_rate, broadcast_dims=(-2,))
        y = _norm(cfg, "pre_self_attention_layer_norm")(x)
        y = _attention(cfg, "self_attention")(y, y, self_mask, bias, deterministic, decode=decode, causal=True)
        x = x + drop(y, deterministic=deterministic)
        y = _norm(cfg, "pre_cross_attention_layer_norm")(x)
        y = _attention(cfg, "encoder_decoder_attention")(y, encoded, cross_mask, None, deterministic)
        x = x + drop(y, deterministic=deterministic)
        y = _norm(cfg, "pre_mlp_layer_norm")(x)
        y = _mlp(cfg)(y, deterministic)
        x = x + drop(y, deterministic=deterministic)
        x = _constrain(x, (BATCH, LENGTH, EMBED))
        return (x, None) if self.scanned else x


_REMAT_POLICIES = {
    "full": jax.checkpoint_policies.nothing_saveable,
    "minimal": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}


def _maybe_remat(layer_cls, cfg: T5Config, static_argnums: Tuple[int, ...]):
    if cfg.remat == "none":
        return layer_cls
    # Under scan, common-subexpression elimination cannot merge the recomputation into the forward pass,
    # so the barrier that prevents it is dropped there (as T5X and flaxformer do).
    return nn.remat(layer_cls, policy=_REMAT_POLICIES[cfg.remat], static_argnums=static_argnums,
                    prevent_cse=not cfg.scan_layers)


def _run_layers(layer_cls, cfg: T5Config, count: int, static_argnums: Tuple[int, ...], x: Array, *args,
                **fields) -> Array:
    """``count`` layers over ``x``: unrolled (``layers_0`` ... ``layers_{count-1}``, T5X's tree) or, with
    ``cfg.scan_layers``, one ``nn.scan`` over a single layer whose parameters are stacked on axis
    ``SCAN_AXIS`` under ``layers`` (``models/scan_layout.py`` converts between the two trees). Scanning
    compiles one layer instead of ``count``: minutes less per program at xl and xxl."""
    layer_cls = _maybe_remat(layer_cls, cfg, static_argnums)
    if not cfg.scan_layers:
        for i in range(count):
            x = layer_cls(cfg, name=f"layers_{i}", **fields)(x, *args)
        return x
    scanned = nn.scan(layer_cls, variable_axes={"params": SCAN_AXIS, "cache": 0},
                      split_rngs={"params": True, "dropout": True}, in_axes=(nn.broadcast,) * len(args),
                      length=count, metadata_params={nn.PARTITION_NAME: "layers"})
    x, _ = scanned(cfg, scanned=True, name="layers", **fields)(x, *args)
    return x


class Encoder(nn.Module):
    """Bidirectional stack over already-embedded inputs (tokens, or a prompt and tokens)."""
    config: T5Config

    @nn.compact
    def __call__(self, embedded: Array, input_mask: Array, deterministic: bool = True) -> Array:
        cfg = self.config
        length = embedded.shape[1]
        bias = None if cfg.per_layer_relpos_bias else _relpos(cfg, length, bidirectional=True)
        mask = input_mask[:, None, None, :].astype(bool)  # keys only: padded queries never reach a real one
        x = nn.Dropout(rate=cfg.dropout_rate, broadcast_dims=(-2,))(embedded, deterministic=deterministic)
        x = _constrain(x.astype(_dtype(cfg.dtype)), (BATCH, LENGTH, EMBED))
        x = _run_layers(EncoderLayer, cfg, cfg.num_encoder_layers, (4,), x, mask, bias, deterministic)
        x = _norm(cfg, "encoder_norm")(x)
        return nn.Dropout(rate=cfg.dropout_rate, broadcast_dims=(-2,))(x, deterministic=deterministic)


class Decoder(nn.Module):
    """Causal stack with cross-attention; returns float32 logits over the vocabulary."""
    config: T5Config
    shared_embedding: Embed

    @nn.compact
    def __call__(self, encoded: Array, encoder_mask: Array, decoder_input_tokens: Array,
                 deterministic: bool = True, decode: bool = False,
                 max_decode_length: Optional[int] = None) -> Array:
        cfg = self.config
        length = decoder_input_tokens.shape[1]
        bias_length = max_decode_length if decode and max_decode_length else length
        bias = None if cfg.per_layer_relpos_bias else _relpos(cfg, bias_length, bidirectional=False)
        # Causal only: targets are right-padded, so padding never precedes a real position, and
        # padded rows match what PyTorch's T5 computes for them.
        self_mask = nn.make_causal_mask(decoder_input_tokens, dtype=bool)
        self_mask = jnp.broadcast_to(self_mask, (decoder_input_tokens.shape[0],) + self_mask.shape[1:])
        cross_mask = encoder_mask[:, None, None, :].astype(bool)

        x = self.shared_embedding(decoder_input_tokens)
        x = nn.Dropout(rate=cfg.dropout_rate, broadcast_dims=(-2,))(x, deterministic=deterministic)
        x = _constrain(x, (BATCH, LENGTH, EMBED))
        x = _run_layers(DecoderLayer, cfg, cfg.num_decoder_layers, (6, 7), x, encoded, self_mask, cross_mask, bias,
                        deterministic, decode, bias_length=bias_length)
        x = _norm(cfg, "decoder_norm")(x)
        x = nn.Dropout(rate=cfg.dropout_rate, broadcast_dims=(-2,))(x, deterministic=deterministic)
        if cfg.scale_logits:
            x = x * (cfg.emb_dim ** -0.5)
        if cfg.logits_via_embedding:
            logits = self.shared_embedding.attend(x)
        else:
            logits = Dense(cfg.vocab_size, ("embed", "vocab"), _wide(cfg.dtype), _dtype(cfg.param_dtype),
                           name="logits_dense")(x)
        return _constrain(logits, (BATCH, LENGTH, VOCAB))


class T5(nn.Module):
    """The encoder-decoder. ``__call__`` is teacher-forced; ``encode``/``decode`` serve generation."""
    config: T5Config

    def setup(self):
        cfg = self.config
        self.token_embedder = Embed(cfg.vocab_size, cfg.emb_dim, _dtype(cfg.dtype), _dtype(cfg.param_dtype))
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg, shared_embedding=self.token_embedder)

    def embed(self, tokens: Array) -> Array:
        """Token embeddings in the activation dtype: what a prompt is combined with."""
        return self.token_embedder(tokens)

    def encode_embedded(self, embedded: Array, input_mask: Array, deterministic: bool = True) -> Array:
        """Encode an already-combined sequence (prompt rows placed anywhere among token embeddings).

        The one door for a soft prompt: ``PromptedT5.encode`` combines ``embed(tokens)`` with the prompt
        and calls this.
        """
        if embedded.shape[-1] != self.config.emb_dim:
            raise ValueError(f"embedded inputs of width {embedded.shape[-1]} do not match the model's emb_dim "
                             f"{self.config.emb_dim}")
        return self.encoder(embedded, input_mask, deterministic=deterministic)

    def encode(self, encoder_input_tokens: Array, deterministic: bool = True) -> Tuple[Array, Array]:
        """Encode tokens; returns the encoder output and its attention mask (for cross-attention)."""
        mask = encoder_input_tokens > 0
        return self.encode_embedded(self.embed(encoder_input_tokens), mask, deterministic), mask

    def decode(self, encoded: Array, encoder_mask: Array, decoder_input_tokens: Array,
               deterministic: bool = True, decode: bool = False,
               max_decode_length: Optional[int] = None) -> Array:
        return self.decoder(encoded, encoder_mask, decoder_input_tokens, deterministic=deterministic,
                            decode=decode, max_decode_length=max_decode_length)

    def __call__(self, encoder_input_tokens: Array, decoder_input_tokens: Array,
                 deterministic: bool = True) -> Array:
        encoded, mask = self.encode(encoder_input_tokens, deterministic)
        return self.decode(encoded, mask, decoder_input_tokens, deterministic=deterministic)


def init_params(config: T5Config, rng: Optional[Array] = None, boxed: bool = False):
    """Random parameters for ``config`` (T5X's initialisers). ``boxed`` keeps the logical-axis boxes."""
    rng = jax.random.PRNGKey(0) if rng is None else rng
    tokens = jnp.ones((1, 2), jnp.int32)
    variables = T5(config).init(rng, tokens, tokens)
    params = variables["params"]
    return params if boxed else nn.unbox(params)


def param_shapes(config: T5Config):
    """The parameter tree as ``jax.ShapeDtypeStruct`` leaves, without allocating anything."""
    boxed = jax.eval_shape(lambda: init_params(config, boxed=True))
    return nn.unbox(boxed)


def logical_axes(config: T5Config):
    """The parameter tree with a ``PartitionSpec`` of logical axis names at every leaf."""
    boxed = jax.eval_shape(lambda: init_params(config, boxed=True))
    return nn.get_partition_spec(boxed)
