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

Every parameter is created through ``nn.with_logical_partitioning`` and the main activations pass
through ``nn.with_logical_constraint``: both are no-ops until a mesh and logical-axis rules are in
scope, and then shard the model without touching this file.

Soft prompts enter through ``T5.encode(..., prefix_embeddings=, prefix_mask=)``: rows placed in front of
the token embeddings, seen by the encoder's relative positions and by the cross-attention as ordinary
positions.
"""
from __future__ import annotations

import functools
from typing import Callable, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from xprompt_jax.models.config import T5Config

Array = jax.Array

# Logical axis names of activations.
BATCH, LENGTH, EMBED, HEADS, KV, MLP, VOCAB = "batch", "length", "embed", "heads", "kv", "mlp", "vocab"


def _dtype(name) -> jnp.dtype:
    return jnp.dtype(name)


def _wide(dtype) -> jnp.dtype:
    """Dtype for numerically sensitive sums (norm statistics, softmax, logits): float32 or wider."""
    return jnp.promote_types(dtype, jnp.float32)


def _constrain(x: Array, axes: Tuple[str, ...]) -> Array:
    return nn.with_logical_constraint(x, axes)


# --------------------------------------------------------------------------------------------------
# Initialisers (T5X / flaxformer defaults; only used for models trained from scratch and in tests).
# --------------------------------------------------------------------------------------------------
_kernel_init = nn.initializers.variance_scaling(1.0, "fan_in", "truncated_normal")
_embedding_init = nn.initializers.normal(stddev=1.0)
_relpos_init = nn.initializers.variance_scaling(1.0, "fan_avg", "uniform")


def _query_init(head_dim: int) -> Callable:
    """T5 does not scale attention logits at run time; the query kernel's init carries 1/sqrt(head_dim)."""
    def init(key, shape, dtype=jnp.float32):
        return _kernel_init(key, shape, dtype) / jnp.sqrt(head_dim).astype(dtype)
    return init


# --------------------------------------------------------------------------------------------------
# Relative position buckets: T5's formula (mesh-tensorflow, T5X, flaxformer).
# --------------------------------------------------------------------------------------------------
def relative_position_bucket(relative_position: np.ndarray, bidirectional: bool = True,
                             num_buckets: int = 32, max_distance: int = 128) -> np.ndarray:
    """Bucket of ``memory_position - query_position``: exact for small offsets, logarithmic beyond.

    Bidirectional (encoder) tables use half the buckets for keys after the query; causal (decoder)
    tables map every key after the query to bucket 0. Offsets beyond ``max_distance`` share the last
    bucket. Computed in NumPy: positions are static, so buckets are compile-time constants.
    """
    ret = np.zeros_like(relative_position, dtype=np.int32)
    n = -np.asarray(relative_position, dtype=np.int32)
    if bidirectional:
        num_buckets //= 2
        ret += (n < 0).astype(np.int32) * num_buckets
        n = np.abs(n)
    else:
        n = np.maximum(n, 0)
    max_exact = num_buckets // 2
    is_small = n < max_exact
    with np.errstate(divide="ignore"):
        val_if_large = max_exact + (
            np.log(n.astype(np.float32) / max_exact + np.finfo(np.float32).eps)
            / np.log(max_distance / max_exact) * (num_buckets - max_exact)).astype(np.int32)
    val_if_large = np.minimum(val_if_large, num_buckets - 1)
    ret += np.where(is_small, n, val_if_large)
    return ret


