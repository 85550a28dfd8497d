"""Run a sweep's cells one after another, resumably, and keep what each gave.

Each cell's outcome is ``<cell folder>/cell.json`` (written atomically when the cell ends): ``done`` with its
metrics, or ``failed`` with the error's first line. Running the same sweep again skips ``done`` cells,
retries ``failed`` ones, and resumes a cell that was stopped half-way from its own checkpoint (the cell is
an ordinary run in its MODEL_DIR). A SIGTERM or Ctrl-C ends the sweep after the run saved its checkpoint.

How a cell runs is the caller's (``cli/sweep.py`` parses its gin files and calls the command), so this
module reads no global gin state.
"""
from __future__ import annotations

import glob
import json
import logging
import os
import time
from typing import Any, Callable, Dict, List, Optional

from xprompt_jax import export
from xprompt_jax.stopping import Stopped
from xprompt_jax.sweep.grid import Cell, SweepGrid, cells

logger = logging.getLogger(__name__)

CELL_FILE = "cell.json"
METRICS_FILE = "eval_metrics.jsonl"


def read_cell(cell: Cell) -> Optional[dict]:
    path = os.path.join(cell.model_dir, CELL_FILE)
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            return json.load(f)
    except ValueError:
        logger.warning(f"[sweep] {path} is damaged: the cell runs again")
        return None


def _evaluations(path: str) -> List[dict]:
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8", errors="replace") as f:
        rows = []
        for line in f:
            try:
                rows.append(json.loads(line))
            except ValueError:
                continue
        return rows


def best_validation(cell: Cell, metric: str) -> Optional[float]:
    """The cell's best validation ``metric`` from its own ``eval_metrics.jsonl`` (checkpoint selection on
    validation, as the papers do); for XPrompt, the best over its rewound ratios' files."""
    if cell.command == "xprompt":
        paths = sorted(glob.glob(os.path.join(cell.model_dir, "rewind", "*", METRICS_FILE)))
    else:
        paths = [os.path.join(cell.model_dir, METRICS_FILE)]
    values = [row[metric] for path in paths for row in _evaluations(path) if isinstance(row.get(metric), (int, float))]
    return max(values) if values else None


def prompt_diagnostics(cell: Cell) -> Dict[str, Optional[float]]:
    """EPT's diagnostics of the exported prompt (mean L2 norm per token, mean pairwise cosine similarity of
    its tokens); none for a run that exports no prompt (full fine-tuning)."""
    path = os.path.join(cell.model_dir, export.EXPORT_DIR, export.PROMPT_FILE)
    if not os.path.exists(path):
        return {}
    import numpy as np

    from xprompt_jax import diagnostics
    metrics = diagnostics.prompt_metrics(np.load(path))
    cosine = metrics.get("prompt_cosine_similarity")
    return {"prompt_norm": float(metrics["prompt_token_norm_mean"]), "prompt_cosine": None if cosine is None else float(cosine)}


def run_sweep(grid: SweepGrid, run_cell: Callable[[Cell], Dict[str, Any]], dry_run: bool = False,
              say: Callable[[str], None] = print) -> List[dict]:
    """Every cell's record (``cell.json``'s content), running the cells not yet done. ``run_cell`` returns
    ``{'metric': name, 'trainable_parameters': n}`` (and ``'test'``: the score on the grid's test split) for
    a finished run and raises on failure."""
    todo = cells(grid)
    records = []
    for number, cell in enumerate(todo, 1):
        done = read_cell(cell)
        where = f"[sweep] {number}/{len(todo)} {cell.id}"
        if done is not None and done.get("status") == "done":
            say(f"{where}: done before, skipped")
            records.append(done)
            continue
        if dry_run:
            state = "failed before: would run again" if done else "would run"
            say(f"{where}: {state} ({cell.command}: {' '.join(cell.files)})")
            records.append({"cell": cell.id, "point": cell.point(), "status": "pending"})
            continue
        say(f"{where}: running ({cell.command}: {' '.join(cell.files)})")
        records.append(_run_one(cell, run_cell, say, where))
    return records


def _run_one(cell: Cell, run_cell, say, where) -> dict:
    started = time.time()
    record = {"cell": cell.id, "point": cell.point(), "command": cell.command, "files": list(cell.files),
              "bindings": {k: v for k, v in cell.bindings}}
    try:
        outcome = run_cell(cell)
    except (Stopped, KeyboardInterrupt):
        say(f"{where}: stopped; its checkpoint is kept: run the same sweep command to resume")
        raise
    except Exception as err:  # noqa: BLE001 - a failed cell is recorded and the sweep goes on
        message = (str(err).splitlines() or [type(err).__name__])[0][:400]
        record.update(status="failed", error=f"{type(err).__name__}: {message}", seconds=round(time.time() - started, 1))
        say(f"{where}: FAILED: {record['error']}")
    else:
        record.update(status="done", metric=outcome["metric"], validation=best_validation(cell, outcome["metric"]),
                      trainable_parameters=outcome.get("trainable_parameters"), seconds=round(time.time() - started, 1),
                      **prompt_diagnostics(cell))
        if outcome.get("test") is not None:
            record.update(test=outcome["test"], test_split=outcome.get("test_split"))
        if outcome.get("zero_shot"):
            record["zero_shot"] = outcome["zero_shot"]
        tested = f", test {record['test']}" if "test" in record else ""
        say(f"{where}: {outcome['metric']} {record['validation']}{tested} in {record['seconds']:.0f}s")
    os.makedirs(cell.model_dir, exist_ok=True)
    export.save_json(os.path.join(cell.model_dir, CELL_FILE), record)
    return record
