"""The built-in demo, shortened (--quick): prompt tuning learns what the frozen model cannot do alone.

One CLI run in a fresh process, as a user runs it: the package installed from its wheel (not editable)
and started from another directory, so the gin files and the demo vocabulary must come from the
installed package. It pre-trains the demo T5, measures the frozen model without and with a random
prompt, prompt-tunes it and runs XPrompt. The assertions are the demo's claims, with the margins the
README states. The run is the session fixture ``demo`` (conftest.py), which the notebook test
reuses for its pre-trained model.
"""
import json
import os

import numpy as np
import pytest


def test_prompt_tuning_beats_no_prompt_and_a_random_prompt(demo):
    _, rows, _, stdout = demo
    tuned = rows["prompt tuning"]["accuracy"]
    assert rows["frozen model, no prompt"]["accuracy"] < 50.0
    assert tuned >= 90.0
    assert tuned >= rows["frozen model, no prompt"]["accuracy"] + 40.0
    assert tuned >= rows["random untrained prompt"]["accuracy"] + 40.0
    assert "| prompt tuning | 0% | 10 | 640 |" in stdout


def test_prompt_tuning_drives_the_loss_down_and_accuracy_above_chance(demo):
    work, _, _, _ = demo
    with open(work / "xprompt_quick" / "stage1" / "result.json") as f:
        stage1 = json.load(f)
    losses = [loss for _, loss in stage1["train_loss"]]
    assert losses[-1] < 0.25 * losses[0]
    majority = next(r for r in demo[2]["rows"] if r["stage"].endswith("(majority)"))["accuracy"]
    assert 30.0 < majority < 60.0  # 'max' of 3-8 random digits is 9 about 43% of the time
    assert stage1["best"]["accuracy"] > majority + 40.0


