"""The EPT paper's prompt diagnostics, computed on the materialised m x e prompt inside the train step.

The paper tracks (its eq. 4) the average L2 norm of the prompt tokens, mu_t = (1/m) sum_i ||P_i||, and
the cosine similarity between prompt tokens (its Figure 3): reparameterised prompts grow large norms
and become nearly parallel. ``prompt_metrics`` returns them as scalars for the step's metrics dict,
which the trainer writes to TensorBoard every ``log_period`` steps:

    prompt_token_norm_mean / _max / _min   over the surviving tokens (pruned, all-zero rows left out)
    prompt_token_norm/<i>                  per token, for prompts of at most ``PER_TOKEN_LIMIT`` tokens
    prompt_cosine_similarity               mean over pairs i < j of surviving tokens (absent for m = 1)

For an unpruned prompt, ``prompt_token_norm_mean`` is the paper's mu_t exactly.
"""
from __future__ import annotations

from typing import Dict

import jax.numpy as jnp

PER_TOKEN_LIMIT = 20


def token_norms(prompt: jnp.ndarray) -> jnp.ndarray:
    """||P_i||_2 of every row of an (m, e) prompt."""
    prompt = prompt.astype(jnp.float32)
    return jnp.sqrt(jnp.sum(prompt * prompt, axis=-1))


def cosine_matrix(prompt: jnp.ndarray) -> jnp.ndarray:
    """(m, m) cosine similarities between rows (0 where a row is all zero)."""
    prompt = prompt.astype(jnp.float32)
    norms = token_norms(prompt)
    unit = prompt / jnp.where(norms > 0, norms, 1.0)[:, None]
    return jnp.dot(unit, unit.T, precision="highest")


def mean_pairwise_cosine(prompt: jnp.ndarray) -> jnp.ndarray:
    """Mean cosine similarity over the pairs i < j of non-zero rows (0 when there is no such pair)."""
    m = prompt.shape[0]
    alive = (token_norms(prompt) > 0).astype(jnp.float32)
    pairs = jnp.triu(jnp.ones((m, m), jnp.float32), k=1) * alive[:, None] * alive[None, :]
    return jnp.sum(cosine_matrix(prompt) * pairs) / jnp.maximum(jnp.sum(pairs), 1.0)


def prompt_metrics(prompt: jnp.ndarray, per_token_limit: int = PER_TOKEN_LIMIT) -> Dict[str, jnp.ndarray]:
    """The scalars above for one (m, e) prompt (jit-friendly)."""
    if prompt.ndim != 2:
        raise ValueError(f"prompt_metrics takes one (length, width) prompt, got shape {prompt.shape}")
    norms = token_norms(prompt)
    alive = norms > 0
    count = jnp.maximum(alive.sum(), 1)
    metrics = {"prompt_token_norm_mean": jnp.sum(norms) / count,
               "prompt_token_norm_max": jnp.max(norms),
               "prompt_token_norm_min": jnp.where(alive.any(), jnp.min(jnp.where(alive, norms, jnp.inf)), 0.0)}
    if prompt.shape[0] > 1:
        metrics["prompt_cosine_similarity"] = mean_pairwise_cosine(prompt)
    if prompt.shape[0] <= per_token_limit:
        width = len(str(prompt.shape[0] - 1))
        metrics.update({f"prompt_token_norm/{i:0{width}d}": norms[i] for i in range(prompt.shape[0])})
    return metrics
