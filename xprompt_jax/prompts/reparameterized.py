"""Reparameterised prompts: a small network whose output is the m x e prompt the encoder sees.

Every module here is a ``MaskedPrompt``: it implements ``raw()`` and inherits the token and piece
masks, so XPrompt's masks, export (``PromptedT5.prompt`` -> ``.npy`` / PEFT adapter) and evaluation
treat it exactly like Lester et al.'s matrix. After training the network is discarded: only its
output, the materialised prompt, is stored and evaluated.

    EPTPrompt        EPT (explosive prompt tuning): one vector p (e) -> p W_down (e x r) W_up (r x e).
                     No bias, no non-linearity, no norm, no residual. The output is broadcast to
                     ``length`` copies: length 1 is EPT, length n (10) is EPT*. Trainable: e + 2er.
    PTuningPrompt    P-Tuning (Liu et al. 2021) as Hugging Face PEFT's PromptEncoder builds it:
                     m embeddings through an MLP of 3 linear layers (e->h, h->h, h->e, ReLU between,
                     biases) or through a bidirectional LSTM (h per direction, ``lstm_layers`` deep)
                     then an MLP head (2h->2h, ReLU, 2h->e). h defaults to e.
    ResPrompt        Residual prompt tuning (Razdaibiedina et al. 2023): p + LayerNorm(W_up ReLU(W_down p)),
                     bottleneck h = 400. One MLP shared by the m tokens (the residual-prompt-tuning
                     code's default, and the count the EPT paper's table reports: 624K for T5-base),
                     or one MLP per token (``separate=True``).

Linear layers start as PyTorch's ``nn.Linear`` does (U[-1/sqrt(fan_in), 1/sqrt(fan_in)] for kernels
and biases), since the papers' code is PyTorch; the prompt embeddings start from the run's
``PromptSpec.init`` (EPT's paper: uniform [-0.5, 0.5]). ``parameter_count`` gives each method's
trainable count in closed form. Their ``parameter_masks`` is the base class's (no parameter masked):
XPrompt's masks act on their output, and only a plain ``Prompt`` masks its matrix's updates.
"""
from __future__ import annotations

import math
from typing import Callable, Optional

import jax
import jax.numpy as jnp
from flax import linen as nn

from xprompt_jax.errors import ConfigError
from xprompt_jax.prompts.modules import PROMPT_AXES, MaskedPrompt

HIDDEN = "prompt_hidden"   # logical axis of a reparameterisation's hidden units (replicated)
EMBED, LENGTH = PROMPT_AXES[1], PROMPT_AXES[0]
HIGHEST = jax.lax.Precision.HIGHEST
RESPROMPT_HIDDEN = 400
LAYER_NORM_EPS = 1e-5      # torch.nn.LayerNorm's default


def torch_uniform(fan_in: int):
    """PyTorch ``nn.Linear``'s initialiser for both weight and bias: U[-1/sqrt(fan_in), 1/sqrt(fan_in)]."""
    bound = 1.0 / math.sqrt(fan_in)

    def init(rng, shape, dtype=jnp.float32):
        return jax.random.uniform(rng, tuple(shape), dtype, -bound, bound)
    return init


class Linear(nn.Module):
    """x @ kernel (+ bias), float32 at full precision. ``groups``: one independent layer per prompt token.

    Logical axes: a kernel's two dimensions need different names, so a hidden -> hidden kernel leaves its
    input dimension unnamed (``in_axis=None``); all of them are replicated anyway.
    """
    features: int
    use_bias: bool = True
    in_axis: Optional[str] = EMBED
    out_axis: str = HIDDEN
    groups: Optional[int] = None

    @nn.compact
    def __call__(self, x):
        fan_in = x.shape[-1]
        init = torch_uniform(fan_in)
        lead = () if self.groups is None else (self.groups,)
        lead_axes = () if self.groups is None else (LENGTH,)
        kernel = self.param("kernel", nn.with_logical_partitioning(init, lead_axes + (self.in_axis, self.out_axis)),
                            lead + (fan_in, self.features))
        if self.groups is None:
            y = jnp.dot(x, kernel, precision=HIGHEST)
        else:
            y = jnp.einsum("mi,mio->mo", x, kernel, precision=HIGHEST)
        if self.use_bias:
            y = y + self.param("bias", nn.with_logical_partitioning(init, lead_axes + (self.out_axis,)),
                               lead + (self.features,))
        return y


