"""Drops the known start-up lines TensorFlow's C++ side writes to file descriptor 2, and keeps the rest.

Writing a cache imports TensorFlow and runs a tf.data pipeline, and TensorFlow 2.21 prints, straight to
fd 2 and past every logging setting (``TF_CPP_MIN_LOG_LEVEL`` included):

  WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
  I0000 00:00:... cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will not be used.

once per native library it loads, and tensorflow-text's SentencePiece op adds, for a model without a
normaliser (the demo's):

  normalizer.cc(51) LOG(INFO) precompiled_charsmap is empty. use identity normalization.

A new user reads them as errors. ``filtered_native_stderr()`` points fd 2 at a temporary file
for the duration, then restores it and writes back every line that is not one of these, in order:
warnings, tracebacks and anything unknown still reach the terminal (after the block rather than
during it). ``XPROMPT_NATIVE_STDERR=1`` turns the filter off, to see everything as it happens.
"""
from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from typing import Iterator, Pattern, Sequence

KNOWN_NOISE: Sequence[Pattern[bytes]] = (
    re.compile(rb"^WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR$"),
    re.compile(rb"^[IW]\d{4} [\d:.]+ +\d+ cudart_stub\.cc:\d+\] Could not find cuda drivers on your machine"),
    re.compile(rb"normalizer\.cc\(\d+\) LOG\(INFO\) precompiled_charsmap is empty"),
)


def kept_lines(captured: bytes, noise: Sequence[Pattern[bytes]] = KNOWN_NOISE) -> bytes:
    """``captured`` without the lines that match one of ``noise`` (line ends kept as they were)."""
    lines = captured.splitlines(keepends=True)
    return b"".join(line for line in lines if not any(p.search(line.rstrip(b"\r\n")) for p in noise))


@contextlib.contextmanager
def filtered_native_stderr(noise: Sequence[Pattern[bytes]] = KNOWN_NOISE) -> Iterator[None]:
    """fd 2 goes to a temporary file inside the block; afterwards what is not ``noise`` is written back.

    A nested block needs nothing special: it saves and restores the outer block's file as its fd 2, and
    what it keeps is filtered once more (to the same result) when the outer block ends."""
    if os.environ.get("XPROMPT_NATIVE_STDERR") == "1":
        yield
        return
    _flush_python_stderr()
    try:
        saved = os.dup(2)
    except OSError:  # no fd 2 at all (a detached process): nothing to filter
        yield
        return
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            _flush_python_stderr()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            rest = memoryview(kept_lines(capture.read(), noise))
            while rest:
                rest = rest[os.write(2, rest):]


def _flush_python_stderr() -> None:
    """Python's buffered stderr is flushed across each switch, so its lines land on the right side."""
    if sys.stderr is not None:
        sys.stderr.flush()
