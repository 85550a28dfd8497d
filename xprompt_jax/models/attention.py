"""T5 attention: relative position buckets and biases, and multi-head attention with a decode cache."""
from __future__ import annotations

import functools
import logging
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from xprompt_jax.models.layers import BATCH, HEADS, KV, LENGTH, Array, Dense, _constrain, _kernel_init, _wide

_relpos_init = nn.initializers.variance_scaling(1.0, "fan_avg", "uniform")


def _query_init(head_dim: int) -> Callable:
    """T5 does not scale attention logits at run time; the query kernel's init carries 1/sqrt(head_dim)."""
    def init(key, shape, dtype=jnp.float32):
        return _kernel_init(key, shape, dtype) / jnp.sqrt(head_dim).astype(dtype)
    return init


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
        return values.astype(self.dtype)[None]  # [1, heads, qlen, klen] in the activation dtype, as T5X


IMPLEMENTATIONS = (None, "xla", "cudnn", "auto")
_WARNED = set()


def _warn_once(message: str) -> None:
    if message not in _WARNED:
        _WARNED.add(message)
        logging.getLogger(__name__).warning(message)


def resolve_implementation(implementation: Optional[str], q) -> Optional[str]:
    """'auto': cuDNN's flash attention on GPU for 16-bit activations and head sizes it takes, else XLA's."""
    if implementation != "auto":
        return implementation
    gpu = jax.default_backend() == "gpu"
    fits = q.dtype in (jnp.bfloat16, jnp.float16) and q.shape[-1] <= 128 and q.shape[-1] % 8 == 0
    return "cudnn" if gpu and fits else "xla"


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
                 deterministic: bool, decode: bool = False, causal: bool = False) -> Array:
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
        if dropout or _wide(q.dtype) != jnp.float32 or self.implementation is None:
            # jax.nn.dot_product_attention has no dropout and always takes its softmax in float32; and
            # its XLA path (implementation=None) vmaps the einsums and writes each probability matrix
            # twice, in two layouts: the plain einsums are faster (benchmarks/CPU_GAP.md).
            out = self._explicit_attention(q, k, v, mask, bias, dropout)
        else:
            out = self._fused_attention(q, k, v, mask, bias, causal and not decode, decode)
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

    def _fused_attention(self, q, k, v, mask, bias, causal: bool, decode: bool):
        """``jax.nn.dot_product_attention`` (flash attention through cuDNN on GPU), given what it can fuse:
        the decoder's causal mask as ``is_causal``, a key-padding mask as ``key_value_seq_lengths`` (the
        valid keys are a prefix in every prompt placement), and the relative-position bias as a
        ``[1, N, T, S]`` array in the activation dtype, so no ``[B, N, T, S]`` bias is built."""
        kwargs = {}
        if causal:
            kwargs["is_causal"], mask = True, None
        elif not decode and mask is not None and mask.shape[1] == 1 and mask.shape[2] == 1:
            kwargs["key_value_seq_lengths"], mask = jnp.sum(mask[:, 0, 0, :], axis=-1, dtype=jnp.int32), None
        implementation = resolve_implementation(self.implementation, q)
        try:
            return jax.nn.dot_product_attention(q, k, v, bias=bias, mask=mask, scale=1.0,
                                                implementation=implementation, **kwargs)
        except Exception as err:  # cuDNN refuses some shapes and dtypes at trace time: fall back, saying so once
            if implementation != "cudnn":
                raise
            _warn_once(f"[model] cuDNN attention is not available for these shapes ({str(err).splitlines()[0][:120]}); "
                       "using XLA's")
            return jax.nn.dot_product_attention(q, k, v, bias=bias, mask=mask, scale=1.0, implementation="xla",
                                                **kwargs)

    def _explicit_attention(self, q, k, v, mask, bias, dropout: bool):
        """As T5X: the logits (and their gradients, dQ and dK) in the activation dtype, the softmax in
        float32 (or wider). With bfloat16 activations that halves the [B, N, T, S] traffic of the scores."""
        logits = jnp.einsum("btnh,bsnh->bnts", q, k)
        if bias is not None:
            logits = logits + bias.astype(logits.dtype)
        logits = jnp.where(mask, logits, jnp.finfo(logits.dtype).min)
        probs = jax.nn.softmax(logits.astype(_wide(q.dtype)), axis=-1)
        if dropout:
            probs = nn.Dropout(rate=self.dropout_rate)(probs, deterministic=False)
        return jnp.einsum("bnts,bsnh->btnh", probs.astype(v.dtype), v)
