"""What the loop decides after each evaluation: is it the best so far, and is it time to stop.

Each is a small object with one method (as T5X's ``EarlyStoppingAction``), rebuilt from the run's
kept metrics history on a restart, so a resumed run decides exactly as the uninterrupted one did.
"""
from __future__ import annotations

import logging
from typing import Optional, Sequence

import numpy as np

from xprompt_jax.run.checkpoints import BestCheckpoint

logger = logging.getLogger(__name__)


class BestTracker:
    """Keeps ``best/`` at the evaluation with the highest ``metric`` (the first of equal ones)."""

    def __init__(self, checkpoint: BestCheckpoint, metric: str, history: Sequence[dict] = ()):
        self.checkpoint, self.metric = checkpoint, metric
        values = [r[metric] for r in history if metric in r]
        self.value = max(values) if values else -np.inf

    def update(self, step: int, record: dict, trainable, masks) -> bool:
        """Save ``record``'s state as the best if it beats every earlier one; True when it did."""
        if record[self.metric] > self.value:
            self.value = record[self.metric]
            self.checkpoint.save(step, trainable, masks, record)
            return True
        return False


class EarlyStopping:
    """Stop after ``patience`` evaluations in a row without a new best (None: never)."""

    def __init__(self, patience: Optional[int], metric: str, history: Sequence[dict] = ()):
        self.patience, self.metric, self.stale = patience, metric, 0
        best = -np.inf
        for record in history:
            if record.get(metric, -np.inf) > best:
                best, self.stale = record[metric], 0
            else:
                self.stale += 1

    def should_stop(self, improved: bool) -> bool:
        self.stale = 0 if improved else self.stale + 1
        if self.patience and self.stale >= self.patience:
            logger.info(f"[train] early stop: no {self.metric} gain in {self.stale} evaluations")
            return True
        return False
