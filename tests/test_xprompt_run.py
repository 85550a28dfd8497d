"""XPrompt's three stages as one run on the real T5X fixture: every variant, resume, transfer, exports."""
import json
import os

import gin
import numpy as np
import pytest
from helpers import shared_path, write_label_task

from xprompt_jax.cli import gin_configurables as configured
from xprompt_jax.cli.gin_flags import parse_gin
from xprompt_jax.errors import ConfigError
from xprompt_jax.prompts.masks import surviving_parameters
from xprompt_jax.xprompt import pruning


@pytest.fixture(scope="module")
def caches(tmp_path_factory):
    root = tmp_path_factory.mktemp("xp_data")
    vocab = shared_path("fixtures", "t5_sentencepiece.model")
    return {"train": write_label_task(root / "train", vocab, n=32),
            "eval": write_label_task(root / "eval", vocab, n=16, seed=1),
            "checkpoint": str(shared_path("fixtures", "t5x_t5_1_1_tiny", "checkpoint_3"))}


def _configure(caches, model_dir, extra=()):
    gin.clear_config()
    parse_gin(["sizes/prompt_tuning_test.gin", "runs/xprompt.gin"], [
        f"MODEL_DIR = '{model_dir}'", f"CHECKPOINT = '{caches['checkpoint']}'",
        f"xprompt_jax.DataConfig.train_cache = '{caches['train']}'", f"xprompt_jax.DataConfig.eval_cache = '{caches['eval']}'",
        "BATCH_SIZE = 8", "TRAIN_STEPS = 4", "EVAL_PERIOD = 2", "CHECKPOINT_PERIOD = 4",
        "PROMPT_LENGTH = 4", "PIECES = 2", "RATIOS = [0.25, 0.5, 0.75]", "xprompt_jax.ScheduleConfig.log_period = 100",
        "xprompt_jax.MeshConfig.data = 1",
        *extra])


def _run(caches, model_dir, *extra):
    _configure(caches, model_dir, extra)
    try:
        return configured.xprompt()
    finally:
        gin.clear_config()