class RelativePositionBiases(nn.Module):
    """One learned scalar per (head, bucket); shared by all layers of a stack, as in T5."""
    num_buckets: int
    max_distance: int
    num_heads: int
    dtype: jnp.dtype
    param_dtype: jnp.dtype

    @nn.compact
    def __call__(self, qlen: int, klen: int, bidirectional: bool) -> Array:
        context = np.arange(qlen, dtype=np.int32)[:, None]
        memory = np.arange(klen, dtype=np.int32)[None, :]
        buckets = relative_position_bucket(memory - context, bidirectional, self.num_buckets,
                                           self.max_distance)
        table = self.param("rel_embedding",
                           nn.with_logical_partitioning(_relpos_init, ("heads", "relpos_buckets")),
                           (self.num_heads, self.num_buckets), self.param_dtype)
        # One-hot contraction instead of a gather: it shards and differentiates well on TPU.
        wide = _wide(self.dtype)
        one_hot = jnp.asarray(buckets[None, :, :] == np.arange(self.num_buckets)[:, None, None], dtype=wide)
        values = jnp.einsum("hn,nqk->hqk", jnp.asarray(table, wide), one_hot)
        return values[None]  # [1, heads, qlen, klen], float32 or wider


# --------------------------------------------------------------------------------------------------
# Layers.
# --------------------------------------------------------------------------------------------------
class RMSNorm(nn.Module):
    """T5's layer norm: no mean subtraction, no bias; statistics in float32."""
    epsilon: float
    dtype: jnp.dtype
    param_dtype: jnp.dtype

    @nn.compact
    def __call__(self, x: Array) -> Array:
        features = x.shape[-1]
        scale = self.param("scale", nn.with_logical_partitioning(nn.initializers.ones, ("embed",)),
                           (features,), self.param_dtype)
        x32 = jnp.asarray(x, _wide(self.dtype))
        var = jnp.mean(jnp.square(x32), axis=-1, keepdims=True)
        y = jnp.asarray(x32 * jax.lax.rsqrt(var + self.epsilon), self.dtype)
        return y * jnp.asarray(scale, self.dtype)


class Dense(nn.Module):
    """A bias-free projection whose kernel keeps T5X's 2-D layout and logical axes."""
    features: int
    kernel_axes: Tuple[str, str]
    dtype: jnp.dtype
    param_dtype: jnp.dtype
    kernel_init: Callable = _kernel_init

    @nn.compact
    def __call__(self, x: Array) -> Array:
        kernel = self.param("kernel", nn.with_logical_partitioning(self.kernel_init, self.kernel_axes),
                            (x.shape[-1], self.features), self.param_dtype)
        return jnp.dot(jnp.asarray(x, self.dtype), jnp.asarray(kernel, self.dtype))


class Embed(nn.Module):
    """Token embedding table; ``attend`` reuses it as the output layer (T5 1.0)."""
    num_embeddings: int
    features: int
    dtype: jnp.dtype
    param_dtype: jnp.dtype

    def setup(self):
        self.embedding = self.param("embedding",
                                    nn.with_logical_partitioning(_embedding_init, ("vocab", "embed")),
                                    (self.num_embeddings, self.features), self.param_dtype)

    def __call__(self, tokens: Array) -> Array:
        return jnp.take(jnp.asarray(self.embedding, self.dtype), tokens, axis=0)

    def attend(self, query: Array) -> Array:
        wide = _wide(self.dtype)
        return jnp.dot(jnp.asarray(query, wide), jnp.asarray(self.embedding, wide).T)


