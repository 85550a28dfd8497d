"""Evaluation of a prompted model: rank classification and greedy decoding, scored by the task's metrics.

Rank classification (Lester et al.'s evaluation for classification tasks) scores every label string
as a target, ``sum_t log p(label_t | prompt, x, label_<t)``, and predicts the best; the encoder runs
once per example and its output is shared by all labels. Greedy decoding generates text, which the
task's postprocessor maps back to a label, as T5 evaluates. Either way the predictions then go
through the same postprocessors and metric functions as the seqio task's, without TensorFlow.
"""
from __future__ import annotations

import functools
from typing import Callable, Dict, List, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from xprompt_jax.distributed import (
    to_host,  # outputs sharded over several processes -> numpy on each
)
from xprompt_jax.models.decoding import (
    greedy_decode_encoded,
    shift_right,
    token_log_likelihoods,
)
from xprompt_jax.prompted import PromptedT5


def rank_scores(model: PromptedT5, trainable, frozen, masks, encoder_input_tokens, label_ids):
    """(batch, num_labels) log-likelihood of each label's tokens (EOS included, padding excluded)."""
    batch, num_labels = encoder_input_tokens.shape[0], label_ids.shape[0]
    encoded, mask = model.encode(trainable, frozen, masks, encoder_input_tokens)
    encoded = jnp.repeat(encoded, num_labels, axis=0)
    mask = jnp.repeat(mask, num_labels, axis=0)
    targets = jnp.tile(label_ids, (batch, 1))
    logits = model.decode(trainable, frozen, encoded, mask, shift_right(targets))
    return token_log_likelihoods(logits, targets).sum(-1).reshape(batch, num_labels)


def greedy_tokens(model: PromptedT5, trainable, frozen, masks, encoder_input_tokens, max_decode_length: int):
    """Greedy generation (batch, max_decode_length) from the prompted encoder."""
    encoded, mask = model.encode(trainable, frozen, masks, encoder_input_tokens)
    return greedy_decode_encoded(model.t5, model.t5_params(trainable, frozen), encoded, mask, max_decode_length)


@functools.lru_cache(maxsize=16)
def _jitted(fn, model, *static):
    return jax.jit(lambda *args: fn(model, *args, *static))


def predict_labels(model, trainable, frozen, masks, batches, label_ids: np.ndarray) -> np.ndarray:
    """Index of the best-scoring label for every valid example of ``batches``."""
    score = _jitted(rank_scores, model)
    out = []
    for batch, valid in batches:
        scores = to_host(score(trainable, frozen, masks, batch["encoder_input_tokens"], jnp.asarray(label_ids)))
        out.append(scores.argmax(-1)[valid])
    return np.concatenate(out) if out else np.zeros((0,), np.int64)


def predict_tokens(model, trainable, frozen, masks, batches, max_decode_length: int) -> List[np.ndarray]:
    decode = _jitted(greedy_tokens, model, max_decode_length)
    out = []
    for batch, valid in batches:
        tokens = to_host(decode(trainable, frozen, masks, batch["encoder_input_tokens"]))
        out.extend(tokens[valid])
    return out


def score(metric_fns: Sequence[Callable], targets: list, predictions: list) -> Dict[str, float]:
    results: Dict[str, float] = {}
    for fn in metric_fns:
        results.update({k: float(v) for k, v in fn(targets, predictions).items()})
    return results


def accuracy_of(labels: Sequence, predictions: Sequence) -> float:
    labels, predictions = np.asarray(labels), np.asarray(predictions)
    return float((labels == predictions).mean() * 100.0) if len(labels) else 0.0
