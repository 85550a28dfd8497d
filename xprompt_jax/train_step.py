"""The train state, the masked optimiser update and the jitted, sharded train step.

One step maps (state, frozen params, batch) -> (state, metrics). Only ``state.trainable`` is
differentiated and has optimiser state; the frozen T5 weights are an argument, never an output, so
they are never copied, updated or re-saved. The step is compiled once with ``jax.jit`` and explicit
``in_shardings``/``out_shardings`` derived from the mesh and the logical-axis rules: on one CPU, one GPU
or a pod slice it is the same function. Gradient accumulation runs the micro-batches in a ``lax.scan``
and divides by the total number of target tokens, so it equals one large batch exactly.
"""
from __future__ import annotations

import contextlib
import dataclasses
from typing import Any, Callable, Dict, Optional

import jax
import jax.numpy as jnp
import optax
from flax import linen as nn
from flax import struct

from xprompt_jax import diagnostics, losses, partitioning
from xprompt_jax.errors import ConfigError
from xprompt_jax.prompted import PROMPT, T5_WEIGHTS, PromptedT5

BATCH_KEYS = ("encoder_input_tokens", "decoder_input_tokens", "decoder_target_tokens", "decoder_loss_weights")


@struct.dataclass
class TrainState:
    """Everything a run checkpoints (the frozen model is not part of it)."""
    step: jax.Array
    trainable: Any
    opt_state: Any
    masks: Any
    rng: jax.Array


def create_state(model: PromptedT5, optimizer: optax.GradientTransformation, rng, trainable=None, masks=None):
    init_rng, state_rng = jax.random.split(rng)
    fresh_trainable, fresh_masks = model.init(init_rng)
    trainable = fresh_trainable if trainable is None else trainable
    masks = fresh_masks if masks is None else masks
    trainable = zero_masked(model, trainable, masks)
    return TrainState(step=jnp.zeros((), jnp.int32), trainable=trainable, opt_state=optimizer.init(trainable),
                      masks=masks, rng=state_rng)


def zero_masked(model: PromptedT5, trainable, masks):
    """Pruned prompt entries set to exactly zero (they then stay zero: they get no update)."""
    mask = model.update_mask(trainable, masks)
    return jax.tree.map(lambda p, m: p if m is None else p * m, trainable, mask,
                        is_leaf=lambda x: x is None)


def _apply_update_mask(updates, mask):
    return jax.tree.map(lambda u, m: u if m is None else u * m, updates, mask, is_leaf=lambda x: x is None)


def loss_and_grads(model: PromptedT5, trainable, frozen, masks, batch, rng, z_loss: float, dropout: bool):
    """Sum of token losses, its gradient w.r.t. ``trainable``, and the number of target tokens."""
    def total_loss(params):
        rngs = {"dropout": rng} if dropout else None
        logits = model.logits(params, frozen, masks, batch, deterministic=not dropout, rngs=rngs)
        token = losses.token_losses(logits, batch["decoder_target_tokens"], batch["decoder_loss_weights"], z_loss)
        correct = (jnp.argmax(logits, -1) == batch["decoder_target_tokens"]) * batch["decoder_loss_weights"]
        return token.sum(), correct.sum()
    (loss, correct), grads = jax.value_and_grad(total_loss, has_aux=True)(trainable)
    return loss, grads, batch["decoder_loss_weights"].sum(), correct


def all_finite(*trees) -> jax.Array:
    """True when every value in ``trees`` is finite (no NaN, no Inf)."""
    leaves = [leaf for tree in trees for leaf in jax.tree.leaves(tree)]
    return jnp.all(jnp.stack([jnp.isfinite(leaf).all() for leaf in leaves]))


