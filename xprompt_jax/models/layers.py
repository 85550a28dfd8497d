"""T5's building blocks with T5X's parameter names: RMS norm, bias-free dense, embedding, MLP block.

Also the activation axis names and dtype helpers the other model modules share. Every parameter is made
through ``nn.with_logical_partitioning``; activations pass through ``nn.with_logical_constraint``.
"""
from __future__ import annotations

from typing import Callable, Tuple

import jax
import jax.numpy as jnp
from flax import linen as nn

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


# Initialisers (T5X / flaxformer defaults; only used for models trained from scratch and in tests).
_kernel_init = nn.initializers.variance_scaling(1.0, "fan_in", "truncated_normal")
_embedding_init = nn.initializers.normal(stddev=1.0)


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
            elif act == "silu":  # UL2 / Flan-UL2's gated SiLU (SwiGLU)
                h = jax.nn.silu(h)
            hidden = h if hidden is None else hidden * h
        hidden = _constrain(hidden, (BATCH, LENGTH, MLP))
        hidden = nn.Dropout(rate=self.dropout_rate, broadcast_dims=(-2,))(hidden, deterministic=deterministic)
        return Dense(x.shape[-1], ("mlp", "embed"), self.dtype, self.param_dtype, name="wo")(hidden)
