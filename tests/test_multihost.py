"""Multi-host runs on this machine: two processes joined by ``jax.distributed`` over a loopback
coordinator, 4 CPU devices each, against one process with 8 CPU devices.

The same ``xprompt-jax train`` command (real T5X fixture, small caches) runs both ways; the two-process
run must end in the same state (float tolerance), evaluate to the same metrics, have its files written
once, and resume from its own checkpoint in the two-process setting to the same prompt as an
uninterrupted single-process run. The settings resolver (flags, JAX_* variables, SLURM) is tested
without starting anything.
"""
import json
import os
import socket
import subprocess
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from helpers import REPO, shared_path, train_command, write_label_task

from xprompt_jax import distributed
from xprompt_jax.distributed import (
    DistributedError,
    Settings,
    first_slurm_host,
    resolve,
)

TIMEOUT = 240


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    vocab = shared_path("fixtures", "t5_sentencepiece.model")
    return {"train": write_label_task(root / "train", vocab, n=48),
            "eval": write_label_task(root / "eval", vocab, n=20, seed=1),   # 20 = 2 full batches of 8 + a padded one
            "checkpoint": str(shared_path("fixtures", "t5x_t5_1_1_tiny", "checkpoint_3"))}


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _command(model_dir, data, steps):
    return train_command(model_dir, data, steps, checkpoint_period=3, eval_period=3)


def _env(devices: int) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_COORDINATOR", "JAX_NUM_PROCESSES",
                                                                     "JAX_PROCESS_ID", "SLURM_"))}
    env["PYTHONPATH"] = str(REPO)
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    env["JAX_PLATFORMS"] = "cpu"
    return env


def _one_process(model_dir, data, steps):
    out = subprocess.run(_command(model_dir, data, steps), env=_env(8), capture_output=True, text=True,
                         timeout=TIMEOUT)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    return out.stdout


def _two_processes(model_dir, data, steps, command=None):
    """Both processes of one run, each with 4 CPU devices; returns their stdouts."""
    address = f"127.0.0.1:{_free_port()}"
    command = command or _command(model_dir, data, steps)
    procs = [subprocess.Popen(command + [f"--coordinator_address={address}", "--num_processes=2",
                                         f"--process_id={i}"],
                              env=_env(4), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(2)]
    outs = []
    try:
        for proc in procs:
            stdout, stderr = proc.communicate(timeout=TIMEOUT)
            outs.append((proc.returncode, stdout, stderr))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    for i, (code, stdout, stderr) in enumerate(outs):
        assert code == 0, f"process {i} failed:\n{stdout[-2000:]}\n{stderr[-4000:]}"
    return [stdout for _, stdout, _ in outs]


def _state(model_dir, step):
    """The checkpointed TrainState at ``step`` as numpy, whatever topology wrote it."""
    path = os.path.join(model_dir, "checkpoints", str(step), "state")
    checkpointer = ocp.StandardCheckpointer()
    meta = checkpointer.metadata(path)
    meta = getattr(meta, "item_metadata", meta)
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device), meta)
    return jax.tree.map(np.asarray, checkpointer.restore(path, target))


def _assert_same_state(a, b):
    leaves_a, tree_a = jax.tree.flatten(a)
    leaves_b, tree_b = jax.tree.flatten(b)
    assert tree_a == tree_b
    for x, y in zip(leaves_a, leaves_b):
        np.testing.assert_allclose(np.asarray(x, np.float64), np.asarray(y, np.float64), rtol=1e-5, atol=1e-6)