def make_train_step(model: PromptedT5, optimizer: optax.GradientTransformation, z_loss: float = 1e-4,
                    accumulation_steps: int = 1, dropout: bool = False,
                    learning_rate_fn: Optional[Callable] = None):
    """The un-jitted step ``(state, frozen, batch) -> (state, metrics)``."""

    def step_fn(state: TrainState, frozen, batch: Dict[str, jax.Array]):
        rng = jax.random.fold_in(state.rng, state.step)
        if accumulation_steps == 1:
            loss, grads, tokens, correct = loss_and_grads(model, state.trainable, frozen, state.masks, batch, rng,
                                                          z_loss, dropout)
        else:
            micro = jax.tree.map(lambda x: x.reshape((accumulation_steps, -1) + x.shape[1:]), batch)
            zeros = jax.tree.map(jnp.zeros_like, state.trainable)

            def body(carry, inputs):
                index, mb = inputs
                out = loss_and_grads(model, state.trainable, frozen, state.masks, mb,
                                     jax.random.fold_in(rng, index), z_loss, dropout)
                return jax.tree.map(jnp.add, carry, out), None
            init = (jnp.zeros((), jnp.float32), zeros, jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32))
            (loss, grads, tokens, correct), _ = jax.lax.scan(body, init, (jnp.arange(accumulation_steps), micro))
        denom = jnp.maximum(tokens, 1).astype(jnp.float32)
        grads = jax.tree.map(lambda g: g / denom.astype(g.dtype), grads)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.trainable)
        updates = _apply_update_mask(updates, model.update_mask(state.trainable, state.masks))
        trainable = optax.apply_updates(state.trainable, updates)
        metrics = {"loss": loss / denom, "token_accuracy": correct / denom,
                   "grad_norm": optax.global_norm(grads)}
        if PROMPT in trainable:
            metrics["prompt_norm"] = optax.global_norm(trainable[PROMPT])
            prompt = model.prompt(trainable, state.masks)  # the materialised m x e prompt the encoder sees
            if prompt is not None and prompt.ndim == 2:
                metrics.update(diagnostics.prompt_metrics(prompt))
        if learning_rate_fn is not None:
            metrics["learning_rate"] = jnp.asarray(learning_rate_fn(state.step), jnp.float32)
        new_state = state.replace(step=state.step + 1, trainable=trainable, opt_state=opt_state)
        # A non-finite loss or update leaves the state as it was: the loop stops on ``finite`` == False,
        # and what it then saves or exports is the last good state, never a NaN prompt.
        finite = all_finite(loss, updates)
        metrics["finite"] = finite
        return jax.tree.map(lambda new, old: jnp.where(finite, new, old), new_state, state), metrics

    return step_fn


@dataclasses.dataclass
class Shardings:
    """Where the state, the frozen weights and a batch live on the mesh."""
    mesh: jax.sharding.Mesh
    rules: tuple
    state: Any
    frozen: Any
    batch: Any


def state_shardings(model: PromptedT5, optimizer, state_shapes: TrainState, mesh, rules, frozen_logical=None):
    """Shardings of every state leaf: trainable by its logical axes, optimiser state like its parameter."""
    trainable_logical = dict(model.logical_axes())
    if T5_WEIGHTS in state_shapes.trainable:
        if frozen_logical is None:
            raise ConfigError("full fine-tuning needs the T5 logical axes")
        trainable_logical[T5_WEIGHTS] = frozen_logical
    trainable_sh = partitioning.logical_to_sharding(trainable_logical, mesh, rules)
    replicated = partitioning.replicated(mesh)

    def like_param(state_leaf, param_leaf, sharding):
        return sharding if getattr(state_leaf, "shape", None) == param_leaf.shape else replicated
    opt_sh = optax.tree_map_params(optimizer, like_param, state_shapes.opt_state, state_shapes.trainable,
                                   trainable_sh, transform_non_params=lambda _: replicated)
    return TrainState(step=replicated, trainable=trainable_sh, opt_state=opt_sh,
                      masks=jax.tree.map(lambda _: replicated, state_shapes.masks), rng=replicated)


def make_shardings(model: PromptedT5, optimizer, state_shapes: TrainState, mesh, frozen_logical,
                   rules=partitioning.DEFAULT_RULES) -> Shardings:
    # Full fine-tuning moves the T5 weights into the trainable tree; the frozen tree is then empty.
    frozen = {} if T5_WEIGHTS in state_shapes.trainable else partitioning.logical_to_sharding(frozen_logical, mesh, rules)
    state = state_shardings(model, optimizer, state_shapes, mesh, rules, frozen_logical)
    batch = {k: partitioning.batch_sharding(mesh) for k in BATCH_KEYS}
    return Shardings(mesh, tuple(rules), state, frozen, batch)


@contextlib.contextmanager
def mesh_context(shardings: Shardings):
    """Mesh and logical-axis rules in scope, so the model's activation constraints take effect."""
    set_mesh = getattr(jax, "set_mesh", None) or getattr(jax.sharding, "use_mesh", None)
    mesh_scope = set_mesh(shardings.mesh) if set_mesh else shardings.mesh
    with mesh_scope, nn.logical_axis_rules(list(shardings.rules)):
        yield


def jit_train_step(step_fn, shardings: Shardings, donate: bool = True):
    """Compile ``step_fn`` with explicit shardings; the state buffer is donated (updated in place)."""
    jitted = jax.jit(step_fn, in_shardings=(shardings.state, shardings.frozen, shardings.batch),
                     out_shardings=(shardings.state, partitioning.replicated(shardings.mesh)),
                     donate_argnums=(0,) if donate else ())

    def run(state, frozen, batch):
        with mesh_context(shardings):
            return jitted(state, frozen, batch)
    run.lower = lambda *a: _lower(jitted, shardings, *a)  # for the benchmark's compile timing
    return run


def _lower(jitted, shardings, *args):
    with mesh_context(shardings):
        return jitted.lower(*args)
