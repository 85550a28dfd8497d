"""Preemption: SIGTERM saves a checkpoint at the current step and ends the run cleanly.

TPU VMs and SLURM send SIGTERM some seconds before they take a machine. The handler only sets a flag;
the loop looks at it after each step (T5X's preemption sync point), saves a checkpoint of that step and
returns, and the CLI exits 0: the same command resumes from there. With several processes a SIGTERM may
reach only some of them, so the flag is combined across processes (any one asks, all stop) and every
process saves the same step.
"""
from __future__ import annotations

import logging
import signal
import threading

import numpy as np

from xprompt_jax import stopping

logger = logging.getLogger(__name__)


class PreemptionWatcher:
    """``with PreemptionWatcher() as watcher: ... if watcher.should_stop(): save and return``."""

    def __init__(self, signals=(signal.SIGTERM,)):
        self.signals = tuple(signals)
        self.received = None
        self._previous = {}

    def _handle(self, signum, frame):
        self.received = signum
        stopping.request(signum)  # long work before the first step (a data cache) stops too
        logger.warning(f"[run] received {signal.Signals(signum).name}: stopping at the next safe point (a training "
                       "run saves a checkpoint after this step)")

    _depth = 0  # watchers open in this process (XPrompt's driver holds one around its stages' own)

    def __enter__(self) -> "PreemptionWatcher":
        PreemptionWatcher._depth += 1
        if threading.current_thread() is threading.main_thread():  # signal handlers live in the main thread
            for sig in self.signals:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous = {}
        PreemptionWatcher._depth -= 1
        if PreemptionWatcher._depth == 0:
            stopping.clear()  # the outermost watcher: the next command in this process starts afresh

    def should_stop(self) -> bool:
        """True on every process once any process has received the signal."""
        import jax
        local = self.received is not None or stopping.requested() is not None
        if jax.process_count() == 1:
            return local
        from jax.experimental import multihost_utils
        return bool(np.asarray(multihost_utils.process_allgather(np.array(local))).any())


class RunPreempted(stopping.Stopped):
    """The run saved a checkpoint at ``step`` and stopped because the machine is being taken away.

    Not an error: the CLI exits 0 with a message, and the same command resumes from ``step``. XPrompt
    lets it pass, so a preempted stage writes no result and is resumed, not skipped.
    """

    def __init__(self, step: int, directory: str):
        super().__init__(f"preempted: saved a checkpoint at step {step} in {directory}; run the same "
                         "command again to resume")
        self.step = step
