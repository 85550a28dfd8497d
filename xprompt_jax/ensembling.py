"""Prompt ensembling (Lester et al. 2021): N prompts for one task on one frozen model, majority vote.

All N prompts run in ONE batch on the one frozen model: a batch of B examples becomes B x N rows,
example-major (row ``b * N + k`` is example b under prompt k), so the frozen weights are read once
per batch whatever N is — the point of ensembling prompts rather than models. Each prompt's
prediction (rank classification's best label, or greedy decoding's text) then gets one vote; ties go
to the prediction of the earliest prompt among the tied ones. The command is ``commands/ensemble.py``.

    xprompt-jax ensemble --gin_file=models/t5_1_1.gin --gin_file=sizes/base.gin --gin_file=runs/ensemble.gin \
        --gin.PROMPT_SOURCES="['/tmp/pt_a', '/tmp/pt_b', '/tmp/pt_c/export/prompt.npy']" \
        --gin.TASK="'taskless_super_glue_rte_v102'" --gin.CHECKPOINT="'...'"

A source is a ``.npy`` file, a PEFT adapter folder or a run's ``MODEL_DIR`` (its exported prompt). The
prompts must all have the same length and width (checked before the model or data are loaded).
"""
from __future__ import annotations

import collections
from typing import Any, Dict, List, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from xprompt_jax.errors import ConfigError
from xprompt_jax.models.config import T5Config
from xprompt_jax.models.decoding import greedy_decode_encoded
from xprompt_jax.models.t5 import T5
from xprompt_jax.prompted import PromptedT5, check_prompt_fits
from xprompt_jax.run.evaluator import Evaluator, in_example_order, rank_scores

PROMPTS = "prompts"


def majority_vote(predictions: Sequence[Sequence[Any]]) -> List[Any]:
    """Per example (row), the most frequent of its N predictions; a tie goes to the earliest prompt's."""
    voted = []
    for row in predictions:
        counts = collections.Counter(row)
        top = max(counts.values())
        voted.append(next(p for p in row if counts[p] == top))
    return voted


class PromptEnsemble(PromptedT5):
    """A frozen T5 with N same-shaped prompts: ``trainable = {'prompts': (N, m, e)}``.

    ``encode`` takes B x N example-major rows (``jnp.repeat(tokens, N, axis=0)``) and gives row
    ``b * N + k`` prompt k; everything downstream (rank scores, greedy decoding) is the usual code.
    """

    def __init__(self, config: T5Config, prompts, combine: str = "prefix", where: str = "the ensemble's prompts"):
        super().__init__(config, None, combine)
        prompts = np.asarray(prompts, np.float32)
        if prompts.ndim != 3:
            raise ConfigError(f"an ensemble takes (N, length, width) prompts, got shape {prompts.shape}")
        check_prompt_fits(prompts.shape[1], prompts.shape[2], config, where=where)
        self.prompts = prompts
        self.num_prompts, self.length = int(prompts.shape[0]), int(prompts.shape[1])

    @property
    def prompt_length(self) -> int:
        return self.length

    def init(self, rng=None):
        return {PROMPTS: jnp.asarray(self.prompts)}, {}

    def prompt(self, trainable, masks):
        return trainable[PROMPTS]

    def row_prompts(self, trainable, tokens):
        """(rows, length, width): the prompt in front of each row; here prompt k for row ``b * N + k``."""
        prompts = trainable[PROMPTS]
        if tokens.shape[0] % prompts.shape[0]:
            raise ValueError(f"{tokens.shape[0]} rows are not examples x {prompts.shape[0]} prompts")
        return jnp.tile(prompts, (tokens.shape[0] // prompts.shape[0], 1, 1))

    def encode(self, trainable, frozen, masks, tokens, deterministic: bool = True, rngs=None):
        prompt = self.row_prompts(trainable, tokens)
        params = self.t5_params(trainable, frozen)
        embedded = self.t5.apply({"params": params}, tokens, method=T5.embed)
        combined, mask = self.combine(prompt, embedded, tokens)
        encoded = self.t5.apply({"params": params}, combined, mask, deterministic, method=T5.encode_embedded,
                                rngs=rngs)
        return encoded, mask


def ensemble_rank_predictions(model: PromptEnsemble, trainable, frozen, encoder_input_tokens, label_ids):
    """(B, N) index of every prompt's best label, all prompts in one (B x N)-row forward pass."""
    batch, n = encoder_input_tokens.shape[0], model.num_prompts
    rows = jnp.repeat(encoder_input_tokens, n, axis=0)
    scores = rank_scores(model, trainable, frozen, {}, rows, label_ids)
    return scores.reshape(batch, n, -1).argmax(-1)


def ensemble_greedy_tokens(model: PromptEnsemble, trainable, frozen, encoder_input_tokens, max_decode_length: int):
    """(B, N, T) greedy generations, all prompts in one (B x N)-row pass."""
    batch, n = encoder_input_tokens.shape[0], model.num_prompts
    rows = jnp.repeat(encoder_input_tokens, n, axis=0)
    encoded, mask = model.encode(trainable, frozen, {}, rows)
    tokens = greedy_decode_encoded(model.t5, model.t5_params(trainable, frozen), encoded, mask, max_decode_length)
    return tokens.reshape(batch, n, -1)


class EnsembleEvaluator(Evaluator):
    """``run.evaluator.Evaluator`` for a ``PromptEnsemble``: per-prompt predictions, the vote, their metrics."""

    def per_prompt_texts(self, trainable, frozen) -> List[List[str]]:
        """[example][prompt] predicted text, every batch run once for all N prompts."""
        model = self.model
        if self.mode == "rank":
            fn = jax.jit(lambda t, f, x, labels: ensemble_rank_predictions(model, t, f, x, labels))
            labels = jnp.asarray(self.label_ids)
            best = in_example_order(self.batches(), lambda b: np.asarray(
                fn(trainable, frozen, b["encoder_input_tokens"], labels)))
            return [[self.info.label_names[i] for i in row] for row in best]
        length = self.max_decode_length
        fn = jax.jit(lambda t, f, x: ensemble_greedy_tokens(model, t, f, x, length))
        tokens = in_example_order(self.batches(), lambda b: np.asarray(fn(trainable, frozen, b["encoder_input_tokens"])))
        return [[self.vocabulary.decode(t) for t in row] for row in tokens]

    def predictions_text(self, trainable, frozen, masks=None) -> list:
        return majority_vote(self.per_prompt_texts(trainable, frozen))

    def evaluate(self, trainable, frozen) -> Dict[str, Any]:
        """{'ensemble': metrics of the vote, 'prompts': [metrics of each prompt alone]}, from one pass."""
        per_prompt = self.per_prompt_texts(trainable, frozen)
        examples = self.split.examples
        individual = [self.info.score([row[k] for row in per_prompt], examples)
                      for k in range(self.model.num_prompts)]
        return {"ensemble": self.info.score(majority_vote(per_prompt), examples), "prompts": individual}