def test_full_pipeline_writes_every_stage_and_hits_each_ratio(caches, tmp_path):
    run = tmp_path / "xp"
    summary = _run(caches, run)
    rows = summary["rows"]
    assert [r["ratio"] for r in rows] == [0.0, 0.25, 0.5, 0.75]
    width = 4
    for row in rows[1:]:
        masks = dict(np.load(run / "pruning" / f"ratio_{row['ratio']:.2f}" / "masks.npz"))
        assert row["parameters"] == surviving_parameters(masks["token_mask"], masks["piece_mask"], width)
        assert row["parameters"] == pruning.planned_surviving_parameters(row["ratio"], 4, width, 2)
        assert (run / "pruning" / f"ratio_{row['ratio']:.2f}" / "heatmap.png").exists()
        assert os.path.exists(run / "rewind" / f"ratio_{row['ratio']:.2f}" / "result.json")
        prompt = np.load(run / "rewind" / f"ratio_{row['ratio']:.2f}" / "export" / "prompt.npy")
        dense = np.repeat(masks["token_mask"][:, None] * masks["piece_mask"], width // 2, axis=1)
        assert (prompt[dense == 0] == 0).all()  # the exported prompt is the masked prompt
    # masks only lose entries from ratio to ratio
    previous = None
    for row in rows[1:]:
        masks = dict(np.load(run / "pruning" / f"ratio_{row['ratio']:.2f}" / "masks.npz"))
        if previous is not None:
            assert (masks["piece_mask"] <= previous["piece_mask"]).all()
        previous = masks
    assert json.load(open(run / "summary.json"))["rows"] == rows
    assert (run / "export" / "prompt.npy").exists() and (run / "export" / "masks.npz").exists()
    best = json.load(open(run / "export" / "best.json"))
    exported_masks = dict(np.load(run / "export" / "masks.npz"))
    np.testing.assert_array_equal(exported_masks["piece_mask"],
                                  np.load(run / "pruning" / f"ratio_{best['ratio']:.2f}" / "masks.npz")["piece_mask"])
    assert set(np.load(run / "export" / "scores.npz").files) == {"token", "piece"}


def test_rewinding_starts_from_the_stage1_prompt(caches, tmp_path):
    """The rewind run's first checkpointed state is P* masked (its step-0 equivalent): checked through the
    run's own restore of P* and the pruning module's rewind."""
    run = tmp_path / "xp"
    _run(caches, run, "TRAIN_STEPS = 2", "EVAL_PERIOD = 2", "CHECKPOINT_PERIOD = 2", "RATIOS = [0.5]")
    from xprompt_jax.run.checkpoints import BestCheckpoint
    p_star = BestCheckpoint(str(run / "stage1"), "accuracy").restore()[0]["trainable"]
    masks = dict(np.load(run / "pruning" / "ratio_0.50" / "masks.npz"))
    rewound = pruning.rewind(p_star, masks)
    dense = np.repeat(masks["token_mask"][:, None] * masks["piece_mask"], 2, axis=1)
    start = np.asarray(rewound["prompt"]["prompt"])
    np.testing.assert_array_equal(start[dense == 1], np.asarray(p_star["prompt"]["prompt"])[dense == 1])
    assert (start[dense == 0] == 0).all()


def test_a_stopped_run_resumes_between_stages(caches, tmp_path, capsys):
    run = tmp_path / "xp"
    _run(caches, run, "RATIOS = [0.5]")
    capsys.readouterr()
    summary = _run(caches, run, "RATIOS = [0.5]")
    out = capsys.readouterr().out
    assert out.count("already finished: skipped") == 2
    assert "stage 2" not in out  # masks read back, not recomputed
    assert summary["rows"][1]["ratio"] == 0.5


@pytest.mark.parametrize("extra,label", [
    (["xprompt_jax.xprompt.level = 'token'"], "xprompt token"),
    (["xprompt_jax.xprompt.level = 'piece'"], "xprompt piece"),
    (["xprompt_jax.xprompt.reverse = True"], "xprompt hierarchical reversed"),
    (["xprompt_jax.xprompt.variant = 'random'"], "random hierarchical"),
    (["xprompt_jax.xprompt.variant = 'length'"], "length hierarchical"),
])
def test_every_variant_runs_end_to_end(caches, tmp_path, extra, label):
    summary = _run(caches, tmp_path / "xp", "RATIOS = [0.5]", "TRAIN_STEPS = 2", "CHECKPOINT_PERIOD = 2", *extra)
    row = summary["rows"][1]
    assert row["stage"] == label and row["accuracy"] is not None
    if "length" in label:
        assert row["tokens"] == 2 and row["parameters"] == 8  # half of 4 x 4 as a fresh 2-token prompt
    else:
        assert row["parameters"] == 8


def test_xprompt_transfer_starts_from_another_runs_pruned_prompt(caches, tmp_path):
    source = tmp_path / "source"
    _run(caches, source, "RATIOS = [0.5]", "TRAIN_STEPS = 2", "CHECKPOINT_PERIOD = 2")
    exported = np.load(source / "export" / "prompt.npy")
    _configure(caches, tmp_path / "target", ["RATIOS = [0.5]", "TRAIN_STEPS = 2", "CHECKPOINT_PERIOD = 2",
                                               "xprompt_jax.PromptSpec.init = 'file'",
                                               f"xprompt_jax.PromptSpec.init_file = '{source}'"])
    try:
        from xprompt_jax.prompted import build_prompted_t5
        from xprompt_jax.t5_import import load_t5_checkpoint
        config, frozen = load_t5_checkpoint(caches["checkpoint"], "t5_1_1_prompt_tuning_test")
        import jax
        model = build_prompted_t5(config, configured.PromptSpec(), frozen)
        np.testing.assert_array_equal(np.asarray(model.init(jax.random.PRNGKey(0))[0]["prompt"]["prompt"]), exported)
        summary = configured.xprompt()
    finally:
        gin.clear_config()
    assert summary["rows"][1]["parameters"] == 8


def test_bad_settings_fail_before_training(caches, tmp_path):
    for extra, message in ((["xprompt_jax.xprompt.variant = 'magic'"], "variant must be one of"),
                           (["RATIOS = [0.5, 0.2]"], "increase strictly"),
                           (["RATIOS = [1.5]"], "ratio"),
                           (["PIECES = 3"], "k=3 must divide"),
                           (["xprompt_jax.PromptSpec.kind = 'ept'"], "reparameterised prompt")):
        with pytest.raises(ConfigError, match=message):
            _run(caches, tmp_path / "bad", *extra)
    assert not (tmp_path / "bad" / "stage1").exists()
