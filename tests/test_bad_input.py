"""Issue 15 end to end through the CLI: bad settings are one line and exit 2 before any work; a
diverging run stops naming the step and exports nothing; a NaN prompt is refused by evaluate and
ensemble; Ctrl-C is one line (exit 130).

Refusals that happen before JAX runs anything are driven through ``main.main`` in this process (fast);
runs that must train, diverge or be interrupted run the CLI in a subprocess.
"""
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
from cli_runs import cli, cli_env, numbered, run_cli
from helpers import REPO, shared_path, train_command, write_label_task

from xprompt_jax.cli import main as cli_main
from xprompt_jax.run.lock import LOCK_FILE

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad_input_data")
    vocab = shared_path("fixtures", "t5_sentencepiece.model")
    return {"train": write_label_task(root / "train", vocab, n=32),
            "eval": write_label_task(root / "eval", vocab, n=16, seed=1),
            "checkpoint": str(shared_path("fixtures", "t5x_t5_1_1_tiny", "checkpoint_3"))}


def _train_args(model_dir, data, steps=4, *extra):
    return train_command(model_dir, data, steps, 2, 2)[3:] + ["--gin.xprompt_jax.MeshConfig.data=1", *extra]


def _xprompt_args(model_dir, data, *extra):
    return ["xprompt", "--gin_file=sizes/prompt_tuning_test.gin", "--gin_file=runs/xprompt.gin",
            f"--gin.MODEL_DIR='{model_dir}'", f"--gin.CHECKPOINT='{data['checkpoint']}'",
            f"--gin.xprompt_jax.DataConfig.train_cache='{data['train']}'",
            f"--gin.xprompt_jax.DataConfig.eval_cache='{data['eval']}'",
            "--gin.BATCH_SIZE=8", "--gin.TRAIN_STEPS=2", "--gin.EVAL_PERIOD=2", "--gin.CHECKPOINT_PERIOD=2",
            "--gin.PROMPT_LENGTH=4", "--gin.PIECES=2", "--gin.RATIOS=[0.5]", "--gin.xprompt_jax.MeshConfig.data=1",
            "--gin.xprompt_jax.xprompt.heatmaps_png=False", *extra]


def refused(args, capsys, *names):
    """``main(args)`` exits 2 with one stderr line naming every one of ``names`` (no traceback)."""
    capsys.readouterr()
    code = cli_main.main(list(args))
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    for name in names:
        assert name in err, err
    return err


def _files(folder):
    return sorted(os.path.relpath(os.path.join(r, f), folder) for r, _, fs in os.walk(folder) for f in fs)


@pytest.mark.parametrize("binding,name", [
    ("BATCH_SIZE=0", "BATCH_SIZE"), ("BATCH_SIZE=-8", "BATCH_SIZE"), ("BATCH_SIZE='eight'", "BATCH_SIZE"),
    ("TRAIN_STEPS=0", "TRAIN_STEPS"), ("TRAIN_STEPS=-5", "TRAIN_STEPS"),
    ("EVAL_PERIOD=0", "EVAL_PERIOD"), ("CHECKPOINT_PERIOD=0", "CHECKPOINT_PERIOD"),
    ("BATCH_SIZ=4", "BATCH_SIZE"),  # a misspelt macro names the closest one
    ("xprompt_jax.train.batch_size=4", "xprompt_jax.DataConfig.batch_size"),  # an old binding name
])
def test_a_bad_setting_is_one_line_before_any_work(data, tmp_path, capsys, binding, name):
    run = tmp_path / "run"
    refused(_train_args(run, data) + [f"--gin.{binding}"], capsys, name)
    assert not run.exists()


def test_ratios_not_a_list_is_one_line_before_any_work(data, tmp_path, capsys):
    run = tmp_path / "xp"
    refused(_xprompt_args(run, data, "--gin.RATIOS=0.5"), capsys, "RATIOS")
    assert not run.exists()


def test_a_ratio_that_prunes_the_whole_prompt_is_refused_before_stage_1(data, tmp_path, capsys):
    run = tmp_path / "xp"
    refused(_xprompt_args(run, data, "--gin.RATIOS=[0.5, 0.99]"), capsys, "0.99")
    assert not (run / "stage1").exists()


def test_an_unusable_model_dir_is_one_line(data, tmp_path, capsys):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    refused(_train_args(a_file, data), capsys, str(a_file), "is a file")
    refused(_train_args(a_file / "run", data), capsys, str(a_file / "run"), "under a file")
    assert a_file.read_text() == "x"
    if os.geteuid() != 0:  # root writes anywhere: permissions cannot be tested there
        locked = tmp_path / "read_only"
        locked.mkdir()
        locked.chmod(0o555)
        try:
            refused(_train_args(locked / "run", data), capsys, str(locked / "run"))
            refused(_train_args(locked, data), capsys, str(locked), "not writable")
        finally:
            locked.chmod(0o755)


