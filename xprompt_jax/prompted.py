"""A frozen T5 with a prompt module in front: the model every method here trains and evaluates.

Three separate pytrees go in: ``trainable`` (``{'prompt': ...}`` — the prompt module's parameters),
``frozen`` (the T5 parameters, never differentiated) and ``masks`` (the token and piece masks XPrompt
prunes). A prompt spec (a ``PromptSpecBase`` made by ``make_spec(kind=..., ...)``, one class per kind in
``prompts/kinds/``; gin: ``PromptSpec.length`` etc.) says which prompt, how it starts and where it goes; ``build_prompted_t5``
turns it into a ``PromptedT5`` for a model config and its frozen weights.
"""
from __future__ import annotations

from typing import Optional, Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn

from xprompt_jax.errors import ConfigError
from xprompt_jax.models.config import T5Config
from xprompt_jax.models.t5 import T5
from xprompt_jax.prompts import combine as combine_lib
from xprompt_jax.prompts import initializers
from xprompt_jax.prompts.kinds import PromptSpecBase, make_spec
from xprompt_jax.prompts.modules import Prompt

PROMPT = "prompt"
# The trainable-tree entry of T5's own weights: present only when a run fine-tunes the whole model.
T5_WEIGHTS = "t5"
# A trainable-tree entry holding an already materialised m x e prompt (see PromptedT5.for_evaluation).
MATERIALIZED = "materialized_prompt"
__all__ = ["PROMPT", "T5_WEIGHTS", "MATERIALIZED", "PromptedT5", "PromptSpecBase", "build_prompted_t5",
           "check_prompt_fits", "make_spec"]  # make_spec(kind=..., **fields): gin's ``xprompt_jax.PromptSpec``


def make_initializer(spec: PromptSpecBase, embedding, label_token_ids: Optional[Sequence[Sequence[int]]] = None,
                     vocab_pieces: Optional[int] = None):
    """The ``(rng, shape) -> array`` closure ``spec`` asks for, bound to the frozen embedding table
    (``vocab_pieces``: how many of its rows the vocabulary uses, for sampling)."""
    if spec.init == "uniform":
        return initializers.uniform(spec.init_scale)
    sampled = initializers.sampled_vocabulary(embedding, spec.population_size, vocab_pieces) \
        if spec.init in ("sampled_vocabulary", "class_labels") else None
    if spec.init == "sampled_vocabulary":
        return sampled
    if spec.init == "class_labels":
        if not label_token_ids:
            raise ConfigError("PromptSpec.init='class_labels' needs a task with label names; this task has none")
        return initializers.class_labels(embedding, label_token_ids, sampled)
    from xprompt_jax import export  # 'file': a .npy or another run's exported prompt
    return initializers.from_array(*export.load_prompt_source(spec.init_file))


