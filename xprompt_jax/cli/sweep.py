"""``xprompt-jax sweep``: every cell of a grid (``xprompt_jax.Sweep`` in a gin file) as an ordinary run, then
the paper-style table.

    xprompt-jax sweep --gin_file=runs/sweep_demo.gin --gin.SWEEP_DIR="'/tmp/sweep'" [--dry_run]

Each cell parses its own gin files and bindings and calls its command (``train`` or ``xprompt``) in this
process, one after another: cells of the same frozen model share the loaded weights (``keep_loaded``) and,
through the compilation cache, the compiled programs. Stopped (killed, preempted, SIGTERM), the same command
resumes: finished cells are skipped and a half-done one continues from its checkpoint.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
from typing import Optional, Sequence

import gin

from xprompt_jax.cli import gin_configurables as configured
from xprompt_jax.cli.gin_flags import parse_gin
from xprompt_jax.run.frozen_model import keep_loaded, not_kept
from xprompt_jax.sweep import runner, table
from xprompt_jax.sweep.grid import Cell


def run_cell(cell: Cell, test_split: Optional[str] = None, zero_shot_tasks: Sequence[str] = ()) -> dict:
    """Configure gin for this cell alone and run its command; what the table needs from the result (with
    ``test_split``, also the run's result scored on it; with ``zero_shot_tasks``, on each of those)."""
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
    if test_split or zero_shot_tasks:
        outcome.update(score_result(cell, test_split, zero_shot_tasks, metric))
    return outcome


def score_result(cell: Cell, test_split: Optional[str], zero_shot_tasks: Sequence[str], metric: str) -> dict:
    """The run's exported result (its best prompt, XPrompt's of the best ratio, or a fully fine-tuned model
    alone: ``export/model``) under the cell's own data, model and evaluation settings, on the test split of
    its task and zero-shot on other tasks (``transfer``'s scoring: QQP's labels renamed into MRPC's ...)."""
    from xprompt_jax import assembly
    from xprompt_jax.commands.transfer import primary_metric
    from xprompt_jax.commands.transfer import score_result as score_on
    task = cell.point()["task"]
    data = dataclasses.replace(configured.DataConfig(), eval_cache=None)
    model, evaluation = configured.FrozenModel(), configured.EvalConfig()
    fine_tuned = os.path.join(cell.model_dir, "export", "model")
    prompt = None if os.path.isdir(fine_tuned) else assembly.read_saved_prompt(cell.model_dir)
    out: dict = {}
    with not_kept() if prompt is None else contextlib.nullcontext():  # a fine-tuned model is read once
        if prompt is None:
            model = dataclasses.replace(model, checkpoint=fine_tuned)
        config, frozen = assembly.open_model(model, data.seed)
        if test_split:
            scored = score_on(task, prompt, [task], dataclasses.replace(data, eval_split=test_split), evaluation,
                              config, frozen)[task]["metrics"]
            out.update(test=scored[metric], test_split=test_split)
        if zero_shot_tasks:
            scored = score_on(task, prompt, zero_shot_tasks, dataclasses.replace(data, eval_split="validation"),
                              evaluation, config, frozen)
            out["zero_shot"] = {}
            for target, result in scored.items():
                name = primary_metric(result["metrics"], metric)
                out["zero_shot"][target] = {"metric": name, "score": result["metrics"][name]}
    return out


def sweep(dry_run: bool = False) -> int:
    grid = configured.Sweep()
    cell_runner = functools.partial(run_cell, test_split=grid.test_split, zero_shot_tasks=tuple(grid.zero_shot_tasks))
    with keep_loaded():
        records = runner.run_sweep(grid, cell_runner, dry_run=dry_run)
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