def test_a_second_run_on_a_locked_model_dir_is_refused_before_any_work(data, tmp_path, capsys):
    import socket
    run = tmp_path / "run"
    run.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        (run / LOCK_FILE).write_text(json.dumps({"host": socket.gethostname(), "pid": holder.pid,
                                                 "started": "2026-01-01 00:00:00"}))
        refused(_train_args(run, data), capsys, f"pid {holder.pid}", "in use")
        assert _files(run) == [LOCK_FILE]  # nothing written besides the other run's lock
        assert json.loads((run / LOCK_FILE).read_text())["pid"] == holder.pid
    finally:
        holder.kill()
        holder.wait()


def test_an_unknown_eval_metric_is_refused_before_training(data, tmp_path, capsys):
    run = tmp_path / "run"
    refused(_train_args(run, data, 4, "--gin.EVAL_METRIC='f1_macro'"), capsys, "EVAL_METRIC", "accuracy")
    assert _files(run) == []  # no run_config, no checkpoint, no summaries


def test_a_finished_xprompt_dir_rerun_with_other_settings_is_refused_naming_the_field(data, tmp_path, capsys):
    run = tmp_path / "xp"
    assert cli_main.main(_xprompt_args(run, data)) == 0
    before = {f: os.path.getmtime(run / f) for f in _files(run)}
    for binding, field in (("xprompt_jax.xprompt.variant='random'", "variant"),
                           ("xprompt_jax.xprompt.level='token'", "level"),
                           ("RATIOS=[0.25]", "ratios"),
                           ("xprompt_jax.xprompt.reverse=True", "reverse")):
        refused(_xprompt_args(run, data, f"--gin.{binding}"), capsys, f"{field}:")
    assert {f: os.path.getmtime(run / f) for f in _files(run)} == before


# ------------------------------------------------------------------------------------------------
# Subprocess runs: divergence, NaN prompts, Ctrl-C
# ------------------------------------------------------------------------------------------------
def _stderr_lines(command):
    proc = subprocess.run(command, capture_output=True, text=True, env=cli_env(), cwd=str(REPO), timeout=240)
    return proc.returncode, [line for line in proc.stderr.splitlines() if line.strip()], proc.stdout


def test_a_diverging_run_stops_naming_the_step_and_exports_nothing(data, tmp_path):
    run = tmp_path / "run"
    code, err, out = _stderr_lines(cli(*_train_args(run, data, 4, "--gin.LEARNING_RATE=1e39")))
    assert code == 2 and len(err) == 1, "\n".join(err)
    assert "step 1 is not finite" in err[0] and "nothing was exported" in err[0], err[0]
    assert not (run / "export" / "prompt.npy").exists()
    assert numbered(run / "checkpoints") == []


def test_a_divergence_after_a_checkpoint_keeps_that_checkpoint(data, tmp_path):
    """A run checkpointed at step 2 then restarted with a rate that overflows (run_config.json edited so
    the restart is allowed) stops at step 3, keeps checkpoint 2 finite, and writes no export."""
    run = tmp_path / "run"
    code, err, _ = _stderr_lines(cli(*_train_args(run, data, 2)))
    assert code == 0, "\n".join(err)
    exported = np.load(run / "export" / "prompt.npy")
    config = json.loads((run / "run_config.json").read_text())
    config["learning_rate"]["learning_rate"] = 1e39
    (run / "run_config.json").write_text(json.dumps(config))
    code, err, _ = _stderr_lines(cli(*_train_args(run, data, 4, "--gin.LEARNING_RATE=1e39")))
    assert code == 2 and len(err) == 1, "\n".join(err)
    assert "step 3 is not finite" in err[0] and f"{run}/checkpoints/2" in err[0], err[0]
    assert numbered(run / "checkpoints") == [2]
    np.testing.assert_array_equal(np.load(run / "export" / "prompt.npy"), exported)  # the old export untouched


@pytest.mark.parametrize("command", ["evaluate", "ensemble"])
def test_a_nan_prompt_is_refused_by_evaluate_and_ensemble(data, tmp_path, capsys, command):
    prompt = tmp_path / "prompt.npy"
    values = np.ones((4, 4), np.float32)
    values[1, 2] = np.nan
    np.save(prompt, values)
    good = tmp_path / "good.npy"
    np.save(good, np.ones((4, 4), np.float32))
    source = (f"--gin.PROMPT_SOURCE='{prompt}'" if command == "evaluate"
              else f"--gin.PROMPT_SOURCES=['{good}', '{prompt}']")
    refused([command, "--gin_file=sizes/prompt_tuning_test.gin", f"--gin_file=runs/{'eval' if command == 'evaluate' else 'ensemble'}.gin",
             source, f"--gin.CHECKPOINT='{data['checkpoint']}'", f"--gin.EVAL_CACHE='{data['eval']}'",
             "--gin.BATCH_SIZE=8"], capsys, str(prompt), "non-finite")


def test_ctrl_c_is_one_line_and_exit_130(data, tmp_path):
    run = tmp_path / "run"
    result = run_cli(cli(*_train_args(run, data, 100000, "--gin.xprompt_jax.ScheduleConfig.log_period=1")),
                     lambda lines: any("] 3/100000 " in line for line in lines), sig=signal.SIGINT)
    assert result.signalled and result.returncode == 130, result.output[-3000:]
    assert "Traceback" not in result.output and "KeyboardInterrupt" not in result.output, result.output[-3000:]
    assert sum("interrupted" in line for line in result.output.splitlines()) == 1
