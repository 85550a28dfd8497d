"""The prompt-tuning run end to end on the real T5X fixture: run folder, resume, refusals, CLI."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from helpers import REPO, shared_path, train_command, write_label_task
from helpers import train as flat_train

from xprompt_jax.errors import ConfigError
from xprompt_jax.models.config import t5_config
from xprompt_jax.optimizers import LearningRate
from xprompt_jax.prompts.kinds import make_spec


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    vocab = shared_path("fixtures", "t5_sentencepiece.model")
    return {"train": write_label_task(root / "train", vocab, n=48),
            "eval": write_label_task(root / "eval", vocab, n=20, seed=1),
            "checkpoint": str(shared_path("fixtures", "t5x_t5_1_1_tiny", "checkpoint_3"))}


def _train(data, model_dir, **overrides):
    kwargs = dict(model_dir=str(model_dir), checkpoint=data["checkpoint"], train_cache=data["train"],
                  eval_cache=data["eval"], batch_size=8, train_steps=6, eval_period=3, checkpoint_period=3,
                  log_period=2, mesh_data=1, model_config=t5_config("t5_1_1_prompt_tuning_test"),
                  prompt_spec=make_spec(length=4, pieces=2))
    kwargs.update(overrides)
    return flat_train(**kwargs)


def test_run_folder_holds_checkpoints_best_metrics_summaries_and_exports(data, tmp_path):
    result = _train(data, tmp_path / "run")
    run = tmp_path / "run"
    assert sorted(os.listdir(run / "checkpoints")) == ["3", "6"]
    assert len(os.listdir(run / "best")) == 1
    lines = [json.loads(l) for l in open(run / "eval_metrics.jsonl")]
    assert [l["step"] for l in lines] == [3, 6] and all(0 <= l["accuracy"] <= 100 for l in lines)
    assert result["best"]["accuracy"] == max(l["accuracy"] for l in lines)
    assert any(f.startswith("events.out.tfevents") for f in os.listdir(run / "train"))
    prompt = np.load(run / "export" / "prompt.npy")
    assert prompt.shape == (4, 4)
    np.testing.assert_array_equal(prompt, result["prompt"])
    assert json.load(open(run / "export" / "peft_adapter" / "adapter_config.json"))["num_virtual_tokens"] == 4
    config = json.load(open(run / "run_config.json"))
    assert config["prompt"]["length"] == 4 and config["trainable"] == "prompt"


def test_restart_with_another_config_is_refused_before_training(data, tmp_path):
    _train(data, tmp_path / "run", train_steps=3)
    with pytest.raises(ConfigError, match=r"different settings \(prompt.length: 4 -> 6\)"):
        _train(data, tmp_path / "run", prompt_spec=make_spec(length=6, pieces=2))
    # Everything else that defines the run, too (issue 15): data, batch, learning rate, optimiser.
    other_data = write_label_task(tmp_path / "other", shared_path("fixtures", "t5_sentencepiece.model"), n=16)
    from xprompt_jax.optimizers import Optimizer
    for change, field in [(dict(train_cache=other_data), "data.train_cache"), (dict(batch_size=4), "data.batch_size"),
                          (dict(learning_rate=LearningRate(0.1)), "learning_rate.learning_rate: 0.3 -> 0.1"),
                          (dict(optimizer=Optimizer("adamw")), "optimizer.name: 'adafactor' -> 'adamw'")]:
        with pytest.raises(ConfigError, match=r"different settings \(.*" + field.replace(".", r"\.")):
            _train(data, tmp_path / "run", **change)
    assert sorted(os.listdir(tmp_path / "run" / "checkpoints")) == ["3"]  # nothing more was written
    assert _train(data, tmp_path / "run", train_steps=6)["step"] == 6  # longer is allowed: it resumes


def test_wrong_width_or_vocabulary_checkpoint_is_refused(data, tmp_path):
    from xprompt_jax.errors import CheckpointError
    with pytest.raises(CheckpointError):
        _train(data, tmp_path / "run", model_config=t5_config("t5_1_1_tiny"))


def _cli(model_dir, data, steps, period):
    return train_command(model_dir, data, steps, checkpoint_period=period, eval_period=steps)


def test_killed_run_resumes_to_the_uninterrupted_prompt(data, tmp_path):
    steps, period = 150, 10
    env = dict(os.environ, PYTHONPATH=str(REPO))
    whole = subprocess.run(_cli(tmp_path / "whole", data, steps, period), env=env, capture_output=True, text=True)
    assert whole.returncode == 0, whole.stderr[-3000:]

    killed_dir = tmp_path / "killed"
    proc = subprocess.Popen(_cli(killed_dir, data, steps, period), env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        ckpts = killed_dir / "checkpoints"
        if ckpts.exists() and any(name.isdigit() for name in os.listdir(ckpts)):
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.01)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (killed_dir / "export").exists()
    resumed = subprocess.run(_cli(killed_dir, data, steps, period), env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from" in resumed.stdout
    np.testing.assert_allclose(np.load(killed_dir / "export" / "prompt.npy"),
                               np.load(tmp_path / "whole" / "export" / "prompt.npy"), rtol=1e-6, atol=1e-7)


def test_cli_errors_are_one_line(tmp_path, data):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    missing = subprocess.run([sys.executable, "-m", "xprompt_jax.cli", "train", "--gin_file=runs/prompt_tune.gin"],
                             env=env, capture_output=True, text=True)
    assert missing.returncode == 2 and "MODEL_DIR" in missing.stderr
    unknown = subprocess.run([sys.executable, "-m", "xprompt_jax.cli", "train", "--gin_file=runs/prompt_tune.gin",
                              "--gin.NOT_A_MACRO_OR_NAME.x=1"], env=env, capture_output=True, text=True)
    assert unknown.returncode == 2 and "NOT_A_MACRO_OR_NAME" in unknown.stderr


def test_superglue_rte_from_the_official_files_end_to_end(data, tmp_path):
    """The real data path: seqio task from local .jsonl -> numpy cache -> train -> rank eval with RTE's metric."""
    pytest.importorskip("seqio")
    import tasks.superglue
    superglue = shared_path("data", "superglue")
    vocab = shared_path("fixtures", "t5_sentencepiece.model")
    tasks.superglue.register_superglue(data_dir=str(superglue), vocab_path=str(vocab))
    result = flat_train(
        model_dir=str(tmp_path / "rte"), checkpoint=data["checkpoint"], task="taskless_super_glue_rte_v102",
        train_split="train_k16", eval_split="validation", data_cache_dir=str(tmp_path / "cache"),
        input_length=64, target_length=4, batch_size=8, train_steps=2, eval_period=2, checkpoint_period=2,
        model_config=t5_config("t5_1_1_prompt_tuning_test"), prompt_spec=make_spec(length=3, pieces=2))
    lines = [json.loads(l) for l in open(tmp_path / "rte" / "eval_metrics.jsonl")]
    assert set(lines[-1]) == {"step", "accuracy"} and 0 <= lines[-1]["accuracy"] <= 100
    meta = json.load(open(tmp_path / "cache" / "taskless_super_glue_rte_v102" / "validation-64-4" / "meta.json"))
    assert meta["num_examples"] == 277 and meta["label_names"] == ["entailment", "not_entailment"]
    assert result["step"] == 2


