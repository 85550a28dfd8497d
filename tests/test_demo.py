"""The built-in demo, shortened (--quick): prompt tuning learns what the frozen model cannot do alone.

One CLI run in a fresh process, as a user runs it: the package installed from its wheel (not editable)
and started from another directory, so the gin files and the demo vocabulary must come from the
installed package. It pre-trains the demo T5, measures the frozen model without and with a random
prompt, prompt-tunes it and runs XPrompt. The assertions are the demo's claims, with the margins the
README states.
"""
import json
import os
import subprocess

import pytest
from wheel_install import installed_wheel


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    work = tmp_path_factory.mktemp("demo")
    bin_dir = installed_wheel(tmp_path_factory.mktemp("wheel"))
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "PYTHONPATH")}  # one CPU, as on a laptop
    where = subprocess.run([str(bin_dir / "python"), "-c", "import xprompt_jax, tasks; print(xprompt_jax.__file__, "
                            "tasks.__file__)"], cwd=work, env=env, capture_output=True, text=True)
    assert all(path.startswith(str(bin_dir.parent)) for path in where.stdout.split()), where.stdout + where.stderr
    run = subprocess.run([str(bin_dir / "xprompt-jax"), "demo", "--work_dir", str(work), "--quick"],
                         cwd=work, env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    with open(work / "demo_results_quick.json") as f:
        results = json.load(f)
    return work, {r["stage"]: r for r in results["rows"]}, results, run.stdout


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
