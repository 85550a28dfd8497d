"""How many XLA programs a run compiled and how long each took, from JAX's own monitoring events.

Each length bucket is its own program (and evaluation has its own), so a run compiles several; on large
models each can take minutes. ``CompileLog`` counts the backend compilations while it is open and says
how long each took, which shows where start-up time goes and what the compilation cache saves.
"""
from __future__ import annotations

import threading
from typing import List

import jax.monitoring

EVENT = "/jax/core/compile/backend_compile_duration"


class CompileLog:
    def __init__(self):
        self.durations: List[float] = []
        self._lock = threading.Lock()

    def _listen(self, event: str, seconds: float, **_):
        if event == EVENT:
            with self._lock:
                self.durations.append(float(seconds))

    def __enter__(self) -> "CompileLog":
        jax.monitoring.register_event_duration_secs_listener(self._listen)
        return self

    def __exit__(self, *exc):
        jax.monitoring.unregister_event_duration_listener(self._listen)

    def summary(self) -> str:
        if not self.durations:
            return "compiled no XLA program (all from the compilation cache or already compiled)"
        each = ", ".join(f"{d:.1f}s" for d in sorted(self.durations, reverse=True)[:8])
        more = f" and {len(self.durations) - 8} more" if len(self.durations) > 8 else ""
        return f"compiled {len(self.durations)} XLA programs in {sum(self.durations):.1f}s ({each}{more})"
