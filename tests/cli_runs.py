"""Running the ``xprompt-jax`` CLI in a subprocess and interrupting it at a chosen moment.

Shared by the end-to-end tests of interrupted runs (issue 16) and of bad input (issue 15). The child
inherits ``XPROMPT_COMPILATION_CACHE`` (conftest sets it), so the tiny programs compile once per session,
and runs on one CPU device (the suite's eight forced host devices only slow a subprocess down).
"""
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

from helpers import REPO


def cli_env():
    env = dict(os.environ)
    env["XLA_FLAGS"] = re.sub(r"--xla_force_host_platform_device_count=\d+", "", env.get("XLA_FLAGS", "")).strip()
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env["PYTHONUNBUFFERED"] = "1"
    return env


def cli(*args):
    """The command line of ``xprompt-jax ARGS`` run from this checkout."""
    return [sys.executable, "-m", "xprompt_jax.cli", *args]


class Interrupted:
    """A finished (or signalled) CLI run: its exit status, its output, and whether the signal was sent."""

    def __init__(self, returncode, output, signalled):
        self.returncode, self.output, self.signalled = returncode, output, signalled


def run_cli(command, trigger=None, sig=signal.SIGKILL, timeout=240) -> Interrupted:
    """Run ``command``; send ``sig`` the first time ``trigger(lines)`` is true.

    ``trigger`` sees the output lines so far; it is checked after each line (in the reading thread, so a
    line-based trigger fires within microseconds of the line) and every 2 ms (for file-based triggers).
    """
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                            env=cli_env(), cwd=str(REPO))
    lines, lock, sent = [], threading.Lock(), []

    def fire():
        with lock:
            if trigger is not None and not sent and proc.poll() is None and trigger(lines):
                proc.send_signal(sig)
                sent.append(True)

    def read():
        for line in proc.stdout:
            lines.append(line)
            fire()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    deadline = time.time() + timeout
    while proc.poll() is None:
        if time.time() > deadline:
            proc.kill()
            proc.wait()
            raise AssertionError(f"{command[3]} ran past {timeout}s:\n{''.join(lines)[-3000:]}")
        fire()
        time.sleep(0.002)
    reader.join(timeout=30)
    return Interrupted(proc.returncode, "".join(lines), bool(sent))


def metrics_lines(model_dir):
    path = os.path.join(model_dir, "eval_metrics.jsonl")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def metrics_steps(model_dir):
    return [r["step"] for r in metrics_lines(model_dir)]


def numbered(folder):
    """The step folders (orbax's finished checkpoints) under ``folder``."""
    if not os.path.isdir(folder):
        return []
    return sorted(int(n) for n in os.listdir(folder) if n.isdigit())