class Attention(nn.Module):
    """Multi-head attention without logit scaling, with an additive bias and an optional decode cache."""
    num_heads: int
    head_dim: int
    dtype: jnp.dtype
    param_dtype: jnp.dtype
    dropout_rate: float
    implementation: Optional[str] = None

    @nn.compact
    def __call__(self, inputs_q: Array, inputs_kv: Array, mask: Array, bias: Optional[Array],
                 deterministic: bool, decode: bool = False) -> Array:
        inner = self.num_heads * self.head_dim
        proj = functools.partial(Dense, features=inner, kernel_axes=("embed", "joined_kv"),
                                 dtype=self.dtype, param_dtype=self.param_dtype)
        q = proj(kernel_init=_query_init(self.head_dim), name="query")(inputs_q)
        k = proj(name="key")(inputs_kv)
        v = proj(name="value")(inputs_kv)
        split = lambda x: x.reshape(x.shape[:2] + (self.num_heads, self.head_dim))
        q, k, v = (_constrain(split(t), (BATCH, LENGTH, HEADS, KV)) for t in (q, k, v))

        if decode:
            k, v, mask, bias = self._update_cache(k, v, mask, bias)

        dropout = not deterministic and self.dropout_rate > 0.0
        if dropout or _wide(q.dtype) != jnp.float32:
            # jax.nn.dot_product_attention has no dropout and always takes its softmax in float32.
            out = self._explicit_attention(q, k, v, mask, bias, dropout)
        else:
            out = jax.nn.dot_product_attention(q, k, v, bias=bias, mask=mask, scale=1.0,
                                               implementation=self.implementation)
        out = _constrain(out, (BATCH, LENGTH, HEADS, KV))
        out = out.reshape(out.shape[:2] + (inner,))
        return Dense(features=inputs_q.shape[-1], kernel_axes=("joined_kv", "embed"), dtype=self.dtype,
                     param_dtype=self.param_dtype, name="out")(out)

    def _update_cache(self, k, v, mask, bias):
        """Write this step's key/value at the cache index; attend to every filled slot.

        The first call (with the full-length target) only creates the cache, as T5X does, so its
        shapes come from the maximum decode length.
        """
        initialised = self.has_variable("cache", "cached_key")
        cached_key = self.variable("cache", "cached_key", jnp.zeros, k.shape, k.dtype)
        cached_value = self.variable("cache", "cached_value", jnp.zeros, v.shape, v.dtype)
        cache_index = self.variable("cache", "cache_index", lambda: jnp.array(0, jnp.int32))
        if not initialised:
            return k, v, mask, bias
        batch, length = cached_key.value.shape[:2]
        if k.shape[1] != 1:
            raise ValueError(f"Decoding feeds one token per step; got a chunk of {k.shape[1]}")
        index = cache_index.value
        keys = jax.lax.dynamic_update_slice(cached_key.value, k, (0, index, 0, 0))
        values = jax.lax.dynamic_update_slice(cached_value.value, v, (0, index, 0, 0))
        cached_key.value, cached_value.value = keys, values
        cache_index.value = index + 1
        step_mask = (jnp.arange(length) <= index)[None, None, None, :]
        step_mask = jnp.broadcast_to(step_mask, (batch, 1, 1, length))
        if bias is not None:
            bias = jax.lax.dynamic_slice(bias, (0, 0, index, 0), (bias.shape[0], bias.shape[1], 1, length))
        return keys, values, step_mask, bias

    def _explicit_attention(self, q, k, v, mask, bias, dropout: bool):
        wide = _wide(q.dtype)
        logits = jnp.einsum("btnh,bsnh->bnts", q, k, preferred_element_type=wide)
        if bias is not None:
            logits = logits + bias
        logits = jnp.where(mask, logits, jnp.finfo(wide).min)
        probs = jax.nn.softmax(logits, axis=-1)
        if dropout:
            probs = nn.Dropout(rate=self.dropout_rate)(probs, deterministic=False)
        return jnp.einsum("bnts,bsnh->btnh", probs.astype(v.dtype), v)


class MlpBlock(nn.Module):
    """T5's feed-forward block: ``wi`` + ReLU (T5 1.0) or gated GELU ``wi_0``*``wi_1`` (T5 1.1)."""
    mlp_dim: int
    activations: Tuple[str, ...]
    dtype: jnp.dtype
    param_dtype: jnp.dtype
    dropout_rate: float

    @nn.compact
    def __call__(self, x: Array, deterministic: bool) -> Array:
        hidden = None
        for i, act in enumerate(self.activations):
            name = "wi" if len(self.activations) == 1 else f"wi_{i}"
            h = Dense(self.mlp_dim, ("embed", "mlp"), self.dtype, self.param_dtype, name=name)(x)
            if act == "relu":
                h = jax.nn.relu(h)
            elif act == "gelu":
                h = jax.nn.gelu(h, approximate=True)
            hidden = h if hidden is None else hidden * h
        hidden = _constrain(hidden, (BATCH, LENGTH, MLP))
        hidden = nn.Dropout(rate=self.dropout_rate, broadcast_dims=(-2,))(hidden, deterministic=deterministic)
        return Dense(x.shape[-1], ("mlp", "embed"), self.dtype, self.param_dtype, name="wo")(hidden)