def test_early_stopping_and_best_checkpoint(data, tmp_path):
    """With a zero learning rate nothing improves: the run stops after `patience` stale evaluations and
    keeps the first evaluation as the best."""
    from xprompt_jax.optimizers import Optimizer
    # Adafactor's update is clipped and scaled by the learning rate; SGD at a tiny rate changes nothing
    # measurable (LearningRate refuses 0, which would be a misconfiguration in a real run).
    tiny = dict(optimizer=Optimizer("sgd"), learning_rate=LearningRate(1e-30))
    result = _train(data, tmp_path / "run", train_steps=30, eval_period=2, early_stopping_patience=2, **tiny)
    assert result["step"] == 6
    assert [h["step"] for h in result["history"]] == [2, 4, 6]
    assert result["best"]["step"] == 2
    assert "6" in os.listdir(tmp_path / "run" / "checkpoints")
    again = _train(data, tmp_path / "run", train_steps=30, eval_period=2, early_stopping_patience=2, **tiny)
    assert again["step"] == 6 and again["history"] == result["history"]  # stopped stays stopped on restart


def test_a_training_run_imports_no_tensorflow(data, tmp_path):
    """Training hosts may lack TensorFlow: a run from existing caches must never import it (nor seqio)."""
    code = (
        "import sys\n"
        "from xprompt_jax.run.loop import train\n"
        "from xprompt_jax.run.config import DataConfig, FrozenModel, ScheduleConfig\n"
        "from xprompt_jax.models.config import t5_config\n"
        "from xprompt_jax.prompts.kinds import make_spec\n"
        
        f"train({str(tmp_path / 'run')!r}, model=FrozenModel({data['checkpoint']!r}, t5_config('t5_1_1_prompt_tuning_test')),\n"
        f"    data=DataConfig(train_cache={data['train']!r}, eval_cache={data['eval']!r}, batch_size=8),\n"
        "    schedule=ScheduleConfig(train_steps=2, eval_period=2, checkpoint_period=2),\n"
        "    prompt_spec=make_spec(length=2, pieces=2))\n"
        "bad = [m for m in ('tensorflow', 'seqio', 'tensorflow_datasets') if m in sys.modules]\n"
        "assert not bad, bad\n")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]


