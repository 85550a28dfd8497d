"""Where the prompt goes in the encoder input, as small functions (after google-research/prompt-tuning).

Each takes the prompt (batch, m, e), the token embeddings (batch, L, e) and the input tokens
(batch, L), and returns the combined embeddings (batch, m + L, e) and their attention mask. Prompt
positions always count as real tokens, pruned or not: XPrompt zeroes a pruned row, it does not hide it.
"""
from __future__ import annotations

from typing import Callable, Dict, Tuple

import jax.numpy as jnp

from xprompt_jax.errors import ConfigError

Combine = Callable[..., Tuple[jnp.ndarray, jnp.ndarray]]


def _insert_at(prompt, embedded, tokens, position):
    """Insert the prompt before index ``position`` (batch,) of every example."""
    batch, m = prompt.shape[0], prompt.shape[1]
    length = embedded.shape[1]
    out = jnp.arange(m + length)[None, :]                       # (1, m + L)
    pos = position[:, None]
    in_prompt = (out >= pos) & (out < pos + m)
    token_index = jnp.where(out < pos, out, out - m).clip(0, length - 1)
    prompt_index = (out - pos).clip(0, m - 1)
    take_tokens = jnp.take_along_axis(embedded, jnp.broadcast_to(token_index, (batch, m + length))[..., None], 1)
    take_prompt = jnp.take_along_axis(prompt, jnp.broadcast_to(prompt_index, (batch, m + length))[..., None], 1)
    combined = jnp.where(in_prompt[..., None], take_prompt.astype(embedded.dtype), take_tokens)
    token_real = jnp.take_along_axis(tokens > 0, jnp.broadcast_to(token_index, (batch, m + length)), 1)
    return combined, jnp.where(in_prompt, True, token_real)


def prefix(prompt, embedded, tokens):
    """[P; X]: Lester et al.'s placement, and the default."""
    mask = jnp.concatenate([jnp.ones(prompt.shape[:2], bool), tokens > 0], axis=1)
    return jnp.concatenate([prompt.astype(embedded.dtype), embedded], axis=1), mask


def after_first_token(prompt, embedded, tokens):
    """[x_0; P; x_1 ...]: keeps a leading task token (or sentinel) first."""
    return _insert_at(prompt, embedded, tokens, jnp.ones((tokens.shape[0],), jnp.int32))


def before_eos(prompt, embedded, tokens):
    """[X without EOS; P; EOS]: the prompt right before each example's final token."""
    length = (tokens > 0).sum(axis=1)
    return _insert_at(prompt, embedded, tokens, jnp.maximum(length - 1, 0).astype(jnp.int32))


COMBINE_FUNCTIONS: Dict[str, Combine] = {
    "prefix": prefix, "after_first_token": after_first_token, "before_eos": before_eos}


def get_combine(name: str) -> Combine:
    if name not in COMBINE_FUNCTIONS:
        raise ConfigError(f"unknown prompt placement {name!r}; choose one of {sorted(COMBINE_FUNCTIONS)} "
                          "(PromptSpec.combine)")
    return COMBINE_FUNCTIONS[name]
