"""Byte access to local folders and ``gs://`` buckets through one tensorstore key-value store.

Local paths and Cloud Storage paths take the same code path; only the kvstore spec differs, so what
the tests exercise on local files is what runs against a bucket.
"""
from __future__ import annotations

import os
import posixpath
import re
from typing import Optional

import tensorstore as ts

from xprompt_jax.errors import CheckpointError

_GCS = re.compile(r"^gs://([^/]+)/?(.*)$", re.DOTALL)


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
        return ts.KvStore.open(kvstore_spec(directory)).result()
    except Exception as err:  # tensorstore raises ValueError with its own text
        raise CheckpointError(f"Cannot open {directory}: {err}") from err


def read_bytes(directory: str, name: str) -> Optional[bytes]:
    """The bytes of ``directory/name``, or None if there is no such file."""
    try:
        result = _open(directory).read(name).result()
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
    keys = _open(path).list(ts.KvStore.KeyRange()).result()
    return sorted({k.decode().split("/", 1)[0] for k in keys})
