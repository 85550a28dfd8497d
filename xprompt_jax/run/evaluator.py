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
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from xprompt_jax.data.buckets import restore_order
from xprompt_jax.data.task_info import task_info_of_split
from xprompt_jax.distributed import to_host  # outputs sharded over several processes -> numpy on each
from xprompt_jax.errors import ConfigError
from xprompt_jax.models.beam_search import beam_search_encoded
from xprompt_jax.models.decoding import greedy_decode_encoded, shift_right, token_log_likelihoods
from xprompt_jax.prompted import PromptedT5
from xprompt_jax.run.data import eval_batches


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


def in_example_order(batches: Iterable[tuple], predict: Callable[[dict], np.ndarray]) -> np.ndarray:
    """``predict`` on every batch, its valid rows put back in example order (``buckets.restore_order``).

    ``batches`` yields ``(batch, valid)`` (examples in order) or ``(batch, valid, rows)`` where ``rows``
    are the example indices of the valid rows (any order: length buckets sort by length).
    """
    values, order, next_row = [], [], 0
    for item in batches:
        batch, valid = item[0], np.asarray(item[1])
        kept = np.asarray(predict(batch))[valid]
        rows = np.asarray(item[2]) if len(item) > 2 else np.arange(next_row, next_row + len(kept))
        next_row += len(kept)
        values.append(kept)
        order.append(rows)
    return restore_order(values, order)


def label_scores(model, trainable, frozen, masks, batches, label_ids: np.ndarray) -> np.ndarray:
    """(examples, labels) log-likelihood of every label for every valid example of ``batches``, in example order."""
    score = _jitted(rank_scores, model)
    labels = jnp.asarray(label_ids)
    scores = in_example_order(batches, lambda b: to_host(score(trainable, frozen, masks, b["encoder_input_tokens"],
                                                                labels)))
    return np.asarray(scores, np.float32).reshape(-1, len(label_ids))


def predict_labels(model, trainable, frozen, masks, batches, label_ids: np.ndarray) -> np.ndarray:
    """Index of the best-scoring label for every valid example of ``batches``, in example order."""
    return label_scores(model, trainable, frozen, masks, batches, label_ids).argmax(-1).astype(np.int64)


def beam_tokens(model: PromptedT5, trainable, frozen, masks, encoder_input_tokens, max_decode_length: int,
                beam_size: int, alpha: float):
    """The best beam-search hypothesis (batch, max_decode_length) from the prompted encoder (T5X's scoring)."""
    encoded, mask = model.encode(trainable, frozen, masks, encoder_input_tokens)
    return beam_search_encoded(model.t5, model.t5_params(trainable, frozen), encoded, mask, max_decode_length,
                               beam_size, alpha)[0]


def predict_tokens(model, trainable, frozen, masks, batches, max_decode_length: int, beam=None) -> List[np.ndarray]:
    """Generated tokens in example order: greedy, or beam search when ``beam`` is (beam size, alpha)."""
    decode = _jitted(beam_tokens, model, max_decode_length, *beam) if beam else _jitted(greedy_tokens, model,
                                                                                      max_decode_length)
    return in_example_order(batches, lambda b: to_host(decode(trainable, frozen, masks, b["encoder_input_tokens"])))


# ------------------------------------------------------------------------------------------------
# The evaluator a run calls
# ------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Evaluator:
    """Scores a prompt on one cached split by rank classification, greedy decoding or beam search."""
    model: PromptedT5
    split: Any
    vocabulary: Any
    batch_size: int
    mode: str = "auto"
    max_decode_length: Optional[int] = None
    mesh: Any = None  # the run's mesh: evaluation batches sharded over its data axis (multi-host too)
    buckets: Optional[Sequence[int]] = None  # length buckets: batches padded to the smallest that fits
    beam: Tuple[int, float] = (4, 0.6)  # mode 'beam': beam size and brevity-penalty alpha (T5X's defaults)

    def __post_init__(self):
        self.info = task_info_of_split(self.split)
        if self.mode == "auto":
            self.mode = "rank" if self.info.label_names else "decode"
        if self.mode == "rank" and not self.info.label_names:
            raise ConfigError(f"rank classification needs label names; task {self.info.name!r} has none "
                              "(use EvalConfig.mode='decode')")
        if self.mode not in ("rank", "decode", "beam"):
            raise ConfigError(f"unknown eval mode {self.mode!r}: 'rank', 'decode' (greedy), 'beam' or 'auto'")
        if self.mode == "rank":
            self.label_ids = self.vocabulary.encode_padded(self.info.label_names)
        self.max_decode_length = self.max_decode_length or self.split.features["decoder_target_tokens"].shape[1]

    def batches(self):
        return eval_batches(self.split, self.batch_size, self.mesh, self.buckets)

    def predictions_text(self, trainable, frozen, masks) -> list:
        return [row["prediction"] for row in self.predictions(trainable, frozen, masks)]

    def predictions(self, trainable, frozen, masks) -> List[Dict[str, Any]]:
        """Per example, in example order: the predicted text and, under rank classification, its label index
        and log-likelihood (what ``xprompt-jax predict`` writes)."""
        trainable, masks = self.model.for_evaluation(trainable, masks)  # EPT & co.: score the materialised prompt
        if self.mode == "rank":
            scores = label_scores(self.model, trainable, frozen, masks, self.batches(), self.label_ids)
            return [{"prediction": self.info.label_names[int(row.argmax())], "label": int(row.argmax()),
                     "score": float(row.max())} for row in scores]
        tokens = predict_tokens(self.model, trainable, frozen, masks, self.batches(), self.max_decode_length,
                                tuple(self.beam) if self.mode == "beam" else None)
        return [{"prediction": self.vocabulary.decode(t)} for t in tokens]

    def __call__(self, trainable, frozen, masks) -> Dict[str, float]:
        texts = self.predictions_text(trainable, frozen, masks)
        return self.info.score(texts, self.split.examples)