def _norm(cfg: T5Config, name: str) -> RMSNorm:
    return RMSNorm(cfg.layer_norm_epsilon, _dtype(cfg.dtype), _dtype(cfg.param_dtype), name=name)


def _attention(cfg: T5Config, name: str) -> Attention:
    return Attention(cfg.num_heads, cfg.head_dim, _dtype(cfg.dtype), _dtype(cfg.param_dtype),
                     cfg.dropout_rate, cfg.attention_implementation, name=name)


def _mlp(cfg: T5Config) -> MlpBlock:
    return MlpBlock(cfg.mlp_dim, cfg.mlp_activations, _dtype(cfg.dtype), _dtype(cfg.param_dtype),
                    cfg.dropout_rate, name="mlp")


class EncoderLayer(nn.Module):
    config: T5Config

    @nn.compact
    def __call__(self, x: Array, mask: Array, bias: Array, deterministic: bool) -> Array:
        cfg = self.config
        drop = nn.Dropout(rate=cfg.dropout_rate, broadcast_dims=(-2,))
        y = _norm(cfg, "pre_attention_layer_norm")(x)
        y = _attention(cfg, "attention")(y, y, mask, bias, deterministic)
        x = x + drop(y, deterministic=deterministic)
        y = _norm(cfg, "pre_mlp_layer_norm")(x)
        y = _mlp(cfg)(y, deterministic)
        x = x + drop(y, deterministic=deterministic)
        return _constrain(x, (BATCH, LENGTH, EMBED))


class DecoderLayer(nn.Module):
    config: T5Config

    @nn.compact
    def __call__(self, x: Array, encoded: Array, self_mask: Array, cross_mask: Array, bias: Array,
                 deterministic: bool, decode: bool) -> Array:
        cfg = self.config
        drop = nn.Dropout(rate=cfg.dropout_rate, broadcast_dims=(-2,))
        y = _norm(cfg, "pre_self_attention_layer_norm")(x)
        y = _attention(cfg, "self_attention")(y, y, self_mask, bias, deterministic, decode=decode)
        x = x + drop(y, deterministic=deterministic)
        y = _norm(cfg, "pre_cross_attention_layer_norm")(x)
        y = _attention(cfg, "encoder_decoder_attention")(y, encoded, cross_mask, None, deterministic)
        x = x + drop(y, deterministic=deterministic)
        y = _norm(cfg, "pre_mlp_layer_norm")(x)
        y = _mlp(cfg)(y, deterministic)
        x = x + drop(y, deterministic=deterministic)
        return _constrain(x, (BATCH, LENGTH, EMBED))


_REMAT_POLICIES = {
    "full": jax.checkpoint_policies.nothing_saveable,
    "minimal": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}


def _maybe_remat(layer_cls, cfg: T5Config, static_argnums: Tuple[int, ...]):
    if cfg.remat == "none":
        return layer_cls
    return nn.remat(layer_cls, policy=_REMAT_POLICIES[cfg.remat], static_argnums=static_argnums)


