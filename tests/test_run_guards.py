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
