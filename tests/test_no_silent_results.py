"""Issue 23: no silent wrong results. Each case once failed silently (exit 0, wrong numbers) or with a
traceback; now it is one line (exit 2 for bad input, exit 0 after a SIGTERM) or recovered with a warning.

``CASES`` is the table of one-line refusals: a row is ``(id, command builder, expected exit code, expected
phrase)``; the builder gets a ``World`` of prepared inputs and returns the CLI's arguments. Adding a
case is one row (and, when it needs a new kind of input, one ``World`` property). Cases that recover
(a torn metrics line, a damaged best checkpoint, a truncated masks file, a full disk, SIGTERM mid-work)
follow the table as tests of their own, since each must also show the same command resuming.
"""
import json
import logging
import os
import shutil
import signal

import numpy as np
import pytest
from helpers import shared_path, write_label_task

from xprompt_jax import export, stopping
from xprompt_jax.cli import main as cli_main
from xprompt_jax.data.cache import CachedSplit, write_cached_split

pytestmark = pytest.mark.integration


# ------------------------------------------------------------------------------------------------
# Inputs the cases use, made once per module
# ------------------------------------------------------------------------------------------------
def _relabel(source: str, path, *, unlabelled: bool = False, keep: int = None, split: str = "test"):
    """A copy of a cached split with every label removed (label -1, target '<unk>', as T5's preprocessors
    make SuperGLUE's test examples) and/or only its first ``keep`` examples."""
    opened = CachedSplit.open(source)
    n = opened.num_examples if keep is None else keep
    features = {k: np.asarray(v[:n]) for k, v in opened.features.items()}
    examples = [dict(ex) for ex in opened.examples[:n]]
    if unlabelled:
        for ex in examples:
            ex.update(label=-1, targets_pretokenized="<unk>")
    meta = {k: v for k, v in opened.meta.items() if k not in ("features", "num_examples", "format_version")}
    return write_cached_split(str(path), meta=dict(meta, split=split), features=features, examples=examples)


