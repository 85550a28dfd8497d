"""Scoring a prompt on a cached split with the task's own metrics: rank classification or greedy decoding.

Rank classification (Lester et al.'s evaluation for classification tasks) scores every label string
as a target, ``sum_t log p(label_t | prompt, x, label_<t)``, and predicts the best; the encoder runs
once per example and its output is shared by all labels. Greedy decoding generates text, which the
task's postprocessor maps back to a label, as T5 evaluates. Either way the predictions go through the
same postprocessors and metric functions as the seqio task's (``tasks.specs``), without TensorFlow.

Evaluation batches may come in any order (length buckets sort them by length): each carries the rows
of its examples, and predictions are put back in example order before they are scored.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from xprompt_jax.distributed import to_host  # outputs sharded over several processes -> numpy on each
from xprompt_jax.errors import ConfigError
from xprompt_jax.models.decoding import greedy_decode_encoded, shift_right, token_log_likelihoods
from xprompt_jax.prompted import PromptedT5


# ------------------------------------------------------------------------------------------------
# What evaluation needs to know about a split's task
# ------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class TaskInfo:
    """A task's label names (for rank classification) and its scoring (postprocessor + metrics).

    A cache names its task; ``tasks.specs`` (stdlib only) gives that task's label names, postprocessor
    and metrics. A task it does not know (a user's own seqio task) is scored by exact match of the
    generated text against ``targets_pretokenized``, ranking over ``meta.json``'s label_names, if any.
    """
    name: str
    label_names: Optional[Tuple[str, ...]]
    evaluate: Callable[[Sequence[str], Sequence[Mapping]], Dict[str, float]]

    def score(self, predictions: Sequence[str], examples: Sequence[Mapping]) -> Dict[str, float]:
        return self.evaluate(list(predictions), list(examples))


def exact_match(predictions: Sequence[str], examples: Sequence[Mapping]) -> Dict[str, float]:
    """Accuracy (percent) of generated text equal to the target text (whitespace-stripped)."""
    if not examples:
        return {"accuracy": 0.0}
    hits = sum(str(p).strip() == str(ex["targets_pretokenized"]).strip() for p, ex in zip(predictions, examples))
    return {"accuracy": 100.0 * hits / len(examples)}


def task_info(name: str, meta_label_names: Optional[Sequence[str]] = None) -> TaskInfo:
    from tasks import specs
    if name in specs.TASK_SPECS:
        spec = specs.get_spec(name)
        return TaskInfo(name, tuple(spec.label_names) if spec.label_names else None, spec.evaluate)
    return TaskInfo(name, tuple(meta_label_names) if meta_label_names else None, exact_match)


def task_info_of_split(split) -> TaskInfo:
    """The task of a ``CachedSplit`` (its ``meta.json`` names it)."""
    return task_info(split.meta.get("task", ""), split.meta.get("label_names"))


def metric_names(split) -> List[str]:
    """The metrics a split's evaluation reports, found without running a model (scores no predictions)."""
    info = task_info_of_split(split)
    examples = split.examples[:1]
    guess = [info.label_names[0] if info.label_names else ""] * len(examples)
    try:
        return sorted(info.score(guess, examples))
    except Exception:  # a metric that cannot score a single example: known only at the first evaluation
        return []


# ------------------------------------------------------------------------------------------------
# Predictions
# ------------------------------------------------------------------------------------------------
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


def in_example_order(batches: Iterable[tuple], predict: Callable[[dict], np.ndarray]) -> List[Any]:
    """``predict`` on every batch, its valid rows put back in example order.

    ``batches`` yields ``(batch, valid)`` (examples in order) or ``(batch, valid, rows)`` where ``rows``
    are the example indices of the valid rows (any order: length buckets sort by length).
    """
    values, order, next_row = [], [], 0
    for item in batches:
        batch, valid = item[0], np.asarray(item[1])
        kept = predict(batch)[valid]
        rows = np.asarray(item[2]) if len(item) > 2 else np.arange(next_row, next_row + len(kept))
        next_row += len(kept)
        values.extend(kept)
        order.extend(int(r) for r in rows)
    ranked = np.argsort(np.asarray(order, np.int64), kind="stable")
    return [values[i] for i in ranked]


def predict_labels(model, trainable, frozen, masks, batches, label_ids: np.ndarray) -> np.ndarray:
    """Index of the best-scoring label for every valid example of ``batches``, in example order."""
    score = _jitted(rank_scores, model)
    labels = jnp.asarray(label_ids)
    best = in_example_order(batches, lambda b: to_host(score(trainable, frozen, masks, b["encoder_input_tokens"],
                                                              labels)).argmax(-1))
    return np.asarray(best, np.int64)


def predict_tokens(model, trainable, frozen, masks, batches, max_decode_length: int) -> List[np.ndarray]:
    decode = _jitted(greedy_tokens, model, max_decode_length)
    return in_example_order(batches, lambda b: to_host(decode(trainable, frozen, masks, b["encoder_input_tokens"])))


def accuracy_of(labels: Sequence, predictions: Sequence) -> float:
    labels, predictions = np.asarray(labels), np.asarray(predictions)
    return float((labels == predictions).mean() * 100.0) if len(labels) else 0.0


# ------------------------------------------------------------------------------------------------
# The evaluator a run calls
# ------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Evaluator:
    """Scores a prompt on one cached split by rank classification or greedy decoding."""
    model: PromptedT5
    split: Any
    vocabulary: Any
    batch_size: int
    mode: str = "auto"
    max_decode_length: Optional[int] = None
    mesh: Any = None  # the run's mesh: evaluation batches sharded over its data axis (multi-host too)
    buckets: Optional[Sequence[int]] = None  # length buckets: batches padded to the smallest that fits

    def __post_init__(self):
        self.info = task_info_of_split(self.split)
        if self.mode == "auto":
            self.mode = "rank" if self.info.label_names else "decode"
        if self.mode == "rank" and not self.info.label_names:
            raise ConfigError(f"rank classification needs label names; task {self.info.name!r} has none "
                              "(use EvalConfig.mode='decode')")
        if self.mode not in ("rank", "decode"):
            raise ConfigError(f"unknown eval mode {self.mode!r}: 'rank', 'decode' or 'auto'")
        if self.mode == "rank":
            self.label_ids = self.vocabulary.encode_padded(self.info.label_names)
        self.max_decode_length = self.max_decode_length or self.split.features["decoder_target_tokens"].shape[1]

    def batches(self):
        from xprompt_jax.run.data import eval_batches
        return eval_batches(self.split, self.batch_size, self.mesh, self.buckets)

    def predictions_text(self, trainable, frozen, masks) -> list:
        trainable, masks = self.model.for_evaluation(trainable, masks)  # EPT & co.: score the materialised prompt
        if self.mode == "rank":
            best = predict_labels(self.model, trainable, frozen, masks, self.batches(), self.label_ids)
            return [self.info.label_names[i] for i in best]
        tokens = predict_tokens(self.model, trainable, frozen, masks, self.batches(), self.max_decode_length)
        return [self.vocabulary.decode(t) for t in tokens]

    def __call__(self, trainable, frozen, masks) -> Dict[str, float]:
        texts = self.predictions_text(trainable, frozen, masks)
        return self.info.score(texts, self.split.examples)
