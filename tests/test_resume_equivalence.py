"""Issue 16 end to end: a CLI run killed (SIGKILL) or preempted (SIGTERM) at a chosen moment and
restarted writes exactly what the uninterrupted run writes: the same ``eval_metrics.jsonl`` lines (each
step once), the same ``best/`` step and the same ``export/prompt.npy``.

One uninterrupted reference run per command (module fixtures) with TRAIN_STEPS=12 EVAL_PERIOD=2
CHECKPOINT_PERIOD=4: step 4 and 8 have both an evaluation and a checkpoint due (the loop evaluates first),
steps 2, 6, 10 only an evaluation. Each kill checks that it landed where it was meant to, so a test cannot
pass by killing at another moment.
"""
import os
import re
import signal

import numpy as np
import pytest
from cli_runs import cli, metrics_lines, metrics_steps, numbered, run_cli
from helpers import shared_path, train_command, write_label_task

from xprompt_jax.export import load_peft_adapter

pytestmark = pytest.mark.integration

STEPS, EVAL_PERIOD, CHECKPOINT_PERIOD = 12, 2, 4
QUIET = ["--gin.xprompt_jax.ScheduleConfig.log_period=2"]  # a progress line right before each evaluation


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume_data")
    vocab = shared_path("fixtures", "t5_sentencepiece.model")
    # 512 evaluation examples: an evaluation lasts long enough (~0.1 s) to be killed in the middle of.
    return {"train": write_label_task(root / "train", vocab, n=32),
            "eval": write_label_task(root / "eval", vocab, n=512, seed=1),
            "checkpoint": str(shared_path("fixtures", "t5x_t5_1_1_tiny", "checkpoint_3"))}


def _train(model_dir, data):
    return train_command(model_dir, data, STEPS, CHECKPOINT_PERIOD, EVAL_PERIOD) + QUIET


def _finished(model_dir, command):
    result = run_cli(command)
    assert result.returncode == 0, result.output[-3000:]
    return result


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory):
    model_dir = tmp_path_factory.mktemp("resume_ref") / "run"
    _finished(model_dir, _train(model_dir, data))
    assert metrics_steps(model_dir) == [2, 4, 6, 8, 10, 12]
    return model_dir