class LayerNorm(nn.Module):
    """torch.nn.LayerNorm over the last axis (scale and bias; per token when ``groups``)."""
    groups: Optional[int] = None

    @nn.compact
    def __call__(self, x):
        lead = () if self.groups is None else (self.groups,)
        lead_axes = () if self.groups is None else (LENGTH,)
        width = x.shape[-1]
        scale = self.param("scale", nn.with_logical_partitioning(nn.initializers.ones, lead_axes + (EMBED,)),
                           lead + (width,))
        bias = self.param("bias", nn.with_logical_partitioning(nn.initializers.zeros, lead_axes + (EMBED,)),
                          lead + (width,))
        mean = x.mean(-1, keepdims=True)
        var = jnp.square(x - mean).mean(-1, keepdims=True)
        return (x - mean) * jax.lax.rsqrt(var + LAYER_NORM_EPS) * scale + bias


def _embedding(module: nn.Module, rows: int, init_fn: Callable):
    if init_fn is None:
        raise ConfigError(f"{type(module).__name__} needs init_fn (built from PromptSpec.init)")
    return module.param("embedding", nn.with_logical_partitioning(init_fn, PROMPT_AXES), (rows, module.width))


class EPTPrompt(MaskedPrompt):
    """EPT / EPT*: one vector through an underparameterised linear bottleneck, broadcast to ``length`` rows."""
    rank: int = 1
    init_fn: Callable = None

    def __post_init__(self):
        check_ept(self.rank, self.width, self.length)
        super().__post_init__()

    @nn.compact
    def raw(self) -> jnp.ndarray:
        vector = _embedding(self, 1, self.init_fn)                                  # (1, e)
        hidden = Linear(self.rank, use_bias=False, in_axis=EMBED, out_axis=HIDDEN, name="down")(vector)
        out = Linear(self.width, use_bias=False, in_axis=HIDDEN, out_axis=EMBED, name="up")(hidden)
        return jnp.broadcast_to(out, (self.length, self.width))


class PTuningPrompt(MaskedPrompt):
    """P-Tuning's prompt encoder (PEFT's ``PromptEncoder``): 'mlp' or 'lstm' then an MLP head."""
    encoder: str = "mlp"
    hidden: Optional[int] = None
    lstm_layers: int = 2
    init_fn: Callable = None

    def __post_init__(self):
        check_ptuning(self.encoder, self.hidden, self.lstm_layers)
        super().__post_init__()

    @nn.compact
    def raw(self) -> jnp.ndarray:
        x = _embedding(self, self.length, self.init_fn)                             # (m, e)
        h = self.hidden or self.width
        if self.encoder == "mlp":
            x = nn.relu(Linear(h, in_axis=EMBED, out_axis=HIDDEN, name="mlp_0")(x))
            x = nn.relu(Linear(h, in_axis=None, out_axis=HIDDEN, name="mlp_1")(x))
            return Linear(self.width, in_axis=HIDDEN, out_axis=EMBED, name="mlp_2")(x)
        for layer in range(self.lstm_layers):
            in_axis = EMBED if layer == 0 else None
            forward = LSTM(h, in_axis, name=f"lstm_{layer}_forward")(x)
            backward = LSTM(h, in_axis, name=f"lstm_{layer}_backward")(x[::-1])[::-1]
            x = jnp.concatenate([forward, backward], axis=-1)                      # (m, 2h)
        x = nn.relu(Linear(2 * h, in_axis=None, out_axis=HIDDEN, name="mlp_0")(x))
        return Linear(self.width, in_axis=HIDDEN, out_axis=EMBED, name="mlp_1")(x)