class World:
    def __init__(self, root):
        self.root = root
        vocab = shared_path("fixtures", "t5_sentencepiece.model")
        self.checkpoint = str(shared_path("fixtures", "t5x_t5_1_1_tiny", "checkpoint_3"))
        self.train = write_label_task(root / "train", vocab, n=32)
        self.eval = write_label_task(root / "eval", vocab, n=16, seed=1)
        self.test = _relabel(self.eval, root / "test", unlabelled=True)
        self.empty = _relabel(self.eval, root / "empty", keep=0, split="validation")

    def train_args(self, model_dir, *extra, train=None, eval_cache=None):
        return ["train", "--gin_file=sizes/prompt_tuning_test.gin", "--gin_file=prompts/sampled_vocabulary.gin",
                "--gin_file=runs/prompt_tune.gin", f"--gin.MODEL_DIR='{model_dir}'",
                f"--gin.CHECKPOINT='{self.checkpoint}'",
                f"--gin.xprompt_jax.DataConfig.train_cache='{train or self.train}'",
                f"--gin.xprompt_jax.DataConfig.eval_cache='{eval_cache or self.eval}'", "--gin.BATCH_SIZE=8",
                "--gin.TRAIN_STEPS=4", "--gin.CHECKPOINT_PERIOD=2", "--gin.EVAL_PERIOD=2", "--gin.PROMPT_LENGTH=4",
                "--gin.xprompt_jax.PromptSpec.pieces=2", "--gin.xprompt_jax.MeshConfig.data=1", *extra]

    def xprompt_args(self, model_dir, *extra):
        return ["xprompt", "--gin_file=sizes/prompt_tuning_test.gin", "--gin_file=runs/xprompt.gin",
                f"--gin.MODEL_DIR='{model_dir}'", f"--gin.CHECKPOINT='{self.checkpoint}'",
                f"--gin.xprompt_jax.DataConfig.train_cache='{self.train}'",
                f"--gin.xprompt_jax.DataConfig.eval_cache='{self.eval}'", "--gin.BATCH_SIZE=8",
                "--gin.TRAIN_STEPS=2", "--gin.EVAL_PERIOD=2", "--gin.CHECKPOINT_PERIOD=2", "--gin.PROMPT_LENGTH=4",
                "--gin.PIECES=2", "--gin.RATIOS=[0.5]", "--gin.xprompt_jax.MeshConfig.data=1",
                "--gin.xprompt_jax.xprompt.heatmaps_png=False", *extra]

    def evaluate_args(self, source, eval_cache=None):
        return ["evaluate", "--gin_file=sizes/prompt_tuning_test.gin", "--gin_file=runs/eval.gin",
                f"--gin.PROMPT_SOURCE='{source}'", f"--gin.CHECKPOINT='{self.checkpoint}'",
                f"--gin.EVAL_CACHE='{eval_cache or self.eval}'", "--gin.BATCH_SIZE=8"]

    # -- prompt files that are not prompts ---------------------------------------------------------
    def prompt_file(self, kind: str) -> str:
        path = self.root / f"prompt_{kind}.npy"
        if kind == "text":
            path.write_text("0.1 0.2\n0.3 0.4\n")
        elif kind == "object":
            np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
        elif kind == "npz":
            path = self.root / "prompt.npz"
            np.savez(path, prompt=np.zeros((4, 4), np.float32))
        elif kind == "truncated":
            np.save(path, np.zeros((4, 4), np.float32))
            path.write_bytes(path.read_bytes()[:-10])
        return str(path)

    # -- Hugging Face folders whose config.json disagrees with the weights -------------------------
    def hf_folder(self, change: str) -> str:
        folder = self.root / f"hf_{change}"
        if folder.exists():
            return str(folder)
        shutil.copytree(shared_path("fixtures", "hf_t5_v1_1_tiny"), folder)
        config = json.loads((folder / "config.json").read_text())
        from safetensors.numpy import load_file, save_file
        tensors = load_file(str(folder / "model.safetensors"))
        if change == "fewer_layers":
            config["num_layers"] -= 1
        elif change == "fewer_decoder_layers":
            config["num_decoder_layers"] -= 1
        elif change == "extra_tensor":
            tensors["encoder.block.5.layer.0.SelfAttention.q.weight"] = tensors["encoder.block.0.layer.0.SelfAttention.q.weight"]
        elif change == "nan":
            tensors["encoder.block.1.layer.1.DenseReluDense.wo.weight"][0, 0] = np.nan
        elif change in ("bad_index", "index_without_map"):
            os.rename(folder / "model.safetensors", folder / "model-00001-of-00001.safetensors")
            (folder / "model.safetensors.index.json").write_text("{not json" if change == "bad_index"
                                                                  else json.dumps({"metadata": {}}))
        if change in ("extra_tensor", "nan"):
            save_file(tensors, str(folder / "model.safetensors"))
        (folder / "config.json").write_text(json.dumps(config))
        return str(folder)

    # -- damaged T5X checkpoints --------------------------------------------------------------------
    def t5x_folder(self, change: str) -> str:
        folder = self.root / f"t5x_{change}"
        if folder.exists():
            return str(folder)
        shutil.copytree(self.checkpoint, folder)
        for path in folder.rglob("*"):
            path.chmod(0o755 if path.is_dir() else 0o644)
        if change == "missing_chunk":
            os.remove(folder / "target.token_embedder.embedding" / "3.0")
        elif change == "path_outside":
            from flax import serialization
            state = serialization.msgpack_restore((folder / "checkpoint").read_bytes())
            leaf = state["optimizer"]["target"]["token_embedder"]["embedding"]
            leaf["kvstore"]["path"] = "../../elsewhere/target.token_embedder.embedding"
            (folder / "checkpoint").write_bytes(serialization.msgpack_serialize(state))
        return str(folder)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return World(tmp_path_factory.mktemp("silent"))


def _smoke(folder, *extra):
    return ["smoke", f"--checkpoint={folder}", *extra]


T5X_SIZE = "--gin_file=sizes/prompt_tuning_test.gin"

CASES = [
    # Unlabelled and empty splits: refused before any work, naming the split and what to use instead.
    ("eval_split_unlabelled", lambda w, d: w.train_args(d, eval_cache=w.test), 2, "has no labels"),
    ("train_split_unlabelled", lambda w, d: w.train_args(d, train=w.test), 2, "cannot be trained on"),
    ("evaluate_unlabelled", lambda w, d: w.evaluate_args(w.prompt_file("ok"), eval_cache=w.test), 2,
     "cannot be scored"),
    ("eval_split_empty", lambda w, d: w.train_args(d, eval_cache=w.empty), 2, "has no examples"),
    # Hugging Face folders whose config.json disagrees with the weights; non-finite weights.
    ("hf_fewer_layers", lambda w, d: _smoke(w.hf_folder("fewer_layers")), 2, "encoder.block.2"),
    ("hf_fewer_decoder_layers", lambda w, d: _smoke(w.hf_folder("fewer_decoder_layers")), 2, "decoder.block.1"),
    ("hf_extra_tensor", lambda w, d: _smoke(w.hf_folder("extra_tensor")), 2, "encoder.block.5"),
    ("hf_nan_weights", lambda w, d: _smoke(w.hf_folder("nan")), 2, "non-finite weights"),
    ("hf_bad_index_json", lambda w, d: _smoke(w.hf_folder("bad_index")), 2, "model.safetensors.index.json is not"),
    ("hf_index_without_weight_map", lambda w, d: _smoke(w.hf_folder("index_without_map")), 2, "weight_map"),
    # T5X checkpoints: a missing zarr chunk, a leaf stored outside the folder.
    ("t5x_missing_chunk", lambda w, d: _smoke(w.t5x_folder("missing_chunk"), T5X_SIZE), 2,
     "target.token_embedder.embedding (chunk 3.0)"),
    ("t5x_path_outside", lambda w, d: _smoke(w.t5x_folder("path_outside"), T5X_SIZE), 2,
     "outside the checkpoint folder"),
    # XPrompt: a ratio that removes nothing.
    ("xprompt_ratio_too_small", lambda w, d: w.xprompt_args(d, "--gin.RATIOS=[0.01]"), 2, "removes nothing"),
    # Prompt files that are not an m x e float array.
    ("prompt_text_file", lambda w, d: w.evaluate_args(w.prompt_file("text")), 2, "is not a .npy file"),
    ("prompt_object_array", lambda w, d: w.evaluate_args(w.prompt_file("object")), 2, "prompt_object.npy"),
    ("prompt_npz", lambda w, d: w.evaluate_args(w.prompt_file("npz")), 2, "is an .npz archive"),
    ("prompt_truncated", lambda w, d: w.evaluate_args(w.prompt_file("truncated")), 2, "prompt_truncated.npy"),
    # A malformed binding.
    ("binding_malformed", lambda w, d: w.train_args(d, "--gin.BATCH_SIZE=[8"), 2, "--gin.BATCH_SIZE=[8"),
]


