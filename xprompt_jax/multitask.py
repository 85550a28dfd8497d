"""Multi-task serving (Lester et al. 2021, section 7): prompts of several tasks on one frozen T5, one batch.

Each example of a batch is routed to its own task's prompt: the batch's prompts are gathered by a per-row
task index, then everything downstream (rank scores, greedy decoding) is the usual code, because the
routing happens in ``encode``. It is ensembling (``ensembling.py``) keyed by task instead of repeated
over prompts: the frozen weights are read once per batch whatever the mix of tasks, and a server need
not wait for a full batch of one task.

Rank classification over a mixed batch scores every example against its own task's label strings only
(a per-task table, padded to the most labels any task has and masked), so each example costs what it
costs in a batch of its task alone and chooses exactly as there (``tests/test_multitask.py``).
"""
from __future__ import annotations

from typing import Dict, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from xprompt_jax.ensembling import PROMPTS, PromptEnsemble
from xprompt_jax.errors import ConfigError
from xprompt_jax.models.config import T5Config
from xprompt_jax.models.decoding import shift_right, token_log_likelihoods
from xprompt_jax.run.evaluator import greedy_tokens

ROUTES = "task_ids"


class MultiTaskPrompts(PromptEnsemble):
    """A frozen T5 with one same-shaped prompt per task; ``routed(trainable, task_ids)`` gives the
    ``trainable`` whose ``encode`` puts prompt ``task_ids[r]`` in front of row ``r`` (the ensemble's
    encoding, with the prompts gathered by task instead of repeated over them)."""

    def __init__(self, config: T5Config, prompts: Sequence[np.ndarray], combine: str = "prefix"):
        shapes = {tuple(np.shape(p)) for p in prompts}
        if len(shapes) != 1:
            raise ConfigError(f"multi-task prompts must share one (length, width); got {sorted(shapes)}")
        super().__init__(config, np.stack([np.asarray(p, np.float32) for p in prompts]), combine,
                         where="the tasks' prompts")
        self.num_tasks = self.num_prompts

    @staticmethod
    def routed(trainable, task_ids) -> Dict[str, jax.Array]:
        return {PROMPTS: trainable[PROMPTS], ROUTES: jnp.asarray(task_ids, jnp.int32)}

    def row_prompts(self, trainable, tokens):
        return jnp.take(trainable[PROMPTS], trainable[ROUTES], axis=0)


def task_label_table(label_ids_by_task: Sequence[np.ndarray]) -> Tuple[np.ndarray, np.ndarray]:
    """(table (tasks, most labels, longest label) of label token ids, valid (tasks, most labels)): each
    task's label strings, padded with empty labels that ``valid`` masks out."""
    most = max(ids.shape[0] for ids in label_ids_by_task)
    width = max(ids.shape[1] for ids in label_ids_by_task)
    table = np.zeros((len(label_ids_by_task), most, width), np.int32)
    valid = np.zeros((len(label_ids_by_task), most), bool)
    for task, ids in enumerate(label_ids_by_task):
        table[task, :ids.shape[0], :ids.shape[1]] = ids
        valid[task, :ids.shape[0]] = True
    return table, valid


def mixed_rank_predictions(model: MultiTaskPrompts, trainable, frozen, tokens, task_ids, table, valid):
    """(B,) each example's best label index among its own task's labels, every example scored against its
    task's labels only (padded to the most any task has), as a batch of that task alone scores it."""
    routed = model.routed(trainable, task_ids)
    encoded, mask = model.encode(routed, frozen, {}, tokens)
    labels = jnp.asarray(table)[task_ids]  # (B, most labels, width)
    batch, most, width = labels.shape
    targets = labels.reshape(batch * most, width)
    logits = model.decode(routed, frozen, jnp.repeat(encoded, most, axis=0), jnp.repeat(mask, most, axis=0),
                          shift_right(targets))
    scores = token_log_likelihoods(logits, targets).sum(-1).reshape(batch, most)
    return jnp.where(jnp.asarray(valid)[task_ids], scores, -jnp.inf).argmax(-1)


def mixed_greedy_tokens(model: MultiTaskPrompts, trainable, frozen, tokens, task_ids, max_decode_length: int):
    """(B, T) greedy generations, each example under its own task's prompt."""
    return greedy_tokens(model, model.routed(trainable, task_ids), frozen, {}, tokens, max_decode_length)
