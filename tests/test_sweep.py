"""The sweep's grid, its resumable runner and its table (the end-to-end sweep on the demo is in test_demo).

The table's numbers are checked against NumPy on the same scores; the runner against a stand-in for a
run that finishes, fails, or is stopped half-way (as SIGTERM stops a real one).
"""
import json
import os

import numpy as np
import pytest

from xprompt_jax.errors import ConfigError
from xprompt_jax.stopping import Stopped
from xprompt_jax.sweep import runner
from xprompt_jax.sweep.grid import SweepGrid, cells
from xprompt_jax.sweep.table import build_table, to_csv, to_markdown


def _grid(tmp_path, **kw):
    base = dict(sweep_dir=str(tmp_path), methods={"pt": ["runs/prompt_tune.gin"], "xp": ["runs/demo_xprompt.gin"]},
                tasks=["rte", "cb"], seeds=[0, 1], learning_rates=[0.1, 0.3])
    return SweepGrid(**{**base, **kw})


def test_cells_cover_the_grid_with_their_bindings_and_folders(tmp_path):
    grid = _grid(tmp_path, models={"small": ["sizes/small.gin"], "base": {"files": ["sizes/base.gin"],
                                                                         "bindings": {"CHECKPOINT": "/ckpt"}}},
                 axes={"PROMPT_LENGTH": [5, 10]})
    out = cells(grid)
    assert len(out) == 2 * 2 * 2 * 2 * 2 * 2  # models x methods x tasks x lengths x rates x seeds
    assert len({c.model_dir for c in out}) == len(out)
    first = out[0]
    assert first.model == "small" and first.method == "pt" and first.seed == 0 and out[1].seed == 1  # seeds last
    bindings = dict(first.bindings)
    assert bindings["TASK"] == "rte" and bindings["LEARNING_RATE"] == 0.1 and bindings["SEED"] == 0
    assert bindings["MODEL_DIR"] == os.path.join(str(tmp_path), "cells", first.id) and bindings["PROMPT_LENGTH"] == 5
    assert first.files == ("sizes/small.gin", "runs/prompt_tune.gin") and first.command == "train"
    assert {c.command for c in out if c.method == "xp"} == {"xprompt"}
    assert dict(out[-1].bindings)["CHECKPOINT"] == "/ckpt"
    per_method = cells(_grid(tmp_path, learning_rates={"pt": [1e-3, 1e-2, 1e-1], "xp": [0.3]}))
    assert len([c for c in per_method if c.method == "pt"]) == 3 * 2 * 2
    assert {c.learning_rate for c in per_method if c.method == "xp"} == {0.3}
    lstm = cells(_grid(tmp_path, methods={"lstm": {"files": ["runs/ptuning.gin"], "bindings": {"PTUNING_ENCODER": "lstm"}}}))
    assert dict(lstm[0].bindings)["PTUNING_ENCODER"] == "lstm" and lstm[0].files == ("runs/ptuning.gin",)


def test_bad_grids_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="learning_rates names methods"):
        _grid(tmp_path, learning_rates={"nope": [0.1]})
    with pytest.raises(ConfigError, match="methods is empty"):
        _grid(tmp_path, methods={})
    with pytest.raises(ConfigError, match="must be a list of gin files"):
        _grid(tmp_path, methods={"pt": "runs/prompt_tune.gin"})


def _record(method, task, lr, seed, score, params=100):
    return {"cell": f"{method}-{task}-{lr}-{seed}", "status": "done", "metric": "accuracy", "validation": score,
            "trainable_parameters": params,
            "point": {"method": method, "task": task, "model": None, "learning_rate": lr, "seed": seed}}


def test_table_chooses_the_rate_on_validation_and_averages_like_the_papers():
    scores = {("a", "rte", 0.1): [60.0, 64.0, 62.0], ("a", "rte", 0.3): [70.0, 50.0, 66.0],
              ("a", "cb", 0.1): [80.0, 90.0, 85.0], ("a", "cb", 0.3): [70.0, 72.0, 71.0],
              ("b", "rte", 0.1): [55.0, 56.0, 57.0]}
    records = [_record(m, t, lr, s, v) for (m, t, lr), vs in scores.items() for s, v in enumerate(vs)]
    records.append({"cell": "b-cb", "status": "failed", "error": "DataError: no such task",
                    "point": {"method": "b", "task": "cb", "model": None, "learning_rate": 0.1, "seed": 0}})
    table = build_table(records)
    rows = {row["label"]: row for row in table["rows"]}
    rte = rows["a"]["cells"]["rte"]  # means 62.0 at 0.1 against 62.0 at 0.3: the first best is kept
    assert rte["learning_rate"] == 0.1 and rte["mean"] == pytest.approx(62.0)
    assert rte["std"] == pytest.approx(np.std([60.0, 64.0, 62.0], ddof=1))
    cb = rows["a"]["cells"]["cb"]
    assert cb["learning_rate"] == 0.1 and cb["mean"] == pytest.approx(85.0)
    assert rows["a"]["average"] == pytest.approx(np.mean([62.0, 85.0]))
    assert rows["b"]["average"] is None  # a task missing (its cells failed): no average over fewer tasks
    assert table["failed"] == [{"cell": "b-cb", "error": "DataError: no such task"}]
    markdown = to_markdown(table)
    assert "| a | 100 | 62.0 ± 2.0 (lr 0.1) | 85.0 ± 5.0 (lr 0.1) | 73.5 | - | - |" in markdown
    assert "failed: b-cb: DataError" in markdown
    assert to_csv(table).splitlines()[1].startswith("a,rte,accuracy,62.0,2.0,3,0.1,100")


