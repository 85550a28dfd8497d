"""Byte access to local folders and ``gs://`` buckets through one tensorstore key-value store.

Local paths and Cloud Storage paths take the same code path; only the kvstore spec differs, so what
the tests exercise on local files is what runs against a bucket. Every wait on a ``gs://`` path is bounded
(``XPROMPT_GCS_TIMEOUT`` seconds, default 60): without network tensorstore would retry for many minutes
with no message; instead the read fails with one line that names the path and says to copy it locally.
"""
from __future__ import annotations

import os
import posixpath
import re
from typing import Optional

import tensorstore as ts

from xprompt_jax.errors import CheckpointError

_GCS = re.compile(r"^gs://([^/]+)/?(.*)$", re.DOTALL)
TIMEOUT_ENV = "XPROMPT_GCS_TIMEOUT"
DEFAULT_TIMEOUT_S = 60.0


def timeout_s() -> float:
    """Seconds to wait on a ``gs://`` read: ``$XPROMPT_GCS_TIMEOUT``, else 60."""
    value = os.environ.get(TIMEOUT_ENV)
    if not value:
        return DEFAULT_TIMEOUT_S
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise CheckpointError(f"{TIMEOUT_ENV}={value!r} is not a number of seconds > 0")
    return seconds


def wait(future, path: str):
    """``future.result()``, bounded by ``timeout_s()`` when ``path`` is remote; a timeout is one
    ``CheckpointError`` naming the path and the fix. Use it for every tensorstore future on a path."""
    if not is_remote(path):
        return future.result()
    seconds = timeout_s()
    try:
        return future.result(timeout=seconds)
    except TimeoutError:
        raise CheckpointError(
            f"no answer from {path} within {seconds:g} s (no network, or no access to the bucket?): copy it to "
            f"a local folder (gsutil cp -r {path} DIR) and name the local copy instead, or allow longer with "
            f"{TIMEOUT_ENV}=SECONDS") from None


def is_remote(path: str) -> bool:
    return path.startswith("gs://")


def join(path: str, *parts: str) -> str:
    return posixpath.join(path, *parts) if is_remote(path) else os.path.join(path, *parts)


def kvstore_spec(directory: str) -> dict:
    """The tensorstore kvstore spec of a folder: ``file`` for local paths, ``gcs`` for ``gs://``."""
    match = _GCS.match(directory)
    if match:
        bucket, prefix = match.groups()
        prefix = prefix.rstrip("/")
        return {"driver": "gcs", "bucket": bucket, "path": f"{prefix}/" if prefix else ""}
    return {"driver": "file", "path": os.path.abspath(directory).rstrip("/") + "/"}


def _open(directory: str) -> ts.KvStore:
    try:
        return wait(ts.KvStore.open(kvstore_spec(directory)), directory)
    except CheckpointError:
        raise
    except Exception as err:  # tensorstore raises ValueError with its own text
        raise CheckpointError(f"Cannot open {directory}: {err}") from err


def read_bytes(directory: str, name: str) -> Optional[bytes]:
    """The bytes of ``directory/name``, or None if there is no such file."""
    try:
        result = wait(_open(directory).read(name), join(directory, name))
    except CheckpointError:
        raise
    except Exception as err:
        raise CheckpointError(f"Cannot read {join(directory, name)}: {err}") from err
    if result.state != "value":
        return None
    return bytes(result.value)


def exists(directory: str, name: str) -> bool:
    if not is_remote(directory):
        return os.path.exists(os.path.join(directory, name))
    return read_bytes(directory, name) is not None


def list_names(path: str) -> list:
    """Names directly below a folder (first path component of every key below a bucket prefix)."""
    if not is_remote(path):
        return sorted(os.listdir(path)) if os.path.isdir(path) else []
    keys = wait(_open(path).list(ts.KvStore.KeyRange()), path)
    return sorted({k.decode().split("/", 1)[0] for k in keys})