class Encoder(nn.Module):
    """Bidirectional stack over already-embedded inputs (tokens, or a prompt and tokens)."""
    config: T5Config

    @nn.compact
    def __call__(self, embedded: Array, input_mask: Array, deterministic: bool = True) -> Array:
        cfg = self.config
        length = embedded.shape[1]
        bias = RelativePositionBiases(cfg.relative_attention_num_buckets, cfg.relative_attention_max_distance,
                                      cfg.num_heads, _dtype(cfg.dtype), _dtype(cfg.param_dtype),
                                      name="relpos_bias")(length, length, bidirectional=True)
        mask = input_mask[:, None, None, :].astype(bool)  # keys only: padded queries never reach a real one
        x = nn.Dropout(rate=cfg.dropout_rate, broadcast_dims=(-2,))(embedded, deterministic=deterministic)
        x = _constrain(x.astype(_dtype(cfg.dtype)), (BATCH, LENGTH, EMBED))
        layer_cls = _maybe_remat(EncoderLayer, cfg, static_argnums=(4,))
        for i in range(cfg.num_encoder_layers):
            x = layer_cls(cfg, name=f"layers_{i}")(x, mask, bias, deterministic)
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
        bias = RelativePositionBiases(cfg.relative_attention_num_buckets, cfg.relative_attention_max_distance,
                                      cfg.num_heads, _dtype(cfg.dtype), _dtype(cfg.param_dtype),
                                      name="relpos_bias")(bias_length, bias_length, bidirectional=False)
        # Causal only: targets are right-padded, so padding never precedes a real position, and
        # padded rows match what PyTorch's T5 computes for them.
        self_mask = nn.make_causal_mask(decoder_input_tokens, dtype=bool)
        self_mask = jnp.broadcast_to(self_mask, (decoder_input_tokens.shape[0],) + self_mask.shape[1:])
        cross_mask = encoder_mask[:, None, None, :].astype(bool)

        x = self.shared_embedding(decoder_input_tokens)
        x = nn.Dropout(rate=cfg.dropout_rate, broadcast_dims=(-2,))(x, deterministic=deterministic)
        x = _constrain(x, (BATCH, LENGTH, EMBED))
        layer_cls = _maybe_remat(DecoderLayer, cfg, static_argnums=(6, 7))
        for i in range(cfg.num_decoder_layers):
            x = layer_cls(cfg, name=f"layers_{i}")(x, encoded, self_mask, cross_mask, bias, deterministic,
                                                   decode)
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
        """Encode an already-combined sequence (prompt rows placed anywhere among token embeddings)."""
        return self.encoder(embedded, input_mask, deterministic=deterministic)

    def encode(self, encoder_input_tokens: Array, prefix_embeddings: Optional[Array] = None,
               prefix_mask: Optional[Array] = None, deterministic: bool = True) -> Tuple[Array, Array]:
        """Encode tokens, with optional embeddings (a soft prompt) placed in front of them.

        Returns the encoder output and its attention mask (prompt positions included), which the
        decoder's cross-attention needs.
        """
        embedded = self.token_embedder(encoder_input_tokens)
        mask = encoder_input_tokens > 0
        if prefix_embeddings is not None:
            batch = encoder_input_tokens.shape[0]
            if prefix_embeddings.ndim == 2:
                prefix_embeddings = jnp.broadcast_to(prefix_embeddings, (batch,) + prefix_embeddings.shape)
            if prefix_embeddings.shape[-1] != self.config.emb_dim:
                raise ValueError(f"prefix_embeddings width {prefix_embeddings.shape[-1]} does not match "
                                 f"the model's emb_dim {self.config.emb_dim}")
            if prefix_mask is None:
                prefix_mask = jnp.ones(prefix_embeddings.shape[:2], bool)
            elif prefix_mask.ndim == 1:
                prefix_mask = jnp.broadcast_to(prefix_mask, (batch,) + prefix_mask.shape)
            embedded = jnp.concatenate([prefix_embeddings.astype(embedded.dtype), embedded], axis=1)
            mask = jnp.concatenate([prefix_mask.astype(bool), mask], axis=1)
        return self.encoder(embedded, mask, deterministic=deterministic), mask

    def decode(self, encoded: Array, encoder_mask: Array, decoder_input_tokens: Array,
               deterministic: bool = True, decode: bool = False,
               max_decode_length: Optional[int] = None) -> Array:
        return self.decoder(encoded, encoder_mask, decoder_input_tokens, deterministic=deterministic,
                            decode=decode, max_decode_length=max_decode_length)

    def __call__(self, encoder_input_tokens: Array, decoder_input_tokens: Array,
                 prefix_embeddings: Optional[Array] = None, prefix_mask: Optional[Array] = None,
                 deterministic: bool = True) -> Array:
        encoded, mask = self.encode(encoder_input_tokens, prefix_embeddings, prefix_mask, deterministic)
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
