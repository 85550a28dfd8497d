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
