"""Multi-task serving (Lester et al. 2021, section 7): prompts of several tasks on one frozen T5, one batch.

Each example of a batch is routed to its own task's prompt: the batch's prompts are gathered by a per-row
task index, then everything downstream (rank scores, greedy decoding) is the usual code, because the
routing happens in ``encode``. It is ensembling (``ensembling.py``) keyed by task instead of repeated
over prompts: the frozen weights are read once per batch whatever the mix of tasks, and a server need
not wait for a full batch of one task.

Rank classification over a mixed batch scores every example against the union of the tasks' label
strings and masks out the labels its task does not have, so each example's choice is among its own
task's labels, exactly as in a batch of that task alone (``tests/test_multitask.py``).
"""
from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from xprompt_jax.errors import ConfigError
from xprompt_jax.models.config import T5Config
from xprompt_jax.models.t5 import T5
from xprompt_jax.prompted import PromptedT5, check_prompt_fits
from xprompt_jax.run.evaluator import greedy_tokens, rank_scores

PROMPTS, ROUTES = "prompts", "task_ids"


class MultiTaskPrompts(PromptedT5):
    """A frozen T5 with one same-shaped prompt per task; ``routed(trainable, task_ids)`` gives the
    ``trainable`` whose ``encode`` puts prompt ``task_ids[r]`` in front of row ``r``."""

    def __init__(self, config: T5Config, prompts: Sequence[np.ndarray], combine: str = "prefix"):
        super().__init__(config, None, combine)
        shapes = {tuple(np.shape(p)) for p in prompts}
        if len(shapes) != 1:
            raise ConfigError(f"multi-task prompts must share one (length, width); got {sorted(shapes)}")
        stacked = np.stack([np.asarray(p, np.float32) for p in prompts])
        check_prompt_fits(stacked.shape[1], stacked.shape[2], config, where="the tasks' prompts")
        self.prompts, self.num_tasks, self.length = stacked, int(stacked.shape[0]), int(stacked.shape[1])

    @property
    def prompt_length(self) -> int:
        return self.length

    def init(self, rng=None):
        return {PROMPTS: jnp.asarray(self.prompts)}, {}

    def prompt(self, trainable, masks):
        return trainable[PROMPTS]

    @staticmethod
    def routed(trainable, task_ids) -> Dict[str, jax.Array]:
        return {PROMPTS: trainable[PROMPTS], ROUTES: jnp.asarray(task_ids, jnp.int32)}

    def encode(self, trainable, frozen, masks, tokens, deterministic: bool = True, rngs=None):
        prompt = jnp.take(trainable[PROMPTS], trainable[ROUTES], axis=0)  # (rows, length, width)
        params = self.t5_params(trainable, frozen)
        embedded = self.t5.apply({"params": params}, tokens, method=T5.embed)
        combined, mask = self.combine(prompt, embedded, tokens)
        encoded = self.t5.apply({"params": params}, combined, mask, deterministic, method=T5.encode_embedded, rngs=rngs)
        return encoded, mask


def label_union(label_ids_by_task: Sequence[np.ndarray]) -> Tuple[np.ndarray, np.ndarray, List[List[int]]]:
    """(union label tokens (U, L), valid (T, U), each task's label -> union column) for tasks' label tables."""
    width = max(ids.shape[1] for ids in label_ids_by_task)
    rows, where = [], []
    for ids in label_ids_by_task:
        task_columns = []
        for row in np.pad(ids, ((0, 0), (0, width - ids.shape[1]))):
            key = tuple(int(t) for t in row)
            if key not in rows:
                rows.append(key)
            task_columns.append(rows.index(key))
        where.append(task_columns)
    valid = np.zeros((len(label_ids_by_task), len(rows)), bool)
    for task, task_columns in enumerate(where):
        valid[task, task_columns] = True
    return np.asarray(rows, np.int32), valid, where


def mixed_rank_predictions(model: MultiTaskPrompts, trainable, frozen, tokens, task_ids, union_ids, valid):
    """(B,) each example's best label column of the union, among its own task's labels only."""
    scores = rank_scores(model, model.routed(trainable, task_ids), frozen, {}, tokens, union_ids)
    return jnp.where(jnp.asarray(valid)[task_ids], scores, -jnp.inf).argmax(-1)


def mixed_greedy_tokens(model: MultiTaskPrompts, trainable, frozen, tokens, task_ids, max_decode_length: int):
    """(B, T) greedy generations, each example under its own task's prompt."""
    return greedy_tokens(model, model.routed(trainable, task_ids), frozen, {}, tokens, max_decode_length)


def to_task_labels(columns: np.ndarray, task_ids: np.ndarray, where: List[List[int]]) -> List[int]:
    """Union columns back to each example's label index within its own task."""
    return [where[int(t)].index(int(c)) for c, t in zip(columns, task_ids)]
