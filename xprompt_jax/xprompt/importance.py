"""XPrompt's stage 2 scores: the importance of every prompt token and piece (one backward pass).

Importance (Ma et al. 2022, eqs. 3 and 5) is the expected ABSOLUTE per-example gradient of the loss
with respect to a mask entry, at the current masks:

    I_i  = E_x |dL(x)/d token_mask_i|        I_ij = E_x |dL(x)/d piece_mask_ij|

The absolute value is taken per example, before averaging, so the per-example gradients are needed.
One backward pass gives them all: every example gets its own copy of the masks (batch x m, batch x m x k)
and, because the loss is a sum of per-example losses that each read only their own copy, the gradient
of the sum with respect to copy ``b`` is example ``b``'s gradient. ``pruning`` turns scores into masks.
"""
from __future__ import annotations

from typing import Dict, Iterable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from xprompt_jax import losses, partitioning, train_step
from xprompt_jax.errors import ConfigError
from xprompt_jax.prompts import masks as mask_lib
from xprompt_jax.xprompt.pruning import PIECE, TOKEN, Scores, check_masks


def _abs_grad_sums(model, z_loss, data_sharding, trainable, frozen, masks, batch, valid):
    """Sum over valid examples of |dL(x)/d mask| for one batch, and the number of valid examples."""
    n = batch["encoder_input_tokens"].shape[0]
    copies = {name: jnp.broadcast_to(value, (n,) + value.shape) for name, value in masks.items()}
    if data_sharding is not None:  # one mask copy per example, split over 'data' like the examples
        copies = jax.lax.with_sharding_constraint(copies, data_sharding)

    def total_loss(mask_copies):
        logits = model.logits(trainable, frozen, mask_copies, batch, deterministic=True)
        return losses.per_example_loss(logits, batch["decoder_target_tokens"], batch["decoder_loss_weights"],
                                       z_loss).sum()

    grads = jax.grad(total_loss)(copies)
    keep = valid.astype(bool)

    def summed(g):  # where, not multiply: a padding row's gradient must not leak in, even as NaN
        return jnp.where(keep.reshape((n,) + (1,) * (g.ndim - 1)), jnp.abs(g), 0.0).sum(axis=0)
    sums = {TOKEN: summed(grads[mask_lib.TOKEN_MASK]), PIECE: summed(grads[mask_lib.PIECE_MASK])}
    return sums, keep.sum()


_STEP_CACHE: Dict[tuple, tuple] = {}


def _score_step(model, z_loss: float, shardings: Optional[train_step.Shardings]):
    """The jitted per-batch step, compiled once per (model, z_loss, shardings) and reused across ratios."""
    key = (id(model), float(z_loss), id(shardings))
    hit = _STEP_CACHE.get(key)
    if hit is not None and hit[0] is model and hit[1] is shardings:
        return hit[2]
    if shardings is None:
        jitted = jax.jit(lambda *a: _abs_grad_sums(model, z_loss, None, *a))
        run = jitted
    else:
        mesh = shardings.mesh
        data, rep = partitioning.batch_sharding(mesh), partitioning.replicated(mesh)
        jitted = jax.jit(lambda *a: _abs_grad_sums(model, z_loss, data, *a),
                         in_shardings=(shardings.state.trainable, shardings.frozen, rep, shardings.batch, data),
                         out_shardings=rep)

        def run(trainable, frozen, masks, batch, valid):
            partitioning.check_divisible(valid.shape[0] * jax.process_count(), mesh)
            trainable = jax.device_put(trainable, shardings.state.trainable)  # no-ops when already placed
            frozen = jax.device_put(frozen, shardings.frozen)
            with train_step.mesh_context(shardings):
                return jitted(trainable, frozen, masks, partitioning.global_batch(batch, mesh),
                              partitioning.global_batch({"valid": valid}, mesh)["valid"])
    if len(_STEP_CACHE) >= 8:
        _STEP_CACHE.pop(next(iter(_STEP_CACHE)))
    _STEP_CACHE[key] = (model, shardings, run)
    return run


def _batches_with_valid(batches: Iterable, max_examples: Optional[int]):
    """``(batch, valid)`` pairs, ``valid`` cut so that at most ``max_examples`` valid rows are seen."""
    seen = 0
    for item in batches:
        if not (isinstance(item, tuple) and len(item) == 2):
            raise ConfigError("importance_scores takes (batch, valid) pairs, as trainer eval batches are; "
                              "pass (batch, None) when every row is a real example")
        batch, valid = item
        batch = {k: np.asarray(batch[k]) for k in train_step.BATCH_KEYS}
        n = batch["encoder_input_tokens"].shape[0]
        valid = np.ones(n, bool) if valid is None else np.asarray(valid, bool).reshape(n)
        if max_examples is not None:
            valid = valid & (np.cumsum(valid) <= max_examples - seen)
            if not valid.any():
                return
        seen += int(valid.sum())
        yield batch, valid


def importance_scores(model, trainable, frozen, masks, batches: Iterable, *, z_loss: float = 1e-4,
                      shardings: Optional[train_step.Shardings] = None,
                      max_examples: Optional[int] = None) -> Scores:
    """XPrompt's importance ``{'token': (m,), 'piece': (m, k)}`` over every valid example of ``batches``.

    ``batches`` yields ``(batch, valid)`` pairs: ``batch`` a dict of the four ``train_step.BATCH_KEYS``
    arrays, ``valid`` a (batch,) bool array, False on padding rows (which are often copies of a real
    example, so they must be excluded explicitly, not by their loss), or None when all rows are real.
    ``max_examples`` stops after that many valid examples (default: all; under several processes it
    counts each process's own rows). ``L(x)`` is the training loss of one example (token losses summed,
    with ``z_loss``), dropout off. Scores are at the CURRENT ``masks``: a pruned token keeps a score
    (the sensitivity of bringing it back), so planners only rank survivors.

    With ``shardings`` (from ``train_step.make_shardings``) the pass runs on its mesh, examples split
    over ``data``; ``frozen`` and ``trainable`` should already be placed with those shardings.
    Returns float64 NumPy means (sums are accumulated on the host in float64).
    """
    check_masks(masks)
    dtype = jnp.result_type(float)  # float32, or float64 under jax_enable_x64 (the finite-difference test)
    masks = {name: jnp.asarray(masks[name], dtype) for name in (mask_lib.TOKEN_MASK, mask_lib.PIECE_MASK)}
    step = _score_step(model, z_loss, shardings)
    totals = {TOKEN: 0.0, PIECE: 0.0}
    count = 0
    for batch, valid in _batches_with_valid(batches, max_examples):
        sums, n = jax.device_get(step(trainable, frozen, masks, batch, valid))
        totals = {name: totals[name] + np.asarray(sums[name], np.float64) for name in totals}
        count += int(n)
    if count == 0:
        raise ConfigError("importance_scores saw no valid example: the batches are empty or all padding")
    return {name: np.asarray(total / count, np.float64) for name, total in totals.items()}
