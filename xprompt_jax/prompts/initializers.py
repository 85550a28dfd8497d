"""Prompt initialisers: small ``(rng, shape) -> array`` closures, as in google-research/prompt-tuning.

Lester et al. compare random uniform, sampled vocabulary and class-label initialisation; a prompt can
also start from a saved ``.npy`` or from another run (XPrompt Transfer, domain transfer). Every
initialiser returns float32: the prompt stays float32 even when the frozen model is bfloat16.
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from xprompt_jax.errors import ConfigError

Initializer = Callable[[jax.Array, Sequence[int]], jax.Array]

# Ids below this are PAD, EOS and UNK in the T5 vocabulary: never sampled as "common words".
FIRST_WORD_ID = 3


def uniform(scale: float = 0.5) -> Initializer:
    """U[-scale, scale] (the paper's random init uses 0.5)."""
    def init(rng, shape):
        return jax.random.uniform(rng, tuple(shape), jnp.float32, -scale, scale)
    return init


def sampled_vocabulary(embedding, population_size: int = 5000, vocab_pieces: Optional[int] = None) -> Initializer:
    """Rows of the frozen embedding table, drawn from the ``population_size`` most common pieces.

    SentencePiece ids are ordered by frequency, so the most common pieces are the first ids after
    the special ones. Drawn without replacement when the prompt is no longer than the population.
    ``vocab_pieces``: the vocabulary's real ids (ByT5's 259 of 384 embedding rows; mT5's 250,000 pieces of
    250,112): rows past them are padding the model never saw, and are not drawn.
    """
    embedding = jnp.asarray(embedding)
    rows_in_use = min(embedding.shape[0], vocab_pieces or embedding.shape[0])

    def init(rng, shape):
        length, width = tuple(shape)
        _check_width(embedding, width)
        population = min(population_size, rows_in_use - FIRST_WORD_ID)
        rows = FIRST_WORD_ID + jax.random.choice(rng, population, (length,), replace=length > population)
        return jnp.take(embedding, rows, axis=0).astype(jnp.float32)
    return init


def class_labels(embedding, label_token_ids: Sequence[Sequence[int]],
                 fallback: Optional[Initializer] = None) -> Initializer:
    """Row i = mean embedding of label i's pieces (EOS and padding excluded); the rest from ``fallback``.

    With more labels than prompt rows the first m labels are used. ``fallback`` defaults to sampled
    vocabulary, as in the paper.
    """
    embedding = jnp.asarray(embedding)
    fallback = fallback or sampled_vocabulary(embedding)
    label_rows = []
    for i, ids in enumerate(label_token_ids):
        ids = [t for t in ids if t > 1]
        if not ids:
            raise ConfigError(f"class label {i} has no word pieces to embed; check the task's label names")
        label_rows.append(jnp.take(embedding, jnp.asarray(ids), axis=0).astype(jnp.float32).mean(axis=0))

    def init(rng, shape):
        length, width = tuple(shape)
        _check_width(embedding, width)
        rows = jnp.stack(label_rows[:length]) if label_rows else jnp.zeros((0, width), jnp.float32)
        if rows.shape[0] == length:
            return rows
        return jnp.concatenate([rows, fallback(rng, (length - rows.shape[0], width))], axis=0)
    return init


def from_array(values, source: str = "array") -> Initializer:
    """A fixed prompt (loaded from a file or another run); its shape must equal the requested one."""
    values = np.asarray(values, np.float32)

    def init(rng, shape):
        del rng
        if tuple(values.shape) != tuple(shape):
            raise ConfigError(f"the prompt in {source} has shape {tuple(values.shape)} but this run's prompt is "
                              f"{tuple(shape)} (PromptSpec.length x model emb_dim); use a matching length")
        return jnp.asarray(values)
    return init


def _check_width(embedding, width):
    if embedding.shape[-1] != width:
        raise ConfigError(f"the embedding table is {embedding.shape[-1]} wide but the prompt is {width} wide")
