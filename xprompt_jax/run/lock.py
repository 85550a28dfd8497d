"""One run per MODEL_DIR at a time, in a folder that can hold it.

Two runs writing the same MODEL_DIR interleave their checkpoints, metrics and exports (the second used
to die on ``Checkpoint at .../best/4 not found`` after the first had already written there). So before
any work a run checks that MODEL_DIR is a writable folder and takes ``run.lock``: a file created with
``O_EXCL`` that names the holder's host and pid. A lock left by a process that no longer exists on this
host is stale and taken over with a warning; one held by a live process, or by another host (whose
processes cannot be checked from here), is refused with the holder named and the way out.
Only process 0 of a multi-process run takes the lock: the others are the same run.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import time
from typing import Optional

from xprompt_jax.errors import ConfigError

logger = logging.getLogger(__name__)

LOCK_FILE = "run.lock"


def prepare_model_dir(model_dir: str) -> str:
    """Create ``model_dir`` if needed; a path that cannot be a writable folder is one ConfigError."""
    try:
        os.makedirs(model_dir, exist_ok=True)
    except FileExistsError:
        raise ConfigError(f"MODEL_DIR {model_dir} is a file, not a folder: choose another MODEL_DIR") from None
    except NotADirectoryError:
        raise ConfigError(f"MODEL_DIR {model_dir} lies under a file, not a folder: choose another MODEL_DIR") from None
    except PermissionError:
        raise ConfigError(f"MODEL_DIR {model_dir} cannot be created (permission denied): choose a writable "
                          "location") from None
    except OSError as err:  # read-only filesystem and the like
        raise ConfigError(f"MODEL_DIR {model_dir} cannot be created ({err.strerror}): choose a writable "
                          "location") from None
    if not os.path.isdir(model_dir):
        raise ConfigError(f"MODEL_DIR {model_dir} is a file, not a folder: choose another MODEL_DIR")
    if not os.access(model_dir, os.W_OK | os.X_OK):
        raise ConfigError(f"MODEL_DIR {model_dir} is not writable: choose a writable location")
    return model_dir


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by someone else
        return True
    return True


class RunLock:
    """``with RunLock(model_dir):`` holds ``model_dir/run.lock`` for the duration of a run."""

    def __init__(self, model_dir: str):
        self.path = os.path.join(model_dir, LOCK_FILE)
        self.held = False

    def holder(self) -> Optional[dict]:
        try:
            with open(self.path) as f:
                return json.load(f)
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {}  # being written, or damaged: treated as held by an unknown process

    def acquire(self) -> "RunLock":
        for _ in range(3):  # a stale lock removed by us, or by a racing run, then one more try
            if self._create():
                self.held = True
                return self
            holder = self.holder()
            if holder is None:
                continue
            if self._stale(holder):
                logger.warning(f"[run] {self.path}: taking over a stale lock of pid {holder['pid']} on "
                               f"{holder['host']} (that process has ended)")
                self._remove_if_unchanged(holder)
                continue
            raise ConfigError(self._refusal(holder))
        raise ConfigError(f"{self.path} keeps changing: another run is starting on this MODEL_DIR; "
                          "wait for it, or use another MODEL_DIR")

    def _create(self) -> bool:
        record = {"host": socket.gethostname(), "pid": os.getpid(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as f:
            json.dump(record, f)
        return True

    @staticmethod
    def _stale(holder: dict) -> bool:
        return (holder.get("host") == socket.gethostname() and isinstance(holder.get("pid"), int)
                and holder["pid"] != os.getpid() and not _process_alive(holder["pid"]))

    def _remove_if_unchanged(self, holder: dict):
        if self.holder() == holder:
            try:
                os.remove(self.path)
            except FileNotFoundError:
                pass

    def _refusal(self, holder: dict) -> str:
        who = (f"pid {holder.get('pid')} on host {holder.get('host')} (since {holder.get('started')})"
               if holder else "another process")
        where = os.path.dirname(self.path)
        return (f"MODEL_DIR {where} is in use by {who}: wait for that run to end or use another MODEL_DIR; "
                f"if that run is gone, delete {self.path}")

    def release(self):
        if self.held:
            holder = self.holder() or {}
            if holder.get("pid") == os.getpid() and holder.get("host") == socket.gethostname():
                self._remove_if_unchanged(holder)
            self.held = False

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