@pytest.mark.parametrize("case,build,code,phrase", CASES, ids=[c[0] for c in CASES])
def test_one_line(world, tmp_path, capsys, case, build, code, phrase):
    if case == "evaluate_unlabelled":
        np.save(world.root / "prompt_ok.npy", np.ones((4, 4), np.float32))
    capsys.readouterr()
    model_dir = tmp_path / "run"
    returned = cli_main.main(build(world, model_dir))
    err = capsys.readouterr().err.strip()
    assert returned == code, err
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    assert phrase in err, err
    assert not (model_dir / "checkpoints").exists()  # refused before any training


# ------------------------------------------------------------------------------------------------
# Recovered with a warning, and the same command resumes
# ------------------------------------------------------------------------------------------------
def _run(args, capsys):
    capsys.readouterr()
    code = cli_main.main(args)
    return code, capsys.readouterr().err


@pytest.fixture(scope="module")
def finished(world, tmp_path_factory):
    """One finished 4-step run and its outputs, the reference the recovered runs are compared with."""
    run = tmp_path_factory.mktemp("reference") / "run"
    assert cli_main.main(world.train_args(run)) == 0
    return run


def test_a_torn_last_metrics_line_is_dropped_with_a_warning(world, finished, tmp_path, capsys, caplog):
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    lines = (run / "eval_metrics.jsonl").read_text().splitlines()
    (run / "eval_metrics.jsonl").write_text("\n".join(lines) + "\n" + lines[-1][:9])  # a full disk's half line
    with caplog.at_level(logging.WARNING):
        code, err = _run(world.train_args(run), capsys)
    assert code == 0, err
    assert any("was cut short" in r.getMessage() for r in caplog.records)
    assert (run / "eval_metrics.jsonl").read_text().splitlines() == lines


