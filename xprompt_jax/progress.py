"""Progress lines for long loops: a bar, the step rate and the time left, printed every N steps.

Plain lines (not carriage returns) so that logs of pod workers and CI stay readable.
"""
from __future__ import annotations

import logging
import time
from typing import Dict, Optional

logger = logging.getLogger(__name__)


def _clock(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


class Progress:
    def __init__(self, total: int, start: int = 0, label: str = "train", width: int = 20):
        self.total, self.start, self.label, self.width = total, start, label, width
        self._t0: Optional[float] = None
        self._created = time.time()
        self._first_done = start

    def update(self, done: int, metrics: Optional[Dict[str, float]] = None):
        now = time.time()
        if self._t0 is None:  # time from the first reported step: compilation excluded from the rate
            self._t0, self._first_done = now, done
            rate = None  # no rate yet: the first step's time is mostly compilation
        else:
            rate = (done - self._first_done) / max(now - self._t0, 1e-9)
        filled = int(self.width * done / max(self.total, 1))
        bar = "#" * filled + "." * (self.width - filled)
        if rate is None:  # the first line: compiling the step took most of this, so no rate or ETA yet
            timing = f"first step {now - self._created:.1f}s (with compilation)"
        else:
            timing = f"{rate:.2f} steps/s ETA {_clock((self.total - done) / rate) if rate else '?'}"
        shown = " ".join(f"{k} {v:.4g}" for k, v in (metrics or {}).items())
        logger.info(f"[{self.label}] [{bar}] {done}/{self.total} {timing} {shown}")
