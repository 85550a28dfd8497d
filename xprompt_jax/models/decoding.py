"""Teacher-forced scoring and cached greedy decoding on top of ``models.t5.T5``.

A prompted model (``PromptedT5``) encodes with its prompt and decodes from the encoder output with
``greedy_decode_encoded``, the same loop ``greedy_decode`` runs.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from xprompt_jax.models.t5 import T5

PAD_ID = 0
EOS_ID = 1
DECODER_START_ID = 0


def shift_right(targets: jax.Array, start_id: int = DECODER_START_ID) -> jax.Array:
    """Decoder inputs for teacher forcing: the targets moved one step right behind the start id."""
    shifted = jnp.pad(targets, ((0, 0), (1, 0)), constant_values=start_id)[:, :-1]
    return shifted


def token_log_likelihoods(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """log p(target_t | ...) at every position, zero where the target is padding."""
    log_probs = jax.nn.log_softmax(logits.astype(jnp.promote_types(logits.dtype, jnp.float32)), axis=-1)
    picked = jnp.take_along_axis(log_probs, targets[..., None], axis=-1)[..., 0]
    return jnp.where(targets > PAD_ID, picked, 0.0)


def score_targets(model: T5, params, encoder_input_tokens: jax.Array, targets: jax.Array) -> jax.Array:
    """Sum of target log-likelihoods per example (padding excluded): the rank-classification score."""
    logits = model.apply({"params": params}, encoder_input_tokens, shift_right(targets))
    return token_log_likelihoods(logits, targets).sum(axis=-1)


def greedy_decode(model: T5, params, encoder_input_tokens: jax.Array, max_decode_length: int,
                  min_decode_length: int = 0, eos_id: int = EOS_ID) -> jax.Array:
    """Greedy decoding with a key/value cache; returns [batch, max_decode_length] token ids.

    The encoder runs once. Each step feeds one token and reads one row of logits. EOS is forbidden
    before ``min_decode_length`` tokens (as Hugging Face's ``min_new_tokens``); after an example emits
    EOS it emits padding. The output excludes the decoder start token.
    """
    encoded, encoder_mask = model.apply({"params": params}, encoder_input_tokens, method=T5.encode)
    return greedy_decode_encoded(model, params, encoded, encoder_mask, max_decode_length, min_decode_length,
                                 eos_id)


def greedy_decode_encoded(model: T5, params, encoded: jax.Array, encoder_mask: jax.Array, max_decode_length: int,
                          min_decode_length: int = 0, eos_id: int = EOS_ID) -> jax.Array:
    """``greedy_decode`` from an encoder output (a prompted encoder's, for instance)."""
    batch = encoded.shape[0]
    # A full-length call with decode=True creates an empty cache shaped for max_decode_length.
    _, init_vars = model.apply({"params": params}, encoded, encoder_mask,
                               jnp.zeros((batch, max_decode_length), jnp.int32), decode=True,
                               max_decode_length=max_decode_length, method=T5.decode, mutable=["cache"])
    cache = init_vars["cache"]

    def step(carry, position):
        cache, token, done = carry
        logits, new_vars = model.apply({"params": params, "cache": cache}, encoded, encoder_mask,
                                       token[:, None], decode=True, max_decode_length=max_decode_length,
                                       method=T5.decode, mutable=["cache"])
        logits = logits[:, 0, :]
        logits = jnp.where((position < min_decode_length) & (jnp.arange(logits.shape[-1]) == eos_id),
                           -jnp.inf, logits)
        next_token = jnp.argmax(logits, axis=-1).astype(jnp.int32)
        next_token = jnp.where(done, PAD_ID, next_token)
        done = done | (next_token == eos_id)
        return (new_vars["cache"], next_token, done), next_token

    start = jnp.full((batch,), DECODER_START_ID, jnp.int32)
    carry = (cache, start, jnp.zeros((batch,), bool))
    _, tokens = jax.lax.scan(step, carry, jnp.arange(max_decode_length))
    return tokens.T
