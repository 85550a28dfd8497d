"""The files a run keeps in ``MODEL_DIR`` besides its checkpoints.

    run_config.json      what defines the run (model, prompt, data, optimiser ...); a restart that
                         changes any of it is refused, naming the field
    eval_metrics.jsonl   one line per evaluation, each step once (a resumed run first drops the lines
                         after the step it resumes from: they are evaluated again)
    stopped_early.json   the step early stopping ended the run at (a restart does not train on)
    train/, eval/        TensorBoard summaries (tensorboardX: no TensorFlow)
    export/              the best prompt (``export.py``)

Only process 0 writes; every process reads.
"""
from __future__ import annotations

import json
import logging
import os
from typing import Any, Dict, List, Optional

from xprompt_jax import export
from xprompt_jax.errors import ConfigError
from xprompt_jax.logs import is_main_process
from xprompt_jax.run.config import require_string

logger = logging.getLogger(__name__)

RUN_CONFIG = "run_config.json"
METRICS_FILE = "eval_metrics.jsonl"
STOPPED_EARLY = "stopped_early.json"
# Sections compared whole (a key added or removed is a change too); the others key by key, so a
# run_config.json written before a section gained a field still resumes.
WHOLE_SECTIONS = ("model", "prompt", "trainable")


def check_model_dir(model_dir) -> None:
    require_string("MODEL_DIR", model_dir, "train.model_dir")
    if "://" in model_dir:  # run_config, metrics, summaries and exports are plain files: a mounted bucket
        raise ConfigError(f"MODEL_DIR {model_dir} is a URL; the run writes plain files there too: mount the bucket "
                          "(gcsfuse BUCKET /tmp/gcs/BUCKET, as launch/tpu_pod.sh --model_dir=gs://... does) "
                          "and pass the mounted path")


def _differences(section: str, old, new) -> List[str]:
    if not isinstance(old, dict) or not isinstance(new, dict):
        return [] if old == new else [f"{section}: {old!r} -> {new!r}"]
    keys = set(old) | set(new) if section in WHOLE_SECTIONS else set(old) & set(new)
    return [f"{section}.{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in sorted(keys) if old.get(k) != new.get(k)]


def read_json_file(path: str, what: str):
    """A JSON file the project wrote, or None when absent; an unreadable one is one line naming it."""
    if not os.path.exists(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (ValueError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path} ({what}) is damaged ({err.__class__.__name__}: {err}); it is written whole "
                          "or not at all, so it was changed outside the run: restore it, or delete it to "
                          "record the current settings again") from None


def record_or_refuse(path: str, settings: Dict[str, Any], what: str) -> None:
    """Record the settings that define a run's outputs in ``path``, or refuse a re-run with other ones.

    Top-level entries present in both are compared (sections in ``WHOLE_SECTIONS`` whole, other dicts key
    by key, so a file written before an entry gained a field still resumes); the error names each field.
    """
    new = json.loads(json.dumps(settings))
    previous = read_json_file(path, what)
    if previous is None:
        if is_main_process():
            export.save_json(path, new)
        return
    diffs = [d for section in new if section in previous for d in _differences(section, previous[section], new[section])]
    if diffs:
        folder = os.path.dirname(path)
        raise ConfigError(f"MODEL_DIR {folder} holds {what} with different settings ({'; '.join(diffs)}); use a new "
                          "MODEL_DIR to start afresh, or restore the original settings to resume it")


class RunDir:
    """``MODEL_DIR``'s bookkeeping: the run's config, its metrics log and the early-stop marker."""

    def __init__(self, model_dir: str):
        self.path = model_dir
        self.metrics_path = os.path.join(model_dir, METRICS_FILE)
        self.export_dir = os.path.join(model_dir, export.EXPORT_DIR)

    # -- run_config.json --------------------------------------------------------------------------
    def check_config(self, identity: Dict[str, Any]) -> None:
        """Write ``run_config.json``, or refuse to continue a run written with different settings."""
        record_or_refuse(os.path.join(self.path, RUN_CONFIG), identity, "a run")

    # -- eval_metrics.jsonl -----------------------------------------------------------------------
    def history(self) -> List[dict]:
        """The evaluations so far. A last line cut short (what a full disk or a kill mid-write leaves) is
        dropped with a warning, and the file rewritten without it; a damaged line before it is one error."""
        if not os.path.exists(self.metrics_path):
            return []
        with open(self.metrics_path, encoding="utf-8", errors="replace") as f:
            lines = [line for line in f.read().splitlines() if line.strip()]
        records = []
        for number, line in enumerate(lines, 1):
            try:
                records.append(json.loads(line))
            except ValueError:
                if number < len(lines):
                    raise ConfigError(f"{self.metrics_path} line {number} is damaged ({line[:60]!r}); the file is "
                                      "appended a line at a time, so it was changed outside the run: restore it, "
                                      "or delete it (the evaluations are then missing from the history)") from None
                logger.warning(f"[train] the last line of {self.metrics_path} was cut short ({line[:60]!r}): dropped")
                self._rewrite(records)
        return records

    def _rewrite(self, records: List[dict]) -> None:
        if is_main_process():
            export.save_jsonl(self.metrics_path, records)

    def keep_history_through(self, step: int) -> List[dict]:
        """Drop evaluations after ``step`` (a resumed run repeats them); returns the kept lines."""
        lines = self.history()
        kept = [r for r in lines if r["step"] <= step]
        if len(kept) != len(lines):
            self._rewrite(kept)
        return kept

    def append_metrics(self, record: dict) -> None:
        if is_main_process():
            with open(self.metrics_path, "a") as f:
                f.write(json.dumps(record) + "\n")

    # -- stopped_early.json -----------------------------------------------------------------------
    def stopped_early_at(self) -> Optional[int]:
        record = read_json_file(os.path.join(self.path, STOPPED_EARLY), "the step early stopping ended the run at")
        return None if record is None else record["step"]

    def mark_stopped_early(self, step: int) -> None:
        if is_main_process():
            export.save_json(os.path.join(self.path, STOPPED_EARLY), {"step": step})


class Summaries:
    """TensorBoard scalars (tensorboardX: no TensorFlow), written by process 0 only."""

    def __init__(self, model_dir: str, enabled: bool = True):
        self.writers = {}
        if enabled and is_main_process():
            from tensorboardX import SummaryWriter
            self.writers = {name: SummaryWriter(os.path.join(model_dir, name)) for name in ("train", "eval")}

    def scalars(self, kind: str, step: int, values: Dict[str, float]):
        writer = self.writers.get(kind)
        if writer is not None:
            for k, v in values.items():
                writer.add_scalar(k, float(v), step)
            writer.flush()

    def close(self):
        for writer in self.writers.values():
            writer.close()
