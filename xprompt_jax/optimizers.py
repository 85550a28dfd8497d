"""Optimisers for the trainable pytree only, with Lester et al.'s Adafactor as the default.

``adafactor`` reproduces T5X's Adafactor as prompt tuning configures it: second-moment decay
``1 - (t+1)^-0.8``, no momentum, update clipping at RMS 1, no parameter scaling, the prompt's second
moment kept whole (not factored), and T5X's decoupled weight decay ``p <- (1 - wd) p - lr * u`` (not
scaled by the learning rate, unlike ``optax.adafactor``'s). ``adamw`` is EPT's optimiser. Both take a
schedule and optional global-norm clipping. Masked prompt entries get no update: the training step
multiplies updates by the masks (see ``train_step``), so the optimiser stays mask-agnostic.
"""
from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from xprompt_jax.errors import ConfigError


def decoupled_weight_decay(rate: float) -> optax.GradientTransformation:
    """Add ``-rate * param`` to the update, after the learning rate (T5X Adafactor's decay)."""
    def init_fn(params):
        del params
        return optax.EmptyState()

    def update_fn(updates, state, params=None):
        if params is None:
            raise ValueError("decoupled_weight_decay needs the parameters")
        return jax.tree.map(lambda u, p: u - rate * p, updates, params), state
    return optax.GradientTransformation(init_fn, update_fn)


def learning_rate_schedule(learning_rate: float = 0.3, schedule: str = "constant", warmup_steps: int = 0,
                           total_steps: Optional[int] = None, end_factor: float = 0.0):
    """'constant' (Lester et al.), 'linear' decay to ``end_factor``, 'cosine' or 'rsqrt' (T5 pre-training)."""
    with np.errstate(over="ignore"):  # a rate beyond float32 (1e39) is Inf, said once by the loop's step check,
        learning_rate = float(np.float32(learning_rate))  # not by numpy overflow warnings at every cast
    if schedule == "constant":
        main = optax.constant_schedule(learning_rate)
    elif schedule in ("linear", "cosine"):
        if not total_steps:
            raise ConfigError(f"learning_rate_schedule.schedule={schedule!r} needs total_steps")
        steps = max(total_steps - warmup_steps, 1)
        main = (optax.linear_schedule(learning_rate, learning_rate * end_factor, steps) if schedule == "linear"
                else optax.cosine_decay_schedule(learning_rate, steps, alpha=end_factor))
    elif schedule == "rsqrt":
        offset = max(warmup_steps, 1)
        main = lambda step: learning_rate * jax.lax.rsqrt(jnp.maximum(step + offset, 1.0) / offset)  # noqa: E731
    else:
        raise ConfigError(f"unknown learning_rate_schedule.schedule {schedule!r}; "
                          "choose 'constant', 'linear', 'cosine' or 'rsqrt'")
    if warmup_steps and schedule != "rsqrt":
        return optax.join_schedules([optax.linear_schedule(0.0, learning_rate, warmup_steps), main], [warmup_steps])
    return main


def make_optimizer(name: str = "adafactor", learning_rate=None, decay_rate: float = 0.8,
                   weight_decay: Optional[float] = 1e-5, clipping_threshold: Optional[float] = 1.0,
                   factored: bool = False, multiply_by_parameter_scale: bool = False,
                   b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
                   global_norm_clip: Optional[float] = None) -> optax.GradientTransformation:
    """The run's optimiser. ``learning_rate`` is a float or schedule (default: ``learning_rate_schedule()``)."""
    lr = learning_rate if learning_rate is not None else learning_rate_schedule()
    chain = [optax.clip_by_global_norm(global_norm_clip)] if global_norm_clip else []
    if name == "adafactor":
        chain.append(optax.scale_by_factored_rms(factored=factored, decay_rate=decay_rate, epsilon=1e-30))
        if clipping_threshold is not None:
            chain.append(optax.clip_by_block_rms(clipping_threshold))
        if multiply_by_parameter_scale:
            chain.append(optax.scale_by_param_block_rms(1e-3))
        chain.append(optax.scale_by_learning_rate(lr))
        if weight_decay:
            chain.append(decoupled_weight_decay(weight_decay))
    elif name == "adamw":
        chain.append(optax.adamw(lr, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay or 0.0))
    elif name == "sgd":
        chain.append(optax.sgd(lr))
    else:
        raise ConfigError(f"unknown make_optimizer.name {name!r}; choose 'adafactor', 'adamw' or 'sgd'")
    return optax.chain(*chain)


SCHEDULES = ("constant", "linear", "cosine", "rsqrt")
OPTIMIZERS = ("adafactor", "adamw", "sgd")


def _check_number(value, name: str, *, positive: bool = False, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) \
            or (positive and value <= 0) or value < 0:
        kind = "a positive number" if positive else "a number >= 0"
        raise ConfigError(f"{name} must be {kind}, got {value!r}")


@dataclasses.dataclass(frozen=True)
class LearningRate:
    """The learning-rate schedule as settings (gin ``xprompt_jax.LearningRate``; macro LEARNING_RATE).

    ``schedule()`` builds it; a run records these fields, so a restart with another rate is refused.
    """
    learning_rate: float = 0.3
    schedule: str = "constant"
    warmup_steps: int = 0
    total_steps: Optional[int] = None
    end_factor: float = 0.0

    def __post_init__(self):
        _check_number(self.learning_rate, "LEARNING_RATE (LearningRate.learning_rate)", positive=True)
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"LearningRate.schedule must be one of {list(SCHEDULES)}, got {self.schedule!r}")
        _check_number(self.warmup_steps, "LearningRate.warmup_steps")
        _check_number(self.total_steps, "LearningRate.total_steps", positive=True, allow_none=True)
        _check_number(self.end_factor, "LearningRate.end_factor")

    def build(self):
        return learning_rate_schedule(**dataclasses.asdict(self))


@dataclasses.dataclass(frozen=True)
class Optimizer:
    """The optimiser as settings (gin ``xprompt_jax.Optimizer``); ``build(schedule)`` makes the optax chain."""
    name: str = "adafactor"
    decay_rate: float = 0.8
    weight_decay: Optional[float] = 1e-5
    clipping_threshold: Optional[float] = 1.0
    factored: bool = False
    multiply_by_parameter_scale: bool = False
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    global_norm_clip: Optional[float] = None

    def __post_init__(self):
        if self.name not in OPTIMIZERS:
            raise ConfigError(f"Optimizer.name must be one of {list(OPTIMIZERS)}, got {self.name!r}")
        for field in ("decay_rate", "b1", "b2", "eps"):
            _check_number(getattr(self, field), f"Optimizer.{field}")
        for field in ("weight_decay", "clipping_threshold", "global_norm_clip"):
            _check_number(getattr(self, field), f"Optimizer.{field}", allow_none=True)

    def build(self, learning_rate) -> optax.GradientTransformation:
        return make_optimizer(learning_rate=learning_rate, **dataclasses.asdict(self))
