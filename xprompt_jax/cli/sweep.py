"""``xprompt-jax sweep``: every cell of a grid (``xprompt_jax.Sweep`` in a gin file) as an ordinary run, then
the paper-style table.

    xprompt-jax sweep --gin_file=runs/sweep_demo.gin --gin.SWEEP_DIR="'/tmp/sweep'" [--dry_run]

Each cell parses its own gin files and bindings and calls its command (``train`` or ``xprompt``) in this
process, one after another: cells of the same frozen model share the loaded weights (``keep_loaded``) and,
through the compilation cache, the compiled programs. Stopped (killed, preempted, SIGTERM), the same command
resumes: finished cells are skipped and a half-done one continues from its checkpoint.
"""
from __future__ import annotations

import dataclasses
import functools
import os
from typing import Optional

import gin

from xprompt_jax.cli import gin_configurables as configured
from xprompt_jax.cli.gin_flags import parse_gin
from xprompt_jax.run.frozen_model import keep_loaded
from xprompt_jax.sweep import runner, table
from xprompt_jax.sweep.grid import Cell


def run_cell(cell: Cell, test_split: Optional[str] = None) -> dict:
    """Configure gin for this cell alone and run its command; what the table needs from the result (with
    ``test_split``, also the run's result scored on it)."""
    gin.clear_config()
    parse_gin(list(cell.files), [f"{name} = {value!r}" for name, value in cell.bindings])
    metric = configured.EvalConfig().metric
    result = configured.ENTRY_POINTS[cell.command]()
    if cell.command == "xprompt":
        pruned = [row for row in result["rows"] if row.get("ratio")]
        best = max(pruned or result["rows"], key=lambda row: (row[metric], -row["parameters"]))
        outcome = {"metric": metric, "trainable_parameters": best["parameters"]}
    else:
        outcome = {"metric": metric, "trainable_parameters": result["trainable_parameters"]}
    if test_split:
        outcome.update(test=test_score(cell.model_dir, test_split, metric), test_split=test_split)
    return outcome


def test_score(model_dir: str, split: str, metric: str) -> float:
    """The run's exported result on ``split`` under the cell's own data, model and evaluation settings: its
    best prompt (XPrompt: of the best ratio), or a fully fine-tuned model (``export/model``) alone."""
    from xprompt_jax.commands.evaluate import NO_PROMPT, evaluate
    data = dataclasses.replace(configured.DataConfig(), eval_split=split, eval_cache=None)
    model = configured.FrozenModel()
    fine_tuned = os.path.join(model_dir, "export", "model")
    if os.path.isdir(fine_tuned):
        metrics = evaluate(NO_PROMPT, data, dataclasses.replace(model, checkpoint=fine_tuned), configured.EvalConfig())
    else:
        metrics = evaluate(model_dir, data, model, configured.EvalConfig())
    return metrics[metric]


def sweep(dry_run: bool = False) -> int:
    grid = configured.Sweep()
    with keep_loaded():
        records = runner.run_sweep(grid, functools.partial(run_cell, test_split=grid.test_split), dry_run=dry_run)
    if dry_run:  # nothing written
        print(f"\n[sweep] dry run: {sum(r.get('status') == 'pending' for r in records)} of {len(records)} cells to run")
        return 0
    built = table.build_table(records)
    markdown = table.write_tables(built, grid.sweep_dir)
    done = sum(r.get("status") == "done" for r in records)
    print(f"\n[sweep] {done}/{len(records)} cells done; tables in {os.path.join(grid.sweep_dir, 'table.md')} "
          f"(.csv, .json, score_vs_parameters.png)\n")
    print(markdown)
    return 0
