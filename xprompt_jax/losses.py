"""Teacher-forced cross-entropy as T5X computes it, with per-example sums for XPrompt's importance.

``token_losses`` is -log p(target) per position plus T5X's z-loss (``z_loss * log(Z)^2``, which keeps the
softmax normaliser near 1 in bfloat16), zeroed where ``decoder_loss_weights`` is 0. The training loss is
their mean over real target tokens; XPrompt's importance needs ``L(x)`` per example, the sum over one
example's tokens, so both are offered from the same computation.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp


def token_losses(logits, targets, weights, z_loss: float = 1e-4):
    """(batch, length) weighted per-token losses, in float32."""
    logits = logits.astype(jnp.promote_types(logits.dtype, jnp.float32))
    log_z = jax.nn.logsumexp(logits, axis=-1)
    picked = jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
    loss = log_z - picked
    if z_loss:
        loss = loss + z_loss * jnp.square(log_z)
    return loss * weights.astype(loss.dtype)


def per_example_loss(logits, targets, weights, z_loss: float = 1e-4):
    """L(x): the sum of one example's token losses, (batch,)."""
    return token_losses(logits, targets, weights, z_loss).sum(axis=-1)


def mean_token_loss(logits, targets, weights, z_loss: float = 1e-4):
    """The training objective: total loss over the number of real target tokens (at least 1)."""
    total = token_losses(logits, targets, weights, z_loss).sum()
    return total / jnp.maximum(weights.sum(), 1).astype(total.dtype)