class LSTM(nn.Module):
    """One direction of one LSTM layer over the prompt positions (gates i, f, g, o as in PyTorch).

    One bias per gate (PyTorch's b_ih + b_hh are one bias in two pieces); zero initial state.
    """
    hidden: int
    in_axis: Optional[str] = EMBED

    @nn.compact
    def __call__(self, x):
        h = self.hidden
        init = torch_uniform(h)
        wi = self.param("input_kernel", nn.with_logical_partitioning(init, (self.in_axis, HIDDEN)),
                        (x.shape[-1], 4 * h))
        wh = self.param("hidden_kernel", nn.with_logical_partitioning(init, (None, HIDDEN)), (h, 4 * h))
        b = self.param("bias", nn.with_logical_partitioning(init, (HIDDEN,)), (4 * h,))
        projected = jnp.dot(x, wi, precision=HIGHEST) + b

        def cell(carry, xw):
            c, hid = carry
            gates = xw + jnp.dot(hid, wh, precision=HIGHEST)
            i, f, g, o = jnp.split(gates, 4)
            c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
            hid = jax.nn.sigmoid(o) * jnp.tanh(c)
            return (c, hid), hid
        zeros = jnp.zeros((h,), x.dtype)
        _, out = jax.lax.scan(cell, (zeros, zeros), projected)
        return out


class ResPrompt(MaskedPrompt):
    """Residual prompt tuning: p + LayerNorm(up(ReLU(down(p)))), shared or per-token bottleneck MLP."""
    hidden: int = RESPROMPT_HIDDEN
    separate: bool = False
    init_fn: Callable = None

    def __post_init__(self):
        if self.hidden < 1:
            raise ConfigError(f"ResPrompt's bottleneck (PromptSpec.hidden) must be at least 1, got {self.hidden}")
        super().__post_init__()

    @nn.compact
    def raw(self) -> jnp.ndarray:
        x = _embedding(self, self.length, self.init_fn)                             # (m, e)
        groups = self.length if self.separate else None
        y = nn.relu(Linear(self.hidden, in_axis=EMBED, out_axis=HIDDEN, groups=groups, name="down")(x))
        y = Linear(self.width, in_axis=HIDDEN, out_axis=EMBED, groups=groups, name="up")(y)
        return x + LayerNorm(groups=groups, name="layer_norm")(y)


# ------------------------------------------------------------------------------------------------
# Checks and closed-form parameter counts
# ------------------------------------------------------------------------------------------------
PTUNING_ENCODERS = ("mlp", "lstm")


def check_ept(rank: int, width: Optional[int], copies: int):
    """1 <= r < e (``width=None``: e not known yet) and n >= 1 copies."""
    if rank < 1 or (width is not None and rank >= width):
        bound = f"1 <= r < e = {width} (the model width)" if width is not None else "r >= 1"
        raise ConfigError(f"EPT's rank r (PromptSpec.rank) must satisfy {bound}: the bottleneck must be "
                          f"underparameterised; got r = {rank}")
    if copies < 1:
        raise ConfigError(f"EPT* needs at least one copy of its prompt (PromptSpec.length = n >= 1), got {copies}")


def check_ptuning(encoder: str, hidden: Optional[int], lstm_layers: int):
    if encoder not in PTUNING_ENCODERS:
        raise ConfigError(f"unknown P-Tuning encoder (PromptSpec.ptuning_encoder) {encoder!r}; "
                          f"choose one of {list(PTUNING_ENCODERS)}")
    if hidden is not None and hidden < 1:
        raise ConfigError(f"P-Tuning's hidden size (PromptSpec.hidden) must be at least 1, got {hidden}")
    if encoder == "lstm" and lstm_layers < 1:
        raise ConfigError(f"P-Tuning's LSTM needs at least one layer (PromptSpec.lstm_layers), got {lstm_layers}")


def ept_parameters(width: int, rank: int = 1) -> int:
    """e (the vector) + e r (down) + r e (up): 3e for r = 1."""
    return width + 2 * width * rank


def ptuning_parameters(length: int, width: int, hidden: Optional[int] = None, encoder: str = "mlp",
                       lstm_layers: int = 2) -> int:
    h = hidden or width
    embedding = length * width
    if encoder == "mlp":
        return embedding + (width * h + h) + (h * h + h) + (h * width + width)
    lstm = 0
    for layer in range(lstm_layers):
        inputs = width if layer == 0 else 2 * h
        lstm += 2 * 4 * h * (inputs + h + 1)
    return embedding + lstm + (2 * h * 2 * h + 2 * h) + (2 * h * width + width)


def resprompt_parameters(length: int, width: int, hidden: int = RESPROMPT_HIDDEN, separate: bool = False) -> int:
    mlp = (width * hidden + hidden) + (hidden * width + width) + 2 * width
    return length * width + (length if separate else 1) * mlp
