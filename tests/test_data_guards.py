"""The data side's guards (issues 15, 16): quiet TensorFlow, clear vocabulary errors, damaged caches,
stale caches rewritten when their sources change, bounded waits on gs:// paths."""
import json
import os
import shutil
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from helpers import REPO, shared_path, write_label_task

from xprompt_jax.data.cache import CachedSplit
from xprompt_jax.data.task_cache import open_split
from xprompt_jax.errors import DataError


def _python(code, env_changes=None, drop=()):
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(env_changes or {})
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)


# -- TensorFlow's C++ logging on the data side (issue 15) -------------------------------------------
def test_task_modules_keep_tensorflow_start_up_logging_quiet():
    # Without TF_CPP_MIN_LOG_LEVEL, TensorFlow 2.21 prints "E0000 ... failed call to cuInit" (and its CPU
    # feature notes) on a machine without a GPU as soon as it runs an op.
    done = _python("import tasks.demo, tensorflow as tf; print(int(tf.constant(1) + 1))",
                   drop=("TF_CPP_MIN_LOG_LEVEL", "TF_ENABLE_ONEDNN_OPTS"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "2"
    assert "cuInit" not in done.stderr and "cpu_feature_guard" not in done.stderr, done.stderr


def test_a_tensorflow_log_level_the_user_set_wins():
    done = _python("import os, tasks; print(os.environ['TF_CPP_MIN_LOG_LEVEL'])", {"TF_CPP_MIN_LOG_LEVEL": "1"})
    assert done.stdout.strip() == "1", done.stderr


# -- the task cache follows its sources (issue 16) and is checked against meta.json (issue 15) ------
CB = "taskless_super_glue_cb_v102"
LENGTHS = (256, 8)


@pytest.fixture
def cb_dirs(tmp_path):
    """CB's official validation file copied into a SuperGLUE folder of this test's own, and the T5 vocabulary."""
    pytest.importorskip("seqio")
    folder = tmp_path / "superglue"
    (folder / "CB").mkdir(parents=True)
    shutil.copy(shared_path("data", "superglue", "CB", "val.jsonl"), folder / "CB" / "val.jsonl")
    return {"data_dir": str(folder), "vocab_path": str(shared_path("fixtures", "t5_sentencepiece.model"))}


@pytest.fixture
def register():
    """Registers SuperGLUE with the given folders; the environment's registration is back afterwards."""
    import tasks.superglue as superglue

    yield superglue.register_superglue
    superglue.register_superglue()


def _open(cache_dir):
    return open_split(CB, "validation", None, str(cache_dir), *LENGTHS)


def _meta_inode(split):
    return os.stat(os.path.join(split.path, "meta.json")).st_ino


def test_an_unchanged_source_reuses_the_cache(cb_dirs, register, tmp_path, capsys):
    register(**cb_dirs)
    first = _open(tmp_path / "cache")
    assert f"[data] writing the cache of {CB}:validation" in capsys.readouterr().out
    again = _open(tmp_path / "cache")
    assert "[data]" not in capsys.readouterr().out
    assert _meta_inode(again) == _meta_inode(first) and again.num_examples == first.num_examples == 56


def test_an_edited_jsonl_rewrites_the_cache_and_says_so(cb_dirs, register, tmp_path, capsys):
    register(**cb_dirs)
    before = _open(tmp_path / "cache").examples[0]["inputs_pretokenized"]
    val = os.path.join(cb_dirs["data_dir"], "CB", "val.jsonl")
    lines = open(val).readlines()
    first = json.loads(lines[0])
    lines[0] = json.dumps({**first, "hypothesis": "the edited hypothesis"}) + "\n"
    open(val, "w").writelines(lines)
    capsys.readouterr()
    after = _open(tmp_path / "cache")
    out = [line for line in capsys.readouterr().out.strip().splitlines() if "were cut" not in line]  # + truncation
    assert len(out) == 1 and out[0].startswith(f"[data] rewriting the cache of {CB}:validation at ")
    assert f"{val} changed (" in out[0]
    assert "the edited hypothesis" in after.examples[0]["inputs_pretokenized"]
    assert "the edited hypothesis" not in before
    assert _open(tmp_path / "cache").examples[0] == after.examples[0]   # and is current again
    assert "[data]" not in capsys.readouterr().out


def test_an_invalid_label_in_the_source_is_refused_not_read_from_the_old_cache(cb_dirs, register, tmp_path):
    register(**cb_dirs)
    _open(tmp_path / "cache")
    val = os.path.join(cb_dirs["data_dir"], "CB", "val.jsonl")
    lines = open(val).readlines()
    lines[2] = json.dumps({**json.loads(lines[2]), "label": "maybe"}) + "\n"
    open(val, "w").writelines(lines)
    with pytest.raises(DataError, match=rf"{val}, line 3: .*label 'maybe' is none of"):
        _open(tmp_path / "cache")


def test_another_data_folder_rewrites_the_cache(cb_dirs, register, tmp_path, capsys):
    register(**cb_dirs)
    _open(tmp_path / "cache")
    other = tmp_path / "other"
    shutil.copytree(cb_dirs["data_dir"], other)
    register(data_dir=str(other), vocab_path=cb_dirs["vocab_path"])
    capsys.readouterr()
    _open(tmp_path / "cache")
    out = capsys.readouterr().out
    assert f"rewriting the cache of {CB}:validation" in out and f"source {cb_dirs['data_dir']} -> {other}" in out


def test_the_data_folder_of_the_environment_counts_too(cb_dirs, register, tmp_path, monkeypatch, capsys):
    """Without a registration in this process (a training host without TensorFlow): the environment decides."""
    from tasks import fingerprint

    monkeypatch.setenv("XPROMPT_SUPERGLUE_DIR", cb_dirs["data_dir"])
    monkeypatch.setenv("XPROMPT_VOCAB_PATH", cb_dirs["vocab_path"])
    register()
    written = fingerprint.source_fingerprint(CB, "validation", {"inputs": 256, "targets": 8})
    monkeypatch.setattr(fingerprint, "_REGISTERED", {})
    assert fingerprint.source_fingerprint(CB, "validation", {"inputs": 256, "targets": 8}) == written
    monkeypatch.setenv("XPROMPT_SUPERGLUE_DIR", str(tmp_path / "elsewhere"))
    change = fingerprint.describe_change(written, fingerprint.source_fingerprint(CB, "validation",
                                                                                 {"inputs": 256, "targets": 8}))
    assert change == f"source {cb_dirs['data_dir']} -> {tmp_path / 'elsewhere'}"


def test_another_vocabulary_rewrites_the_cache(cb_dirs, register, tmp_path, capsys):
    register(**cb_dirs)
    _open(tmp_path / "cache")
    vocab = tmp_path / "copy_of_t5.model"
    shutil.copy(cb_dirs["vocab_path"], vocab)
    register(data_dir=cb_dirs["data_dir"], vocab_path=str(vocab))
    capsys.readouterr()
    split = _open(tmp_path / "cache")
    out = capsys.readouterr().out
    assert f"vocabulary {cb_dirs['vocab_path']} -> {vocab}" in out
    assert split.meta["vocabulary"]["path"] == str(vocab)


def _truncate(path, keep=300):
    with open(path, "r+b") as f:
        f.truncate(keep)


def test_a_truncated_npy_in_an_owned_cache_is_rewritten(cb_dirs, register, tmp_path, capsys):
    register(**cb_dirs)
    good = _open(tmp_path / "cache")
    tokens = np.array(good.features["encoder_input_tokens"])
    _truncate(os.path.join(good.path, "encoder_input_tokens.npy"))
    capsys.readouterr()
    again = _open(tmp_path / "cache")
    out = capsys.readouterr().out
    assert "rewriting the cache" in out and "it is damaged" in out and "encoder_input_tokens.npy is 300 bytes" in out
    np.testing.assert_array_equal(again.features["encoder_input_tokens"], tokens)
    assert not [name for name in os.listdir(os.path.dirname(again.path)) if name.startswith(".")]  # no leftovers


def test_a_truncated_npy_in_a_named_cache_is_refused_in_one_line(tmp_path):
    path = write_label_task(tmp_path / "mine", shared_path("fixtures", "t5_sentencepiece.model"))
    _truncate(os.path.join(path, "decoder_target_tokens.npy"))
    with pytest.raises(DataError) as err:
        open_split(None, "train", path, None, 12, 4)
    message = str(err.value)
    assert "\n" not in message and "decoder_target_tokens.npy is 300 bytes, but its int32" in message
    assert "a truncated or damaged cache" in message
    _truncate(os.path.join(path, "decoder_target_tokens.npy"), keep=5)  # not even a header
    with pytest.raises(DataError, match="is not a readable NumPy file") as err:
        CachedSplit.open(path)
    assert "\n" not in str(err.value)


def test_a_short_examples_file_is_refused_when_opened(tmp_path):
    path = write_label_task(tmp_path / "mine", shared_path("fixtures", "t5_sentencepiece.model"))
    examples = os.path.join(path, "examples.jsonl")
    lines = open(examples).readlines()
    open(examples, "w").writelines(lines[:-3])
    with pytest.raises(DataError, match=r"examples.jsonl has 45 lines for 48 examples \(a damaged cache\)"):
        CachedSplit.open(path)


# -- vocabulary errors before any cache exists (issue 15) -----------------------------------------
def _vocabulary_error(register, cb_dirs, tmp_path, vocab_path):
    from xprompt_jax.errors import ConfigError

    register(data_dir=cb_dirs["data_dir"], vocab_path=vocab_path)
    with pytest.raises(ConfigError) as err:
        _open(tmp_path / "cache")
    message = str(err.value)
    assert "\n" not in message and "XPROMPT_VOCAB_PATH" in message and vocab_path in message
    assert not os.path.exists(tmp_path / "cache" / CB / "validation-256-8")   # nothing half-written
    return message


def test_a_missing_vocabulary_file_is_one_line(cb_dirs, register, tmp_path):
    message = _vocabulary_error(register, cb_dirs, tmp_path, str(tmp_path / "absent.model"))
    assert "no such file" in message


def test_a_file_that_is_not_sentencepiece_is_one_line(cb_dirs, register, tmp_path):
    (tmp_path / "notes.txt").write_text("not a SentencePiece model\n")
    message = _vocabulary_error(register, cb_dirs, tmp_path, str(tmp_path / "notes.txt"))
    assert "is not a SentencePiece model" in message


# -- gs:// without network: a bounded wait and one line (issue 16) ----------------------------------
@pytest.fixture
def unreachable_gcs(monkeypatch):
    """Cloud Storage as a local socket that accepts connections and never answers (no network needed)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    monkeypatch.setenv("TENSORSTORE_GCS_HTTP_URL", f"http://127.0.0.1:{server.getsockname()[1]}")
    monkeypatch.setenv("XPROMPT_GCS_TIMEOUT", "0.5")
    yield
    server.close()


def test_a_gs_checkpoint_without_network_fails_in_bounded_time(unreachable_gcs):
    from xprompt_jax.errors import CheckpointError
    from xprompt_jax.t5_import.loader import resolve_checkpoint

    start = time.monotonic()
    with pytest.raises(CheckpointError) as err:
        resolve_checkpoint("gs://some-bucket/t5x/checkpoint_1000000")
    assert time.monotonic() - start < 30
    message = str(err.value)
    assert "\n" not in message and "no answer from gs://some-bucket/t5x/checkpoint_1000000/" in message
    assert "within 0.5 s" in message and "copy it to a local folder" in message and "XPROMPT_GCS_TIMEOUT" in message


def test_a_gs_vocabulary_without_network_fails_in_bounded_time(cb_dirs, register, tmp_path, unreachable_gcs):
    start = time.monotonic()
    message = _vocabulary_error(register, cb_dirs, tmp_path, "gs://t5-data/vocabs/cc_all.32000/sentencepiece.model")
    assert time.monotonic() - start < 60
    assert "no answer from gs://t5-data/vocabs/cc_all.32000/sentencepiece.model within 0.5 s" in message


def test_a_bad_timeout_setting_is_named(monkeypatch):
    from xprompt_jax.errors import CheckpointError
    from xprompt_jax.t5_import import storage

    monkeypatch.setenv("XPROMPT_GCS_TIMEOUT", "soon")
    with pytest.raises(CheckpointError, match="XPROMPT_GCS_TIMEOUT='soon' is not a number of seconds > 0"):
        storage.read_bytes("gs://some-bucket/x", "checkpoint")


def test_a_current_cache_is_reused_without_tensorflow(cb_dirs, register, tmp_path):
    """A training host without TensorFlow: the fingerprint comes from the environment, TF-free."""
    register(**cb_dirs)
    _open(tmp_path / "cache")
    code = (f"import sys; from xprompt_jax.data.task_cache import open_split; "
            f"s = open_split({CB!r}, 'validation', None, {str(tmp_path / 'cache')!r}, 256, 8); print(s.num_examples); "
            "bad = [m for m in ('tensorflow', 'seqio') if m in sys.modules]; assert not bad, bad")
    done = _python(code, {"XPROMPT_SUPERGLUE_DIR": cb_dirs["data_dir"], "XPROMPT_VOCAB_PATH": cb_dirs["vocab_path"]})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "56"   # no "[data] rewriting" line either


def test_a_tfds_source_is_fingerprinted_by_its_prepared_files(tmp_path, monkeypatch):
    from tasks import fingerprint

    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))
    monkeypatch.setattr(fingerprint, "_REGISTERED", {})
    for env in ("XPROMPT_SUPERGLUE_DIR", "XPROMPT_FEWGLUE_DIR"):
        monkeypatch.delenv(env, raising=False)
    folder = tmp_path / "tfds" / "super_glue" / "cb" / "1.0.2"
    folder.mkdir(parents=True)
    (folder / "super_glue-validation.tfrecord-00000-of-00001").write_bytes(b"x" * 10)
    lengths = {"inputs": 8, "targets": 4}
    before = fingerprint.source_fingerprint(CB, "validation", lengths)
    assert before["source"] == {"kind": "tfds", "folder": str(folder), "name": "super_glue/cb:1.0.2"}
    (folder / "super_glue-validation.tfrecord-00000-of-00001").write_bytes(b"x" * 12)
    assert fingerprint.describe_change(before, fingerprint.source_fingerprint(CB, "validation", lengths)) == (
        f"{folder}/super_glue-validation.tfrecord-00000-of-00001 changed (10 -> 12 bytes)")
    assert fingerprint.describe_change(before, before) is None
    assert "sequence lengths" in fingerprint.describe_change(before, fingerprint.source_fingerprint(
        CB, "validation", {"inputs": 16, "targets": 4}))


@pytest.mark.parametrize("vocab, expected", [
    ("{tmp}/absent.model", "cannot read the SentencePiece model {tmp}/absent.model: no such file"),
    ("gs://t5-data/vocabs/cc_all.32000/sentencepiece.model",
     "no answer from gs://t5-data/vocabs/cc_all.32000/sentencepiece.model within 0.5 s")])
def test_the_cli_gives_one_line_and_exit_2_for_an_unusable_vocabulary(cb_dirs, tmp_path, vocab, expected):
    server = socket.socket()   # Cloud Storage that never answers: no network needed
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    vocab, expected = vocab.format(tmp=tmp_path), expected.format(tmp=tmp_path)
    args = ["train", "--gin_file=sizes/prompt_tuning_test.gin", "--gin_file=prompts/sampled_vocabulary.gin",
            "--gin_file=runs/prompt_tune.gin", f"--gin.MODEL_DIR='{tmp_path / 'run'}'",
            f"--gin.CHECKPOINT='{shared_path('fixtures', 't5x_t5_1_1_tiny', 'checkpoint_3')}'",
            f"--gin.TASK='{CB}'", f"--gin.DATA_CACHE_DIR='{tmp_path / 'cache'}'", "--gin.BATCH_SIZE=8",
            "--gin.TRAIN_STEPS=1", "--gin.INPUT_LENGTH=64", "--gin.TARGET_LENGTH=4", "--gin.PROMPT_LENGTH=4"]
    env = dict(os.environ, PYTHONPATH=str(REPO), XPROMPT_SUPERGLUE_DIR=cb_dirs["data_dir"], XPROMPT_VOCAB_PATH=vocab,
               XPROMPT_GCS_TIMEOUT="0.5", TENSORSTORE_GCS_HTTP_URL=f"http://127.0.0.1:{server.getsockname()[1]}")
    try:
        done = subprocess.run([sys.executable, "-m", "xprompt_jax.cli", *args], cwd=REPO, env=env, capture_output=True,
                              text=True, timeout=300)
    finally:
        server.close()
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert done.returncode == 2 and len(errors) == 1, done.stderr
    assert expected in errors[0] and "XPROMPT_VOCAB_PATH" in errors[0]
    assert "Traceback" not in done.stderr


def test_demo_tasks_are_fingerprinted_by_their_shipped_vocabulary():
    from tasks import fingerprint
    from tasks.demo_vocab import VOCAB_PATH

    found = fingerprint.source_fingerprint("demo_max_no_keyword", "train", {"inputs": 12, "targets": 4})
    assert found["source"] == {"kind": "generated"} and found["vocabulary"]["path"] == VOCAB_PATH
    assert found["vocabulary"]["file"][0] == os.path.getsize(VOCAB_PATH)