@pytest.mark.parametrize("group_by_length", [False, True])
def test_a_run_with_length_buckets_ends_where_the_fixed_length_run_ends(tmp_path, group_by_length):
    """Issue 14: buckets remove only padding (encoder inputs and targets), so the same run with and without
    them trains the same prompt and scores the same metrics, within float tolerance. With length-grouped
    shuffling the batches differ, so that run is compared with its own fixed-length twin."""
    import jax

    from xprompt_jax.run.config import DataConfig
    from xprompt_jax.run.data import buckets_for, open_run_data, training_batches
    vocab = shared_path("fixtures", "t5_sentencepiece.model")
    data = {"train": write_label_task(tmp_path / "train", vocab, n=40, inputs_length=64, varied_lengths=True),
            "eval": write_label_task(tmp_path / "eval", vocab, n=21, seed=1, inputs_length=64, varied_lengths=True),
            "checkpoint": str(shared_path("fixtures", "t5x_t5_1_1_tiny", "checkpoint_3"))}
    runs = {buckets: _train(data, tmp_path / f"run_{buckets}", train_steps=6, eval_period=3, length_buckets=buckets,
                            group_by_length=group_by_length, checkpoint_period=6)
            for buckets in (False, True)}
    np.testing.assert_allclose(runs[True]["prompt"], runs[False]["prompt"], rtol=2e-4, atol=1e-6)
    for fixed, bucketed in zip(runs[False]["history"], runs[True]["history"]):
        assert fixed["step"] == bucketed["step"] and fixed["accuracy"] == bucketed["accuracy"]
    # ... and the buckets really cut: encoder inputs below 64, targets below 16, in the run's own batches.
    config = DataConfig(train_cache=data["train"], batch_size=8, group_by_length=group_by_length)
    split = open_run_data(config, with_eval=False).train
    shapes = {(b["encoder_input_tokens"].shape[1], b["decoder_target_tokens"].shape[1])
              for _, b in zip(range(6), training_batches(split, config, 0, buckets_for(config, split)))}
    assert {w for w, _ in shapes} & {32, 48} and {t for _, t in shapes} == {8}
    assert jax.process_count() == 1