def test_runner_records_failures_goes_on_and_resumes_after_a_stop(tmp_path):
    grid = SweepGrid(sweep_dir=str(tmp_path), methods={"pt": ["runs/prompt_tune.gin"]}, tasks=["t"],
                     seeds=[0, 1, 2, 3])
    calls = []

    def run_cell(cell):
        calls.append(cell.seed)
        os.makedirs(cell.model_dir, exist_ok=True)
        with open(os.path.join(cell.model_dir, runner.METRICS_FILE), "w") as f:
            f.write(json.dumps({"step": 2, "accuracy": 10.0 * cell.seed}) + "\n")
            f.write(json.dumps({"step": 4, "accuracy": 10.0 * cell.seed + 5}) + "\n")
        if cell.seed == 1:
            raise ValueError("learning rate too high\nmore detail")
        if cell.seed == 2 and len(calls) == 3:
            raise Stopped("preempted at step 3; checkpoint saved")
        return {"metric": "accuracy", "trainable_parameters": 7}

    with pytest.raises(Stopped):
        runner.run_sweep(grid, run_cell, say=lambda _: None)
    assert calls == [0, 1, 2]
    said = []
    records = runner.run_sweep(grid, run_cell, say=said.append)
    assert calls == [0, 1, 2, 1, 2, 3]  # the done cell skipped, the failed one retried, the stopped one resumed
    assert sum("done before, skipped" in line for line in said) == 1
    by_seed = {r["point"]["seed"]: r for r in records}
    assert by_seed[1]["status"] == "failed" and by_seed[1]["error"] == "ValueError: learning rate too high"
    assert by_seed[3]["validation"] == 35.0 and by_seed[3]["trainable_parameters"] == 7  # the best evaluation
    dry = runner.run_sweep(grid, run_cell, dry_run=True, say=said.append)
    assert calls == [0, 1, 2, 1, 2, 3] and [r["status"] for r in dry] == ["done", "pending", "done", "done"]


def test_table_reports_test_scores_at_the_rate_chosen_on_validation():
    """EPT's protocol: choose the rate on validation, report the test split; the lower validation rate's
    better test scores must not be picked."""
    pairs = {0.1: [(70.0, 50.0), (72.0, 52.0)], 0.3: [(60.0, 90.0), (62.0, 92.0)]}
    records = [dict(_record("a", "rte", lr, s, v), test=t, test_split="ept_test")
               for lr, seeds in pairs.items() for s, (v, t) in enumerate(seeds)]
    table = build_table(records)
    cell = table["rows"][0]["cells"]["rte"]
    assert table["tested"] and table["split"] == "ept_test"
    assert cell["learning_rate"] == 0.1 and cell["scores"] == [50.0, 52.0] and cell["validation_mean"] == 71.0
    assert "Test (ept_test) accuracy" in to_markdown(table)
    assert not build_table(records[:1] + [_record("a", "rte", 0.3, 5, 99.0)])["tested"]  # one cell untested


def test_zero_shot_columns_follow_the_rate_chosen_on_the_source_task_and_stay_out_of_the_average():
    """Lester et al.'s Table 1 as a sweep: SQuAD-trained cells scored zero-shot on out-of-domain sets."""
    cells = {0.1: [(80.0, {"ood": 40.0}), (82.0, {"ood": 42.0})], 0.3: [(70.0, {"ood": 90.0}), (71.0, {"ood": 91.0})]}
    records = [dict(_record("pt", "squad", lr, s, v), metric="f1",
                    zero_shot={"mrqa_ood": {"metric": "f1", "score": z["ood"]}})
               for lr, seeds in cells.items() for s, (v, z) in enumerate(seeds)]
    table = build_table(records)
    assert table["tasks"] == ["squad", "squad -> mrqa_ood"] and not table["tested"]
    row = table["rows"][0]
    zero_shot = row["cells"]["squad -> mrqa_ood"]
    assert zero_shot["learning_rate"] == 0.1 and zero_shot["scores"] == [40.0, 42.0]  # not the better 0.3 column
    assert zero_shot["std"] == pytest.approx(np.std([40.0, 42.0], ddof=1)) and zero_shot["metric"] == "f1"
    assert row["average"] == pytest.approx(81.0)  # the trained task's mean alone
    assert "| squad -> mrqa_ood |" in to_markdown(table).splitlines()[0] + "|"
