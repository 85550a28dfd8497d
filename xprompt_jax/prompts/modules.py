"""Flax modules that produce the m x e prompt the encoder sees.

A prompt module knows nothing of training or of T5: it owns its parameters (``params``) and reads the
token and piece masks from the ``masks`` collection, multiplying them in last. Reparameterised prompts
(EPT, P-Tuning, ResPrompt) differ only in how they make the raw matrix, so pruning, export and
evaluation treat every module alike.
"""
from __future__ import annotations

from typing import Callable

import jax.numpy as jnp
from flax import linen as nn

from xprompt_jax.prompts import masks as mask_lib

# Logical axes of prompt parameters: never sharded (a prompt is tiny), always float32.
PROMPT_AXES = ("prompt_length", "prompt_embed")


class MaskedPrompt(nn.Module):
    """Base: subclasses implement ``raw()``; ``__call__`` applies the (possibly per-example) masks."""
    length: int
    width: int
    pieces: int = 16

    def raw(self) -> jnp.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def parameter_masks(self, params, masks):
        """Per parameter, the 1/0 mask of entries that may change under ``masks`` (None: all may).

        The masks act on this module's output, so by default no parameter is masked (EPT, P-Tuning).
        """
        import jax
        return jax.tree.map(lambda _: None, params)

    @nn.compact
    def __call__(self) -> jnp.ndarray:
        mask_lib.check_pieces(self.width, self.pieces)
        token_mask = self.variable(mask_lib.MASK_COLLECTION, mask_lib.TOKEN_MASK, jnp.ones, (self.length,),
                                   jnp.float32)
        piece_mask = self.variable(mask_lib.MASK_COLLECTION, mask_lib.PIECE_MASK, jnp.ones,
                                   (self.length, self.pieces), jnp.float32)
        return mask_lib.apply_masks(self.raw(), token_mask.value, piece_mask.value)


MATRIX = "prompt"  # the parameter name of ``Prompt``'s m x e matrix


class Prompt(MaskedPrompt):
    """Lester et al.'s soft prompt: the m x e matrix itself is the parameter."""
    init_fn: Callable = None

    @nn.compact
    def raw(self) -> jnp.ndarray:
        return self.param(MATRIX, nn.with_logical_partitioning(self.init_fn, PROMPT_AXES),
                          (self.length, self.width))

    def parameter_masks(self, params, masks):
        """The matrix is the output: a pruned entry gets no update (so it stays at zero)."""
        return {MATRIX: matrix_mask(params[MATRIX], masks)}


def matrix_mask(matrix, masks):
    """The dense m x e 1/0 mask of ``masks`` for a prompt matrix, in its dtype."""
    return mask_lib.dense_mask(masks[mask_lib.TOKEN_MASK], masks[mask_lib.PIECE_MASK],
                               matrix.shape[-1]).astype(matrix.dtype)