def test_an_empty_run_config_is_one_line_naming_it(world, finished, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    (run / "run_config.json").write_text("")
    code, err = _run(world.train_args(run), capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and f"{run}/run_config.json" in err, err


def test_a_damaged_best_checkpoint_falls_back_with_a_warning(world, finished, tmp_path, capsys, caplog):
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    os.remove(run / "export" / "prompt.npy")
    for path in (run / "best").rglob("*"):
        if path.is_file() and "params" in path.parts and path.stat().st_size > 0 and "_METADATA" not in path.name:
            path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with caplog.at_level(logging.WARNING):
        code, err = _run(world.train_args(run), capsys)
    assert code == 0, err
    assert any("is damaged" in r.getMessage() for r in caplog.records)
    assert np.isfinite(np.load(run / "export" / "prompt.npy")).all()


def test_a_truncated_masks_file_is_recomputed(world, tmp_path, capsys, caplog):
    run = tmp_path / "xp"
    assert cli_main.main(world.xprompt_args(run)) == 0
    masks_file = run / "pruning" / "ratio_0.50" / "masks.npz"
    with np.load(masks_file) as saved:
        expected = {k: saved[k] for k in saved.files}
    masks_file.write_bytes(masks_file.read_bytes()[:40])
    with caplog.at_level(logging.WARNING):
        code, err = _run(world.xprompt_args(run), capsys)
    assert code == 0, err
    assert any("masks.npz is damaged" in r.getMessage() for r in caplog.records)
    with np.load(masks_file) as saved:
        assert {k: saved[k].tolist() for k in saved.files} == {k: v.tolist() for k, v in expected.items()}


def _no_temporaries(folder):
    return [str(p) for p in folder.rglob("*") if ".tmp" in p.name or "orbax-checkpoint-tmp" in p.name]


@pytest.mark.parametrize("site", ["export", "metrics", "checkpoint"])
def test_a_full_disk_is_one_line_leaves_nothing_half_written_and_resumes(world, finished, tmp_path, capsys,
                                                                          monkeypatch, site):
    """ENOSPC injected at each write site of a run: one line naming the path, no temporary file, and the
    same command then finishes with the uninterrupted run's export and metrics."""
    import errno

    from xprompt_jax.run import checkpoints, run_dir
    run = tmp_path / "run"

    def full(path):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
    if site == "export":
        real_save = np.save
        monkeypatch.setattr(export.np, "save", lambda file, arr, *a, **k: (
            real_save(file, arr[: len(arr) // 2], *a, **k), full(file))[1])
    elif site == "metrics":
        monkeypatch.setattr(run_dir.RunDir, "append_metrics", lambda self, record: full(self.metrics_path))
    else:
        monkeypatch.setattr(checkpoints.RunCheckpoints, "save",
                            lambda self, step, state, position: full(f"{self.directory}/{step}"))
    code, err = _run(world.train_args(run), capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert err.startswith("error: no space left on device writing ") and "run the same command to resume" in err
    assert _no_temporaries(run) == []
    monkeypatch.undo()
    code, err = _run(world.train_args(run), capsys)
    assert code == 0, err
    np.testing.assert_array_equal(np.load(run / "export" / "prompt.npy"), np.load(finished / "export" / "prompt.npy"))
    assert (run / "eval_metrics.jsonl").read_text() == (finished / "eval_metrics.jsonl").read_text()


# ------------------------------------------------------------------------------------------------
# SIGTERM outside the training loop: stop cleanly, exit 0, resume
# ------------------------------------------------------------------------------------------------
def test_sigterm_during_xprompts_pruning_stage_exits_0_with_a_message_and_resumes(world, tmp_path, capsys,
                                                                                  monkeypatch):
    from xprompt_jax.xprompt import pruning
    run = tmp_path / "xp"
    real = pruning.ratio_schedule

    def signalled(*args, **kwargs):  # the machine is taken while stage 2 runs
        os.kill(os.getpid(), signal.SIGTERM)
        return real(*args, **kwargs)
    monkeypatch.setattr(pruning, "ratio_schedule", signalled)
    code, err = _run(world.xprompt_args(run), capsys)
    assert code == 0, err
    assert "stopped on a signal while computing XPrompt's importance scores" in err, err
    assert not (run / "pruning" / "ratio_0.50" / "masks.npz").exists()
    assert stopping.requested() is None  # the next command in this process starts afresh
    monkeypatch.undo()
    code, err = _run(world.xprompt_args(run), capsys)
    assert code == 0, err
    assert (run / "summary.json").exists()


def test_a_stop_requested_while_a_cache_is_written_leaves_no_cache(tmp_path):
    from xprompt_jax.data.write_cache import write_cache
    out = tmp_path / "cache"
    stopping.request(signal.SIGTERM)
    try:
        with pytest.raises(stopping.Stopped, match="writing the cache of demo_max_no_keyword:validation"):
            write_cache("demo_max_no_keyword", "validation", str(out), {"inputs": 12, "targets": 4})
    finally:
        stopping.clear()
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_a_non_utf8_byte_names_the_file_and_line(tmp_path):
    from tasks.superglue_files import read_jsonl
    from xprompt_jax.errors import DataError
    path = tmp_path / "val.jsonl"
    path.write_bytes(b'{"a": 1}\n{"b": "caf\xe9"}\n')
    with pytest.raises(DataError, match=r"val.jsonl, line 2: not UTF-8 text \(byte 0xe9"):
        list(read_jsonl(str(path)))


def test_an_unwritable_cache_folder_is_one_line_naming_it(tmp_path, monkeypatch):
    """A read-only DATA_CACHE_DIR with no cache yet (tested by injection: root writes anywhere)."""
    import errno

    from xprompt_jax.data import task_cache, write_cache
    from xprompt_jax.errors import DataError

    def read_only(task, split, out_dir, *args, **kwargs):
        raise PermissionError(errno.EROFS, os.strerror(errno.EROFS), out_dir)
    monkeypatch.setattr(write_cache, "write_cache", read_only)
    with pytest.raises(DataError, match=f"to {tmp_path}/demo_max_no_keyword/validation-12-4 .*DATA_CACHE_DIR"):
        task_cache.open_split("demo_max_no_keyword", "validation", None, str(tmp_path), 12, 4)
