"""The data side's guards (issues 15, 16): quiet TensorFlow, clear vocabulary errors, damaged caches,
stale caches rewritten when their sources change, bounded waits on gs:// paths."""
import os
import subprocess
import sys

from conftest import REPO


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
