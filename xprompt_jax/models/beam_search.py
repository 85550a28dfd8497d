"""Beam search over the cached T5 decoder, as T5X's ``decoding.beam_search`` scores it.

``beam_size`` hypotheses per example grow one token a step; a hypothesis that emits EOS is finished and
scored by its summed log-probability divided by the brevity penalty ``((5 + length) / 6) ** alpha`` (GNMT's,
T5X's default ``alpha=0.6``; 0 turns it off). Each step keeps the best ``beam_size`` unfinished
hypotheses (by summed log-probability) and the best ``beam_size`` finished ones; the answer is the best
finished hypothesis, or the best unfinished one (scored the same way) when none finished. Unlike T5X this
runs all ``max_decode_length`` steps (no early exit), which can only find as good or better hypotheses.

The key/value cache holds ``batch x beam_size`` rows and is reordered every step by the surviving beams'
parents; a test checks each returned score against the teacher-forced log-likelihood of its sequence.
"""
from __future__ import annotations

from typing import Tuple

import jax
import jax.numpy as jnp

from xprompt_jax.models.decoding import DECODER_START_ID, EOS_ID, PAD_ID
from xprompt_jax.models.t5 import T5

NEG = -1.0e9


def brevity_penalty(length, alpha: float):
    return ((5.0 + length) / 6.0) ** alpha


def _reorder(cache, rows, scanned: bool):
    """Every cache array's batch rows (axis 0, or 1 under scanned layers) picked by ``rows``."""
    axis = 1 if scanned else 0
    return jax.tree.map(lambda x: jnp.take(x, rows, axis=axis) if x.ndim > axis + 1 else x, cache)


def beam_search_encoded(model: T5, params, encoded, encoder_mask, max_decode_length: int, beam_size: int = 4,
                        alpha: float = 0.6, eos_id: int = EOS_ID) -> Tuple[jax.Array, jax.Array]:
    """(tokens (batch, max_decode_length), scores (batch,)) of each example's best hypothesis."""
    batch, k = encoded.shape[0], beam_size
    encoded = jnp.repeat(encoded, k, axis=0)
    encoder_mask = jnp.repeat(encoder_mask, k, axis=0)
    _, init_vars = model.apply({"params": params}, encoded, encoder_mask,
                               jnp.zeros((batch * k, max_decode_length), jnp.int32), decode=True,
                               max_decode_length=max_decode_length, method=T5.decode, mutable=["cache"])
    scanned = model.config.scan_layers
    offsets = (jnp.arange(batch) * k)[:, None]

    def step(carry, position):
        cache, last, alive_seqs, alive_lp, done_seqs, done_scores = carry
        logits, new_vars = model.apply({"params": params, "cache": cache}, encoded, encoder_mask, last[:, None],
                                       decode=True, max_decode_length=max_decode_length, method=T5.decode,
                                       mutable=["cache"])
        log_probs = jax.nn.log_softmax(logits[:, 0, :].astype(jnp.float32)).reshape(batch, k, -1)
        vocab = log_probs.shape[-1]
        candidates = (alive_lp[..., None] + log_probs).reshape(batch, k * vocab)
        top_lp, top_index = jax.lax.top_k(candidates, 2 * k)
        parent, token = top_index // vocab, (top_index % vocab).astype(jnp.int32)
        seqs = jnp.take_along_axis(alive_seqs, parent[..., None], axis=1).at[:, :, position].set(token)
        ended = token == eos_id
        # finished: the best k of the old finished and the new ones (length position + 1, EOS included)
        new_scores = jnp.where(ended, top_lp / brevity_penalty(position + 1.0, alpha), NEG)
        pool_scores = jnp.concatenate([done_scores, new_scores], axis=1)
        pool_seqs = jnp.concatenate([done_seqs, seqs], axis=1)
        done_scores, keep = jax.lax.top_k(pool_scores, k)
        done_seqs = jnp.take_along_axis(pool_seqs, keep[..., None], axis=1)
        # alive: the best k candidates that did not end
        alive_lp, keep = jax.lax.top_k(jnp.where(ended, NEG, top_lp), k)
        alive_seqs = jnp.take_along_axis(seqs, keep[..., None], axis=1)
        rows = (offsets + jnp.take_along_axis(parent, keep, axis=1)).reshape(-1)
        cache = _reorder(new_vars["cache"], rows, scanned)
        last = jnp.take_along_axis(token, keep, axis=1).reshape(-1)
        return (cache, last, alive_seqs, alive_lp, done_seqs, done_scores), None

    alive_lp = jnp.tile(jnp.array([0.0] + [NEG] * (k - 1), jnp.float32), (batch, 1))
    empty = jnp.zeros((batch, k, max_decode_length), jnp.int32)
    carry = (init_vars["cache"], jnp.full((batch * k,), DECODER_START_ID, jnp.int32), empty, alive_lp, empty,
             jnp.full((batch, k), NEG, jnp.float32))
    (_, _, alive_seqs, alive_lp, done_seqs, done_scores), _ = jax.lax.scan(step, carry, jnp.arange(max_decode_length))
    alive_scores = alive_lp / brevity_penalty(float(max_decode_length), alpha)
    any_done = done_scores[:, 0] > NEG / 2
    tokens = jnp.where(any_done[:, None], done_seqs[:, 0], alive_seqs[:, 0])
    scores = jnp.where(any_done, done_scores[:, 0], alive_scores[:, 0])
    after_eos = jnp.cumsum(tokens == eos_id, axis=1) - (tokens == eos_id) > 0
    return jnp.where(after_eos, PAD_ID, tokens), scores
