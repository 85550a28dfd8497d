"""A process-wide "stop requested" flag that long work outside the training loop checks between pieces.

SIGTERM (a TPU VM or SLURM taking the machine) is caught by ``run.preemption.PreemptionWatcher``, which
records it here as well as for the loop. Work that runs before the first step or between stages (writing
a data cache, XPrompt's importance scores) calls ``check(what)`` between its pieces and stops with
``Stopped`` before anything half-made reaches the disk; the CLI prints its message and exits 0, and the
same command redoes that piece. Nothing here imports the run, so the data side can use it.
"""
from __future__ import annotations

from typing import Optional

_requested: Optional[int] = None


class Stopped(Exception):
    """Work stopped cleanly on a signal; the message says what was kept and how to resume."""


def request(signum: int) -> None:
    global _requested
    _requested = signum


def clear() -> None:
    global _requested
    _requested = None


def requested() -> Optional[int]:
    return _requested


def check(what: str) -> None:
    """Raise ``Stopped`` if a stop was requested, naming the work that stopped (``what``)."""
    if _requested is not None:
        raise Stopped(f"stopped on a signal while {what}; nothing of it was written: run the same command "
                      "again to resume")
