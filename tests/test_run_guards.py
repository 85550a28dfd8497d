"""MODEL_DIR guards, preemption and gin macro checks, as units (the CLI tests drive them end to end)."""
import json
import os
import signal
import socket
import subprocess
import sys

import pytest

from xprompt_jax.cli.gin_checks import check_macro_bindings
from xprompt_jax.cli.gin_flags import GIN_DIR
from xprompt_jax.errors import ConfigError
from xprompt_jax.run.lock import LOCK_FILE, RunLock, prepare_model_dir
from xprompt_jax.run.preemption import PreemptionWatcher


def test_model_dir_that_is_a_file_or_under_a_file_is_one_error(tmp_path):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(ConfigError, match="is a file, not a folder"):
        prepare_model_dir(str(a_file))
    with pytest.raises(ConfigError, match="lies under a file"):
        prepare_model_dir(str(a_file / "run"))


def test_model_dir_in_a_location_that_cannot_be_written_is_one_error():
    with pytest.raises(ConfigError, match="cannot be created"):
        prepare_model_dir("/sys/xprompt_jax_run")  # read-only for everyone, root included


def test_a_second_run_on_a_locked_model_dir_is_refused_with_the_holder_named(tmp_path):
    with RunLock(str(tmp_path)):
        holder = json.loads((tmp_path / LOCK_FILE).read_text())
        assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
        with pytest.raises(ConfigError, match=f"in use by pid {os.getpid()} on host"):
            RunLock(str(tmp_path)).acquire()
    assert not (tmp_path / LOCK_FILE).exists()  # released
    RunLock(str(tmp_path)).acquire().release()


def test_a_stale_lock_of_an_ended_process_is_taken_over(tmp_path):
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    (tmp_path / LOCK_FILE).write_text(json.dumps({"host": socket.gethostname(), "pid": ended.pid,
                                                  "started": "then"}))
    lock = RunLock(str(tmp_path)).acquire()
    assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == os.getpid()
    lock.release()


def test_a_lock_held_on_another_host_is_refused(tmp_path):
    (tmp_path / LOCK_FILE).write_text(json.dumps({"host": "other-host", "pid": 1, "started": "then"}))
    with pytest.raises(ConfigError, match=f"other-host.*delete {tmp_path / LOCK_FILE}"):
        RunLock(str(tmp_path)).acquire()


def test_sigterm_sets_the_flag_and_the_handler_is_restored_after():
    before = signal.getsignal(signal.SIGTERM)
    with PreemptionWatcher() as watcher:
        assert not watcher.should_stop()
        os.kill(os.getpid(), signal.SIGTERM)
        assert watcher.should_stop()
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_misspelled_macro_is_refused_with_the_closest_name():
    files = ["runs/prompt_tune.gin"]
    check_macro_bindings(files, ["BATCH_SIZE = 4", "MODEL_DIR = '/tmp/x'"], [GIN_DIR])
    with pytest.raises(ConfigError, match="BATCH_SIZ is not read.*did you mean BATCH_SIZE"):
        check_macro_bindings(files, ["BATCH_SIZ = 4"], [GIN_DIR])


def test_macros_read_by_included_files_count():
    # runs/xprompt.gin includes runs/prompt_tune.gin, which reads %LEARNING_RATE.
    check_macro_bindings(["runs/xprompt.gin"], ["LEARNING_RATE = 0.1", "RATIOS = [0.5]"], [GIN_DIR])
    with pytest.raises(ConfigError, match="RATIO is not read.*did you mean RATIOS"):
        check_macro_bindings(["runs/xprompt.gin"], ["RATIO = [0.5]"], [GIN_DIR])


def test_activation_dtype_auto_is_bfloat16_on_accelerators_and_float32_on_the_cpu(monkeypatch):
    """ACTIVATION_DTYPE='auto' (the run files' default) resolves per platform and lands in the config that
    run_config.json records; prompts, optimiser state and masks stay float32 (their own dtypes)."""
    import jax

    from xprompt_jax.models.config import t5_config
    from xprompt_jax.run.config import FrozenModel, RunSettings, resolve_activation_dtype
    from xprompt_jax.run.frozen_model import load_frozen
    assert [resolve_activation_dtype("auto", b) for b in ("cpu", "gpu", "tpu")] == ["float32", "bfloat16", "bfloat16"]
    assert resolve_activation_dtype(None, "gpu") is None and resolve_activation_dtype("float32", "tpu") == "float32"
    source = FrozenModel(config=t5_config("t5_1_1_tiny"), activation_dtype="auto")
    config, _ = load_frozen(source)
    assert config.dtype == "float32" and RunSettings(model=source).identity(config)["model"]["dtype"] == "float32"
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    config, params = load_frozen(source)
    assert config.dtype == "bfloat16" and RunSettings(model=source).identity(config)["model"]["dtype"] == "bfloat16"
    assert all(str(x.dtype) == "float32" for x in jax.tree.leaves(params))   # weights: FROZEN_DTYPE's say
    with pytest.raises(ConfigError, match="ACTIVATION_DTYPE"):
        FrozenModel(activation_dtype="fp8")
