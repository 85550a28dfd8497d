"""One logger for the package: Python's ``logging`` under the ``xprompt_jax`` name, shown by process 0.

Every module logs with ``logging.getLogger(__name__)``. On a pod or GPU cluster each process runs the same
code, so only process 0 prints (as T5X's logs do); the others stay silent unless they fail. Messages go to
the current ``sys.stdout`` as plain lines, which pod logs, CI and notebooks show as they are. To change
the level or the format, configure the ``xprompt_jax`` logger like any other.
"""
from __future__ import annotations

import logging
import sys

LOGGER_NAME = "xprompt_jax"


def is_main_process() -> bool:
    """Process 0 of a multi-process run (always true for one process): the one that writes shared files."""
    import jax
    return jax.process_index() == 0


class _MainProcessOnly(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or is_main_process()


class _CurrentStdout(logging.StreamHandler):
    """Writes to whatever ``sys.stdout`` is at the time (pytest and notebooks replace it)."""

    @property
    def stream(self):
        return sys.stdout

    @stream.setter
    def stream(self, value):
        pass


def _install_handler() -> None:
    logger = logging.getLogger(LOGGER_NAME)
    if any(isinstance(h, _CurrentStdout) for h in logger.handlers):
        return
    handler = _CurrentStdout()
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.addFilter(_MainProcessOnly())
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False  # absl (imported by TensorFlow) puts its own handler on the root logger


_install_handler()
