"""Token and piece masks: the collection XPrompt prunes and the training step multiplies in.

A prompt P (m x e) is seen by the model as ``P * token_mask[:, None] * piece_mask expanded to e``:
token ``i`` is dropped by ``token_mask[i] = 0``, and piece ``j`` of token ``i`` (columns
``j*e/k .. (j+1)*e/k``) by ``piece_mask[i, j] = 0``. The masks live in the Flax collection ``masks``, not in
``params``: the optimiser never sees them, and ``jax.grad`` with respect to them gives XPrompt's
importance scores. Masks may carry leading batch dimensions (one copy per example), in which case the
masked prompt carries them too; that is how one backward pass yields per-example gradients.
"""
from __future__ import annotations

from typing import Dict

import jax.numpy as jnp
import numpy as np

from xprompt_jax.errors import ConfigError

MASK_COLLECTION = "masks"
TOKEN_MASK = "token_mask"
PIECE_MASK = "piece_mask"


def check_pieces(width: int, pieces: int) -> int:
    """The width of one piece; a clear error when ``pieces`` does not divide ``width``."""
    if pieces < 1 or width % pieces:
        divisors = [d for d in range(1, min(width, 64) + 1) if width % d == 0]
        raise ConfigError(f"prompt pieces per token k={pieces} must divide the prompt width e={width}; "
                          f"choose one of {divisors} (set PromptSpec.pieces)")
    return width // pieces


def ones(length: int, pieces: int) -> Dict[str, jnp.ndarray]:
    """The unpruned masks: every token and piece kept."""
    return {TOKEN_MASK: jnp.ones((length,), jnp.float32), PIECE_MASK: jnp.ones((length, pieces), jnp.float32)}


def dense_mask(token_mask, piece_mask, width: int):
    """The (..., m, e) 0/1 matrix the prompt is multiplied by; leading batch dims broadcast."""
    pieces = piece_mask.shape[-1]
    piece_width = check_pieces(width, pieces)
    combined = jnp.asarray(token_mask)[..., :, None] * jnp.asarray(piece_mask)  # (..., m, k)
    return jnp.repeat(combined, piece_width, axis=-1)


def apply_masks(prompt, token_mask, piece_mask):
    """``prompt`` (m x e) times its masks; the result has the masks' batch dims, if any."""
    return prompt * dense_mask(token_mask, piece_mask, prompt.shape[-1]).astype(prompt.dtype)


def surviving_tokens(token_mask, piece_mask) -> int:
    """Tokens that keep at least one piece: a token whose pieces are all pruned is pruned, whatever its
    token mask says (XPrompt's table counts as the masks act)."""
    token = np.asarray(token_mask) > 0
    pieces = np.asarray(piece_mask).reshape(token.shape[0], -1) > 0
    return int((token & pieces.any(axis=1)).sum())


def surviving_parameters(token_mask, piece_mask, width: int) -> int:
    """How many prompt scalars survive (XPrompt's parameter count)."""
    return int(jnp.sum(dense_mask(token_mask, piece_mask, width)))