def assert_same_outputs(run, reference):
    lines = metrics_lines(run)
    steps = [r["step"] for r in lines]
    assert len(steps) == len(set(steps)), f"a step evaluated twice: {steps}"
    assert lines == metrics_lines(reference)
    assert numbered(os.path.join(run, "best")) == numbered(os.path.join(reference, "best"))
    np.testing.assert_allclose(np.load(os.path.join(run, "export", "prompt.npy")),
                               np.load(os.path.join(reference, "export", "prompt.npy")), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(load_peft_adapter(os.path.join(run, "export", "peft_adapter")),
                               load_peft_adapter(os.path.join(reference, "export", "peft_adapter")),
                               rtol=1e-5, atol=1e-6)


def _kill_then_resume(model_dir, command, trigger, landed, attempts=3):
    """Kill at ``trigger``, check ``landed`` (the kill hit the moment meant), restart to the end.

    A kill that came too late (the run had moved on) is retried in a fresh folder, up to ``attempts``."""
    for attempt in range(attempts):
        folder = os.path.join(model_dir, f"try{attempt}")
        killed = run_cli(command(folder), trigger(folder))
        assert killed.signalled and killed.returncode == -signal.SIGKILL, killed.output[-3000:]
        if landed(folder):
            _finished(folder, command(folder))
            return folder
    pytest.fail(f"the kill never landed at the intended moment in {attempts} tries")


def _printed(pattern, after=None):
    """A trigger: true once a line matches ``pattern`` (after a line matching ``after``, if given)."""
    def trigger(lines):
        seen = after is None
        for line in lines:
            if not seen and re.search(after, line):
                seen = True
            elif seen and re.search(pattern, line):
                return True
        return False
    return trigger


def test_killed_after_a_checkpoint_and_before_its_evaluation_resumes_to_the_same_outputs(data, reference, tmp_path):
    """Killed as soon as ``checkpoints/4`` appears (step 4 has both due), then restarted."""
    run = _kill_then_resume(
        tmp_path, lambda d: _train(d, data), lambda d: lambda _: os.path.isdir(os.path.join(d, "checkpoints", "4")),
        lambda d: numbered(os.path.join(d, "checkpoints")) == [4] and 12 not in metrics_steps(d))
    assert_same_outputs(run, reference)


def test_killed_after_an_evaluation_and_before_the_next_checkpoint_resumes_to_the_same_outputs(
        data, reference, tmp_path):
    """Killed once ``eval_metrics.jsonl`` has step 6 (checkpoint 4 exists, 8 not yet): the restart from 4
    evaluates step 6 again, and the file must still hold it once."""
    run = _kill_then_resume(
        tmp_path, lambda d: _train(d, data), lambda d: lambda _: 6 in metrics_steps(d),
        lambda d: numbered(os.path.join(d, "checkpoints")) == [4] and metrics_steps(d)[-1] in (6, 8))
    assert_same_outputs(run, reference)


def test_killed_during_an_evaluation_resumes_to_the_same_outputs(data, reference, tmp_path):
    """Killed right after step 8's progress line, i.e. inside step 8's evaluation (before its line and
    before checkpoint 8): the restart from checkpoint 4 drops nothing it needs and evaluates 6 and 8 again."""
    run = _kill_then_resume(
        tmp_path, lambda d: _train(d, data), lambda d: _printed(r"\] 8/12 "),
        lambda d: metrics_steps(d) == [2, 4, 6] and numbered(os.path.join(d, "checkpoints")) == [4])
    assert_same_outputs(run, reference)


def test_sigterm_saves_the_current_step_exits_0_and_resumes_to_the_same_prompt(data, reference, tmp_path):
    """SIGTERM after step 6's progress line: the run saves a checkpoint at the step it is on (6, unless the
    signal came late: a checkpoint step is not required), exits 0 saying so, and the same command ends
    where the uninterrupted run ended."""
    run = tmp_path / "run"
    stopped = run_cli(_train(run, data), _printed(r"\] 6/12 "), sig=signal.SIGTERM)
    assert stopped.signalled and stopped.returncode == 0, stopped.output[-3000:]
    message = re.search(r"preempted: saved a checkpoint at step (\d+)", stopped.output)
    assert message, stopped.output[-3000:]
    step = int(message.group(1))
    assert 6 <= step < STEPS
    assert numbered(run / "checkpoints")[-1] == step
    assert not (run / "export" / "prompt.npy").exists()
    assert "Traceback" not in stopped.output
    resumed = _finished(run, _train(run, data))
    assert f"resumed from {run}/checkpoints/{step}" in resumed.output
    assert_same_outputs(run, reference)


# ------------------------------------------------------------------------------------------------
# XPrompt: killed during stage 3's evaluation
# ------------------------------------------------------------------------------------------------
def _xprompt(model_dir, data):
    return cli("xprompt", "--gin_file=sizes/prompt_tuning_test.gin", "--gin_file=runs/xprompt.gin",
               f"--gin.MODEL_DIR='{model_dir}'", f"--gin.CHECKPOINT='{data['checkpoint']}'",
               f"--gin.xprompt_jax.DataConfig.train_cache='{data['train']}'",
               f"--gin.xprompt_jax.DataConfig.eval_cache='{data['eval']}'",
               "--gin.BATCH_SIZE=8", "--gin.TRAIN_STEPS=4", "--gin.EVAL_PERIOD=2", "--gin.CHECKPOINT_PERIOD=2",
               "--gin.PROMPT_LENGTH=4", "--gin.PIECES=2", "--gin.RATIOS=[0.5]",
               "--gin.xprompt_jax.xprompt.heatmaps_png=False", *QUIET)


def test_xprompt_killed_during_stage_3_evaluation_resumes_to_the_same_outputs(data, tmp_path):
    reference = tmp_path / "reference"
    _finished(reference, _xprompt(reference, data))
    rewind = os.path.join("rewind", "ratio_0.50")

    def landed(d):  # inside stage 3's step-4 evaluation (its step-2 checkpoint may still be in orbax's hands)
        stage3 = os.path.join(d, rewind)
        return (metrics_steps(stage3) == [2] and 4 not in numbered(os.path.join(stage3, "checkpoints"))
                and os.path.exists(os.path.join(d, "stage1", "result.json")))

    run = _kill_then_resume(tmp_path, lambda d: _xprompt(d, data),
                            lambda d: _printed(r"\] 4/4 ", after=r"\[xprompt\] stage 2"), landed)
    assert_same_outputs(os.path.join(run, rewind), os.path.join(reference, rewind))
    assert metrics_lines(os.path.join(run, "stage1")) == metrics_lines(os.path.join(reference, "stage1"))
    with open(os.path.join(run, "summary.json")) as a, open(os.path.join(reference, "summary.json")) as b:
        assert a.read() == b.read()
    np.testing.assert_allclose(np.load(os.path.join(run, "export", "prompt.npy")),
                               np.load(os.path.join(reference, "export", "prompt.npy")), rtol=1e-5, atol=1e-6)