class PromptedT5:
    """Forward passes of T5(frozen) with ``prompt_module``'s output combined into the encoder input.

    ``prompt_module=None`` is plain T5 (full fine-tuning, or pre-training the demo's model): the
    trainable tree then holds ``T5_WEIGHTS`` and no prompt. When ``trainable`` has that entry it
    replaces the frozen weights, which is how full fine-tuning runs on the same trainer.
    """

    def __init__(self, config: T5Config, prompt_module: Optional[nn.Module], combine: str = "prefix"):
        self.config = config
        self.t5 = T5(config)
        self.prompt_module = prompt_module
        self.combine_name = combine
        self.combine = combine_lib.get_combine(combine)

    @property
    def prompt_length(self) -> int:
        return self.prompt_module.length if self.prompt_module is not None else 0

    def init(self, rng):
        """Fresh ``(trainable, masks)``: the prompt's parameters and all-ones masks."""
        if self.prompt_module is None:
            return {}, {}
        variables = nn.unbox(self.prompt_module.init(rng))
        return {PROMPT: variables["params"]}, variables["masks"]

    def logical_axes(self, rng=None):
        """Logical ``PartitionSpec``s of the prompt's part of the trainable tree (for shardings)."""
        if self.prompt_module is None:
            return {}
        boxed = jax.eval_shape(lambda: self.prompt_module.init(jax.random.PRNGKey(0)))
        return {PROMPT: nn.get_partition_spec(boxed)["params"]}

    def update_mask(self, trainable, masks):
        """1/0 per trainable scalar (None: unmasked): which entries may change under ``masks``.

        The prompt module decides (``parameter_masks``): a plain prompt masks its matrix; a
        reparameterised one (EPT, P-Tuning) is masked at its output, so its parameters keep updating.
        """
        unmasked = jax.tree.map(lambda _: None, trainable)
        if not masks or self.prompt_module is None or PROMPT not in trainable:
            return unmasked
        return {**unmasked, PROMPT: self.prompt_module.parameter_masks(trainable[PROMPT], masks)}

    def t5_params(self, trainable, frozen):
        """The T5 weights in use: frozen ones, unless the run trains them (full fine-tuning)."""
        return trainable.get(T5_WEIGHTS, frozen)

    def prompt(self, trainable, masks):
        """The masked m x e prompt (or batch x m x e when the masks are per example)."""
        if self.prompt_module is None:
            return None
        if MATERIALIZED in trainable:
            return trainable[MATERIALIZED]
        return self.prompt_module.apply({"params": trainable[PROMPT], "masks": masks})

    def for_evaluation(self, trainable, masks):
        """``(trainable, masks)`` to evaluate with. A reparameterised prompt (EPT, P-Tuning, ResPrompt) is
        materialised first, by the same eager call the export makes: inside a jitted evaluation XLA would
        fuse the network's ops differently (LayerNorm's reductions, say) and the scores could differ from
        those of the exported prompt in the last bit. A plain prompt is returned as it is.
        """
        if self.prompt_module is None or isinstance(self.prompt_module, Prompt):
            return trainable, masks
        rest = {k: v for k, v in trainable.items() if k != PROMPT}
        return {**rest, MATERIALIZED: self.prompt(trainable, masks)}, {}

    def encode(self, trainable, frozen, masks, tokens, deterministic: bool = True, rngs=None):
        params = self.t5_params(trainable, frozen)
        embedded = self.t5.apply({"params": params}, tokens, method=T5.embed)
        prompt = self.prompt(trainable, masks)
        if prompt is None:
            combined, mask = embedded, tokens > 0
        else:
            if prompt.ndim == 2:
                prompt = jnp.broadcast_to(prompt, (tokens.shape[0],) + prompt.shape)
            combined, mask = self.combine(prompt, embedded, tokens)
        encoded = self.t5.apply({"params": params}, combined, mask, deterministic, method=T5.encode_embedded,
                                rngs=rngs)
        return encoded, mask

    def decode(self, trainable, frozen, encoded, encoder_mask, decoder_input_tokens, deterministic: bool = True,
               rngs=None):
        return self.t5.apply({"params": self.t5_params(trainable, frozen)}, encoded, encoder_mask,
                             decoder_input_tokens, deterministic, method=T5.decode, rngs=rngs)

    def logits(self, trainable, frozen, masks, batch, deterministic: bool = True, rngs=None):
        """Teacher-forced float32 logits for a feature-converted batch."""
        encoded, mask = self.encode(trainable, frozen, masks, batch["encoder_input_tokens"], deterministic, rngs)
        return self.decode(trainable, frozen, encoded, mask, batch["decoder_input_tokens"], deterministic, rngs)


def check_prompt_fits(length: int, width: Optional[int], config: Optional[T5Config],
                      input_length: Optional[int] = None, where: str = "the prompt (PromptSpec.length)") -> None:
    """The one check that a prompt fits a model: its width is the model's and it is not longer than the
    encoder input. ``width``/``config``/``input_length`` None: that part is not known yet (skipped)."""
    if width is not None and config is not None and width != config.emb_dim:
        raise ConfigError(f"{where} is {width} wide but the model is {config.emb_dim} wide; use a prompt "
                          "trained on this model (or the model it was trained on)")
    if input_length is not None and length > input_length:
        raise ConfigError(f"{where} ({length} tokens) is longer than the encoder input length ({input_length}); "
                          "shorten the prompt or raise the input length")


def build_prompted_t5(config: T5Config, spec: PromptSpecBase, frozen_params,
                      label_token_ids: Optional[Sequence[Sequence[int]]] = None,
                      input_length: Optional[int] = None, vocab_pieces: Optional[int] = None) -> PromptedT5:
    """Check ``spec`` against the model and bind its initialiser to the frozen embedding table."""
    check_prompt_fits(spec.length, None, config, input_length)
    embedding = frozen_params["token_embedder"]["embedding"]
    init_fn = make_initializer(spec, embedding, label_token_ids, vocab_pieces)
    module = make_prompt_module(spec, config.emb_dim, init_fn)
    return PromptedT5(config, module, spec.combine)


def make_prompt_module(spec: PromptSpecBase, width: int, init_fn) -> nn.Module:
    """The prompt module ``spec.kind`` names, ``width`` wide (bad sizes for this width raise ConfigError)."""
    return spec.build_module(width, init_fn)