def _metrics(model_dir):
    with open(os.path.join(model_dir, "eval_metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def test_two_processes_train_and_resume_like_one_process_with_eight_devices(data, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    _one_process(one, data, 9)                           # the reference: 9 steps without a stop
    stdout0, stdout1 = _two_processes(two, data, 6)      # 2 x 4 devices, stopped at step 6

    assert "[distributed] 2 processes, 8 devices (4 per process) on cpu" in stdout0
    assert "mesh {'data': 8, 'model': 1} on 8 cpu device(s), 2 process(es)" in stdout0
    assert "[eval]" in stdout0 and "[eval]" not in stdout1 and "[train] done" not in stdout1  # process 0 logs
    for step in (3, 6):
        _assert_same_state(_state(two, step), _state(one, step))
    # Evaluated across both processes (each fed half of every batch, the padded last one included)
    # to the same metrics, each line written once.
    assert _metrics(two) == [m for m in _metrics(one) if m["step"] <= 6]
    np.testing.assert_allclose(np.load(two / "export" / "prompt.npy"), np.load(one / "export" / "prompt.npy"),
                               rtol=1e-5, atol=1e-6)

    # Resume the two-process run from its step-6 checkpoint, still on two processes, to step 9.
    stdout0, stdout1 = _two_processes(two, data, 9)
    assert f"resumed from {two}/checkpoints/6" in stdout0
    assert "[train] done: step 9" in stdout0
    assert sorted(int(s) for s in os.listdir(two / "checkpoints") if s.isdigit()) == [3, 6, 9]
    _assert_same_state(_state(two, 9), _state(one, 9))
    assert _metrics(two) == _metrics(one)
    np.testing.assert_allclose(np.load(two / "export" / "prompt.npy"), np.load(one / "export" / "prompt.npy"),
                               rtol=1e-5, atol=1e-6)


def test_two_processes_write_a_missing_task_cache_once(tmp_path):
    """TASK without a cache: process 0 writes it (seqio), the other waits and reads the same folder."""
    cache_dir = tmp_path / "data"
    command = [sys.executable, "-m", "xprompt_jax.cli", "train", "--gin_file=models/t5_1_1.gin",
               "--gin_file=sizes/demo.gin", "--gin_file=runs/demo_prompt_tune.gin",
               f"--gin.MODEL_DIR='{tmp_path / 'run'}'", f"--gin.DATA_CACHE_DIR='{cache_dir}'",
               "--gin.TRAIN_STEPS=1", "--gin.EVAL_PERIOD=1"]
    stdout0, stdout1 = _two_processes(None, None, None, command)
    assert stdout0.count("[data] writing the cache of demo_max_no_keyword") == 2   # train and validation
    assert "[data] writing" not in stdout1
    assert sorted(os.listdir(cache_dir / "demo_max_no_keyword")) == ["train-12-4", "validation-12-4"]
    assert "[eval] step 1: accuracy" in stdout0


# ------------------------------------------------------------------------------------------------
# Where the settings come from
# ------------------------------------------------------------------------------------------------
def test_one_process_needs_nothing():
    assert resolve(environ={}) is None
    assert resolve(num_processes=1, environ={}) is None
    assert resolve("10.0.0.1:1234", 4, 2, mode="off", environ={}) is None


def test_flags_then_jax_environment_variables():
    assert resolve("10.0.0.1:1234", 4, 2, environ={}) == Settings("10.0.0.1:1234", 4, 2, None, "flags")
    env = {"JAX_COORDINATOR_ADDRESS": "h0:999", "JAX_NUM_PROCESSES": "3", "JAX_PROCESS_ID": "1",
           "JAX_LOCAL_DEVICE_IDS": "0,1"}
    assert resolve(environ=env) == Settings("h0:999", 3, 1, [0, 1], "environment")
    # A flag overrides its variable; the rest comes from the environment.
    assert resolve(process_id=2, environ=env).process_id == 2


def test_incomplete_settings_name_what_is_missing():
    with pytest.raises(DistributedError, match=r"missing --num_processes \(or JAX_NUM_PROCESSES\), "
                                               r"--process_id \(or JAX_PROCESS_ID\)"):
        resolve(coordinator_address="h:1", environ={})
    with pytest.raises(DistributedError, match="--process_id 4 must be in"):
        resolve("h:1", 4, 4, environ={})
    with pytest.raises(DistributedError, match="needs a port"):
        resolve("h", 2, 0, environ={})
    with pytest.raises(DistributedError, match="--distributed must be one of"):
        resolve(mode="mpi", environ={})


@pytest.mark.parametrize("nodes, first", [("node001", "node001"), ("node001,host2", "node001"),
                                          ("gpu[003-008,010],cpu1", "gpu003"), ("a-b[7,9]", "a-b7")])
def test_first_slurm_host(nodes, first):
    assert first_slurm_host(nodes) == first


def test_slurm_environment():
    one_task_per_node = {"SLURM_JOB_ID": "4097", "SLURM_NTASKS": "4", "SLURM_PROCID": "3", "SLURM_LOCALID": "0",
                         "SLURM_STEP_NODELIST": "gpu[12-15]", "SLURM_NNODES": "4", "SLURM_NTASKS_PER_NODE": "1"}
    assert resolve(environ=one_task_per_node) == Settings("gpu12:61441", 4, 3, None, "slurm")
    one_task_per_gpu = {**one_task_per_node, "SLURM_NTASKS": "16", "SLURM_PROCID": "9", "SLURM_LOCALID": "1",
                        "SLURM_NTASKS_PER_NODE": "4(x4)", "XPROMPT_COORDINATOR_PORT": "2222"}
    assert resolve(environ=one_task_per_gpu) == Settings("gpu12:2222", 16, 9, [1], "slurm")
    assert resolve(environ={**one_task_per_node, "SLURM_NTASKS": "1"}) is None       # srun -n 1
    explicit = resolve("h:1", 2, 1, environ=one_task_per_node)                       # flags win over SLURM
    assert explicit.source == "flags" and explicit.coordinator_address == "h:1"


def test_cluster_mode_defers_to_jax_detection():
    settings = resolve(mode="cluster", environ={})
    assert settings == Settings(None, None, None, None, "cluster")


def test_cli_rejects_incomplete_settings_before_touching_jax():
    out = subprocess.run([sys.executable, "-m", "xprompt_jax.cli", "train", "--coordinator_address=h:1"],
                         env=_env(1), capture_output=True, text=True, timeout=TIMEOUT)
    assert out.returncode == 2
    assert "error: multi-process settings are incomplete: missing --num_processes" in out.stderr


def test_to_host_on_one_process():
    x = jax.device_put(np.arange(8.0), jax.sharding.NamedSharding(
        jax.sharding.Mesh(np.array(jax.devices()[:8]), ("d",)), jax.sharding.PartitionSpec("d")))
    np.testing.assert_array_equal(distributed.to_host(x), np.arange(8.0))