def test_xprompt_keeps_accuracy_at_half_the_parameters(demo):
    work, rows, results, _ = demo
    pruned = [r for r in results["rows"] if r["stage"].startswith("xprompt")]
    assert [r["ratio"] for r in pruned] == [0.5, 0.8]
    half = pruned[0]
    assert half["parameters"] == 320
    assert half["accuracy"] >= rows["prompt tuning"]["accuracy"] - 5.0
    for path in results["heatmaps"]:
        with open(path, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_no_tensorflow_start_up_noise_and_no_cache_rewritten(demo):
    """TensorFlow's fd-2 start-up lines are filtered (data/native_noise.py), and the quick caches are the
    ones the runs read, so no cache is written twice."""
    work, _, _, stdout = demo
    stderr = (work / "demo_stderr.txt").read_text()
    for noise in ("absl::InitializeLog", "cudart_stub", "precompiled_charsmap"):
        assert noise not in stderr + stdout, noise
    assert "rewriting the cache" not in stderr + stdout
    assert sorted(os.listdir(work / "data" / "demo_pretrain")) == ["quick-train-12-10", "quick-validation-12-10"]


def _markdown_rows(text: str, header: str):
    """The rows of the Markdown table that starts with ``header`` in ``text`` (separator line skipped)."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == header)
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows


def test_the_printed_table_has_the_readmes_rows_and_columns_once(demo):
    """What a user reads in the README is what the demo prints: the same columns, the same kinds of rows
    (the quick demo prunes to 50% and 80% where the README's full run shows 30..90%), printed once."""
    from helpers import REPO
    _, _, _, stdout = demo
    readme = (REPO / "README.md").read_text()
    header = "| stage | pruned | prompt tokens | trainable parameters | accuracy (%) |"
    assert stdout.count(header) == 1 and readme.count(header) == 1
    printed, documented = _markdown_rows(stdout, header), _markdown_rows(readme, header)
    assert {row[0] for row in printed} == {row[0] for row in documented}
    assert all(len(row) == 5 for row in printed + documented)
    assert "[xprompt] stage 3:" in stdout and "WARNING:root:" not in stdout


def _best(path):
    with open(path) as f:
        return max(json.loads(line)["accuracy"] for line in f if line.strip())


def test_sweep_on_the_demo_grid_tables_each_cells_own_scores_and_resumes(demo, tmp_path, capsys):
    """``xprompt-jax sweep`` on the demo (2 methods x 2 learning rates x 2 seeds from the demo's pre-trained
    T5, plus a method whose run file does not exist): the failing cells are recorded and the rest run; the
    table's every number is the cells' own eval_metrics.jsonl; a second run skips what is done."""
    from xprompt_jax.cli.main import main
    work, sweep_dir = demo[0], tmp_path / "sweep"
    grid = tmp_path / "grid.gin"
    grid.write_text("include 'runs/sweep_demo.gin'\nxprompt_jax.Sweep.methods = {'prompt_tuning': "
                    "['runs/demo_prompt_tune.gin'], 'ept': ['runs/ept.gin'], 'broken': ['runs/no_such_run.gin']}\n")
    args = ["sweep", f"--gin_file={grid}", f"--gin.SWEEP_DIR='{sweep_dir}'", "--gin.DEMO_STEPS=6",
            f"--gin.DEMO_CHECKPOINT='{work / 'pretrain' / 'export' / 'model'}'", "--gin.DEMO_EVAL_PERIOD=3",
            f"--gin.DEMO_DATA_DIR='{work / 'data'}'"]
    assert main(args) == 0
    first = capsys.readouterr().out
    table = json.loads((sweep_dir / "table.json").read_text())
    assert [row["label"] for row in table["rows"]] == ["prompt_tuning", "ept"] and len(table["failed"]) == 4
    assert all("no_such_run.gin" in failed["error"] for failed in table["failed"])
    for row in table["rows"]:
        cell = row["cells"]["demo_max_no_keyword"]
        scores = {lr: [_best(sweep_dir / "cells" / f"{row['label']}__demo_max_no_keyword__lr={lr}__seed={seed}"
                             / "eval_metrics.jsonl") for seed in (0, 1)] for lr in ("0.1", "0.3")}
        chosen = max(scores, key=lambda lr: np.mean(scores[lr]))
        assert cell["learning_rate"] == float(chosen) and cell["scores"] == scores[chosen]
        assert cell["mean"] == pytest.approx(np.mean(scores[chosen]))
        assert cell["std"] == pytest.approx(np.std(scores[chosen], ddof=1))
    assert "| prompt_tuning | 640 |" in first and (sweep_dir / "table.md").read_text() in first
    assert (sweep_dir / "score_vs_parameters.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    os.remove(sweep_dir / "cells" / "ept__demo_max_no_keyword__lr=0.3__seed=1" / "cell.json")  # as if killed
    assert main(args) == 0
    second = capsys.readouterr().out
    assert second.count("done before, skipped") == 7 and "ept__demo_max_no_keyword__lr=0.3__seed=1: running" in second
    assert json.loads((sweep_dir / "table.json").read_text())["rows"] == table["rows"]


def test_sweep_scores_each_cells_result_on_the_test_split_and_zero_shot_and_tables_it(demo, tmp_path, capsys):
    """``Sweep.test_split`` (EPT's protocol reports ``ept_test`` at the rate chosen on validation): each cell's
    exported result is scored again on that split. Named the validation split here, the score must equal the
    run's own best validation evaluation, which the export came from; the table then reports it as test.
    ``Sweep.zero_shot_tasks`` (Lester et al.'s QA table): the result on another task equals ``evaluate``."""
    from xprompt_jax.cli.main import main
    from xprompt_jax.commands.evaluate import evaluate
    from xprompt_jax.models.config import t5_config
    from xprompt_jax.run.config import DataConfig, EvalConfig, FrozenModel
    work, sweep_dir = demo[0], tmp_path / "sweep"
    args = ["sweep", "--gin_file=runs/sweep_demo.gin", f"--gin.SWEEP_DIR='{sweep_dir}'", "--gin.DEMO_STEPS=6",
            f"--gin.DEMO_CHECKPOINT='{work / 'pretrain' / 'export' / 'model'}'", "--gin.DEMO_EVAL_PERIOD=3",
            f"--gin.DEMO_DATA_DIR='{work / 'data'}'", "--gin.xprompt_jax.Sweep.seeds=[0]",
            "--gin.xprompt_jax.Sweep.learning_rates=[0.3]", "--gin.xprompt_jax.Sweep.test_split='validation'",
            "--gin.xprompt_jax.Sweep.zero_shot_tasks=['demo_min_no_keyword']"]
    assert main(args) == 0
    out = capsys.readouterr().out
    table = json.loads((sweep_dir / "table.json").read_text())
    assert table["tested"] and table["split"] == "validation" and "Test (validation) accuracy" in out
    for row in table["rows"]:
        cell_dir = sweep_dir / "cells" / f"{row['label']}__demo_max_no_keyword__lr=0.3__seed=0"
        record = json.loads((cell_dir / "cell.json").read_text())
        assert record["test"] == pytest.approx(_best(cell_dir / "eval_metrics.jsonl"))
        assert row["cells"]["demo_max_no_keyword"]["scores"] == [record["test"]]
        alone = evaluate(str(cell_dir), DataConfig(task="demo_min_no_keyword", cache_dir=str(work / "data"),
                                                   input_length=12, target_length=4, batch_size=64),
                         FrozenModel(str(work / "pretrain" / "export" / "model"), t5_config("t5_1_1_demo")),
                         EvalConfig(mode="rank"))
        assert record["zero_shot"]["demo_min_no_keyword"] == {"metric": "accuracy", "score": pytest.approx(alone["accuracy"])}
        assert row["cells"]["demo_max_no_keyword -> demo_min_no_keyword"]["scores"] == [
            record["zero_shot"]["demo_min_no_keyword"]["score"]]


def test_transfer_matrix_on_two_demo_tasks(demo, tmp_path):
    """``xprompt-jax transfer``: the demo's XPrompt prompt (tuned on max) and a random prompt (for min) on both
    tasks: the matrices and heatmaps are written, each score equals evaluating that prompt alone, and the
    tuned prompt transfers worse to min than it scores on its own task."""
    from xprompt_jax import assembly
    from xprompt_jax.cli.main import main
    from xprompt_jax.models.config import t5_config
    from xprompt_jax.run.config import DataConfig, EvalConfig, FrozenModel
    work, out = demo[0], tmp_path / "transfer"
    tuned = np.load(work / "xprompt_quick" / "export" / "prompt.npy")
    np.save(tmp_path / "min.npy", np.random.RandomState(0).normal(size=tuned.shape).astype(np.float32))
    prompts = {"demo_max_no_keyword": str(work / "xprompt_quick"), "demo_min_no_keyword": str(tmp_path / "min.npy")}
    checkpoint = work / "pretrain" / "export" / "model"
    assert main(["transfer", "--gin_file=models/t5_1_1.gin", "--gin_file=sizes/demo.gin", "--gin_file=runs/transfer.gin",
                 f"--gin.PROMPTS={prompts!r}", f"--gin.OUTPUT_DIR='{out}'", f"--gin.CHECKPOINT='{checkpoint}'",
                 f"--gin.DATA_CACHE_DIR='{work / 'data'}'", "--gin.INPUT_LENGTH=12", "--gin.TARGET_LENGTH=4",
                 "--gin.BATCH_SIZE=100"]) == 0
    record = json.loads((out / "transfer.json").read_text())
    assert record["how"] == [["rank", "rank"], ["rank", "rank"]] and record["relative"][0][0] == 1.0
    for name in ("transfer_relative.png", "prompt_cosine.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "scores.csv").read_text().startswith("prompt \\ task,demo_max_no_keyword,demo_min_no_keyword")
    data = DataConfig(task="demo_max_no_keyword", cache_dir=str(work / "data"), input_length=12, target_length=4,
                      batch_size=100)
    split, vocabulary = assembly.open_eval_data(data)
    config, frozen = assembly.open_model(FrozenModel(str(checkpoint), t5_config("t5_1_1_demo")), vocabulary=vocabulary)
    model, trainable, masks = assembly.prompted_from_saved(config, assembly.read_saved_prompt(str(work / "xprompt_quick")))
    alone = assembly.evaluator_for(model, split, vocabulary, data, EvalConfig(mode="rank"))(trainable, frozen, masks)
    assert record["scores"][0][0] == pytest.approx(alone["accuracy"])
    assert record["scores"][0][1] < record["scores"][0][0]


def test_evaluate_with_no_prompt_scores_a_fine_tuned_model_as_its_run_did(demo):
    """``PROMPT_SOURCE='none'`` (model tuning's column of the QA transfer table): the demo's pre-trained model,
    a full-model run's export, scored alone on its validation cache gives the run's own last evaluation."""
    import json

    from xprompt_jax.commands.evaluate import NO_PROMPT, evaluate
    from xprompt_jax.models.config import t5_config
    from xprompt_jax.run.config import DataConfig, EvalConfig, FrozenModel
    work = demo[0]
    with open(work / "pretrain" / "eval_metrics.jsonl") as f:
        last = [json.loads(line) for line in f if line.strip()][-1]
    metrics = evaluate(NO_PROMPT, data=DataConfig(eval_cache=str(work / "data" / "demo_pretrain" / "quick-validation-12-10"),
                                                  batch_size=64),
                       model=FrozenModel(str(work / "pretrain" / "export" / "model"), t5_config("t5_1_1_demo")),
                       evaluation=EvalConfig(mode="decode"))
    assert metrics["accuracy"] == pytest.approx(last["accuracy"]) and 0 < metrics["accuracy"]
