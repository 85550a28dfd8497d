"""The benchmark scripts run and report what they claim (tiny shapes; the numbers are not checked here).

compare_peft.py: both sides start from the same weights and prompt, so their first losses agree; real-data
mode pads the project's batches to buckets (shorter than the fixed length) and PEFT's to each batch's
longest. eval_speed.py: fixed-length and bucketed evaluation give the same predictions.
"""
import json
import os
import subprocess
import sys

import pytest
from helpers import REPO, shared_path, write_label_task

pytest.importorskip("torch")
pytest.importorskip("peft")

TINY = ["--sizes", "tiny", "--prompt", "4", "--rounds", "2", "--steps", "1", "--warmup", "1"]


def _run(script, *args):
    # One CPU device, as a user's machine has (the suite's conftest asks for 8 host devices).
    flags = " ".join(f for f in os.environ.get("XLA_FLAGS", "").split() if "device_count" not in f)
    run = subprocess.run([sys.executable, str(REPO / "benchmarks" / script), *args], capture_output=True,
                         text=True, cwd=REPO, timeout=600, env=dict(os.environ, XLA_FLAGS=flags))
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    return run.stdout


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A varied-length label task laid out as compare_peft's --data_cache: <cache>/rte/train-64-16."""
    root = tmp_path_factory.mktemp("bench_cache")
    vocab = shared_path("fixtures", "t5_sentencepiece.model")
    write_label_task(root / "rte" / "train-64-16", vocab, n=48, inputs_length=64, varied_lengths=True)
    return root, vocab


def test_compare_peft_fixed_mode_same_start_and_a_ratio(tmp_path):
    out = tmp_path / "fixed.json"
    stdout = _run("compare_peft.py", "--mode", "fixed", "--batch", "2", "--inputs", "16", "--targets", "4",
                  *TINY, "--out", str(out))
    entry = json.loads(out.read_text())["results"][0]
    sides = entry["sides"]
    assert set(sides) == {"project", "peft"} and all(len(s["rounds"]) == 2 for s in sides.values())
    assert entry["first_loss_rel_diff"] < 1e-4  # same weights (the project's HF importer) and prompt
    assert entry["ratios"]["project/peft"] > 0 and "ratio project/peft" in stdout
    assert sides["project"]["model_tflop_per_s"] > 0


def test_compare_peft_real_mode_pads_each_side_its_own_way(cache, tmp_path):
    root, vocab = cache
    out = tmp_path / "real.json"
    _run("compare_peft.py", "--mode", "real", "--tasks", "rte", "--batch", "4", "--input_length", "64",
         "--target_length", "16", "--data_cache", str(root), "--vocab_path", str(vocab), *TINY, "--out", str(out))
    entry = json.loads(out.read_text())["results"][0]
    assert entry["task"] == "rte" and entry["split"] == "train"
    sides = entry["sides"]
    assert set(sides) == {"project_fixed", "project_buckets", "project_grouped", "peft"}
    length = {name: s["mean_encoder_length"] for name, s in sides.items()}
    assert length["project_fixed"] == 64 + 4
    assert length["peft"] <= length["project_buckets"] < length["project_fixed"]
    assert abs(sides["project_fixed"]["first_loss"] - sides["peft"]["first_loss"]) < 1e-4 * abs(sides["peft"]["first_loss"])
    assert sides["project_buckets"]["first_loss"] == pytest.approx(sides["project_fixed"]["first_loss"], rel=1e-5)
    assert {"project_buckets/peft", "project_grouped/peft"} <= set(entry["ratios"])


def test_eval_speed_buckets_agree_with_the_fixed_length(cache, tmp_path):
    root, vocab = cache
    out = tmp_path / "eval.json"
    stdout = _run("eval_speed.py", "--task", "rte", "--split", "train", "--examples", "0", "--size", "tiny",
                  "--batch", "8", "--prompt", "4", "--rounds", "1", "--input_length", "64", "--target_length", "16",
                  "--data_cache", str(root), "--vocab_path", str(vocab), "--out", str(out))
    record = json.loads(out.read_text())
    assert record["num_examples"] == 48 and record["predictions_agree"] == 1.0
    assert record["speedup"] > 0 and "speed-up of buckets over fixed length" in stdout


def test_compare_peft_records_a_side_that_fails_and_measures_the_rest(tmp_path):
    """Each runtime is its own worker process: PEFT's failing to start (here a torch device that does not
    exist) is recorded in the entry with its error, and the project's side is still timed."""
    out = tmp_path / "one_fails.json"
    _run("compare_peft.py", "--mode", "fixed", "--batch", "2", "--inputs", "16", "--targets", "4", *TINY,
         "--device", "no_such_device", "--out", str(out))
    entry = json.loads(out.read_text())["results"][0]
    assert set(entry["sides"]) == {"project"} and len(entry["sides"]["project"]["rounds"]) == 2
    assert "no_such_device" in entry["errors"]["peft"]


def test_gpu_suite_dry_run_returns_every_step(cache, tmp_path):
    """The GPU suite's own script on this CPU with tiny shapes: every distinct step runs to the end and writes
    its JSON, and the summary reads them (the device call then only changes the scale). Under a minute."""
    root, vocab = cache
    flags = " ".join(f for f in os.environ.get("XLA_FLAGS", "").split() if "device_count" not in f)
    env = dict(os.environ, XLA_FLAGS=flags, OUT=str(tmp_path), GPU_SUITE_CACHE=str(root), GPU_SUITE_VOCAB=str(vocab),
               GPU_SUITE_REAL_TASKS="rte", GPU_SUITE_INPUT_LENGTH="64")
    run = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_suite.sh"), "--dry_run"], capture_output=True,
                         text=True, cwd=REPO, timeout=600, env=env)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    steps = [json.loads(line) for line in (tmp_path / "steps.jsonl").read_text().splitlines()]
    assert [s["step"] for s in steps] == ["checks", "matmul_ceiling", "project_base", "project_large", "flash_base",
                                          "flash_large", "peft_eager", "project_xl", "peft_compiled", "real_base",
                                          "project_xxl"]
    skipped = {"project_large", "flash_large", "peft_compiled", "real_base", "project_xxl"}  # same paths on the CPU
    assert all(s.get("exit") == 0 for s in steps if s["step"] not in skipped), steps
    assert {s["step"] for s in steps if s.get("skipped") == "dry run"} == skipped
    project = json.loads((tmp_path / "project_tiny.json").read_text())
    assert project["examples_per_s"] > 0 and project["memory_analysis"]["temp_size_in_bytes"] is not None
    assert json.loads((tmp_path / "checks.json").read_text())["jax_backend"] == "cpu"
    runs = {row["run"] for row in json.loads((tmp_path / "summary.json").read_text())}
    assert {"project tiny", "flash tiny", "peft eager tiny"} <= runs


def test_multitask_serving_counts_batches_and_mixed_equals_per_task(tmp_path):
    out = tmp_path / "serving.json"
    stdout = _run("multitask_serving.py", "--size", "tiny", "--requests", "20", "--batch", "8", "--inputs", "16",
                  "--prompt", "4", "--rounds", "1", "--out", str(out))
    record = json.loads(out.read_text())
    assert record["agree"] == 1.0 and sum(record["task_counts"]) == 20
    assert record["batches"]["mixed"] == 3 and record["batches"]["per_task"] >= 3
    assert "mixed / per-task" in stdout
