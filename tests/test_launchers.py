"""The launchers (launch/tpu_pod.sh, launch/gpu_multihost.sh) without a cloud: their --dry_run output,
the worker command they build, and their errors.

"Exactly as given" is checked the way a shell would see it: the printed ``gcloud``/``ssh`` line is split
like a shell splits it, and the worker's script is then run by bash with stand-ins for ``curl``,
``gcsfuse``, ``mountpoint`` and ``python3`` (which records its argv), so the arguments the program would
receive are compared with the ones given.
"""
import json
import os
import shlex
import stat
import subprocess
import sys

import pytest
from helpers import REPO

TPU = str(REPO / "launch" / "tpu_pod.sh")
GPU = str(REPO / "launch" / "gpu_multihost.sh")
CLOUD_ENV = ("CLOUDSDK_CORE_PROJECT", "CLOUDSDK_COMPUTE_ZONE", "TPU_ACCELERATOR_TYPE", "TPU_NAME")

# Overrides as a user types them in a shell, quotes and all (after the shell has removed one level).
GIN_ARGS = ["train", "--gin_file=models/t5_1_1.gin", "--gin_file=sizes/base.gin",
            "--gin_file=prompts/sampled_vocabulary.gin", "--gin_file=runs/prompt_tune.gin",
            "--gin.TASK='taskless_super_glue_rte_v102'",
            "--gin.CHECKPOINT='gs://t5-data/pretrained_models/t5x/t5_1_1_lm100k_base/checkpoint_1100000'",
            "--gin.RATIOS=[0.1, 0.5]", '--gin.xprompt_jax.DataConfig.eval_split="validation"',
            "--gin.NOTE='it''s $HOME & `x`; \"q\"'"]


def _stub(folder, name, body):
    path = folder / name
    path.write_text("#!/bin/bash\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


@pytest.fixture
def stubs(tmp_path):
    """A PATH whose gcloud/ssh/curl/gcsfuse/mountpoint/python3 record what they were asked, touching nothing."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls.jsonl"
    record = (f'{sys.executable} -c "import json,sys; open(\'{calls}\',\'a\').write('
              f'json.dumps([sys.argv[1]] + sys.argv[2:]) + chr(10))" "$(basename "$0")" "$@"\n')
    for name in ("gcloud", "ssh", "gcsfuse", "python3", "fake_python"):
        _stub(bin_dir, name, record)
    _stub(bin_dir, "curl", "echo 0\n")             # the metadata server: this is worker 0
    _stub(bin_dir, "mountpoint", "exit 1\n")      # nothing mounted yet
    env = {k: v for k, v in os.environ.items() if k not in CLOUD_ENV and not k.startswith(("SLURM_", "JAX_"))}
    env.update(PATH=f"{bin_dir}:{env['PATH']}", HOME=str(tmp_path / "home"), PYTHON=sys.executable)
    (tmp_path / "home" / "xprompt-jax").mkdir(parents=True)
    return {"env": env, "calls": calls, "bin": bin_dir, "tmp": tmp_path}


def _calls(stubs):
    if not stubs["calls"].exists():
        return []
    return [json.loads(line) for line in stubs["calls"].read_text().splitlines()]


def _run(argv, stubs, **env):
    return subprocess.run(argv, env={**stubs["env"], **env}, capture_output=True, text=True, timeout=60)


def _commands(stdout):
    return [line for line in stdout.splitlines() if line and not line.startswith("#")]


def _run_worker_script(script, stubs):
    """Run a worker's script as its login shell would (stand-ins on PATH) and return python3's argv."""
    before = len(_calls(stubs))
    out = subprocess.run(["bash", "-c", script], env=stubs["env"], capture_output=True, text=True, timeout=60,
                         cwd=stubs["tmp"])
    assert out.returncode == 0, out.stderr
    ran = [c for c in _calls(stubs)[before:] if c[0] in ("python3", "fake_python")]
    assert len(ran) == 1, ran
    return ran[0][1:]


# ------------------------------------------------------------------------------------------------
# TPU pod slices
# ------------------------------------------------------------------------------------------------
TPU_FLAGS = ["--project=my-project", "--zone=us-central2-b", "--accelerator=v4-32", "--tpu=pt-rte"]


def test_tpu_dry_run_prints_every_step_and_runs_nothing(stubs):
    out = _run([TPU, *TPU_FLAGS, "--model_dir=gs://my-bucket/runs/pt_rte", "--spot", "--dry_run", "--", *GIN_ARGS],
               stubs)
    assert out.returncode == 0, out.stderr
    assert _calls(stubs) == []                   # no gcloud, no ssh: nothing executed
    assert "# dry run: nothing is executed" in out.stdout
    commands = [shlex.split(c) for c in _commands(out.stdout)]
    prefixes = [c[:5] for c in commands]
    assert prefixes[0] == ["gcloud", "compute", "tpus", "tpu-vm", "describe"]
    assert commands[1][:6] == ["gcloud", "compute", "tpus", "tpu-vm", "create", "pt-rte"]
    assert {"--accelerator-type=v4-32", "--project=my-project", "--zone=us-central2-b", "--spot"} <= set(commands[1])
    assert commands[2][:2] == ["sh", "-c"] and "git" in commands[2][2] and "archive" in commands[2][2]
    assert prefixes[3] == ["gcloud", "compute", "tpus", "tpu-vm", "scp"] and "--worker=all" in commands[3]
    install, run = commands[4], commands[5]
    for step in (install, run):
        assert step[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "pt-rte"] and "--worker=all" in step
    install_script = next(a for a in install if a.startswith("--command="))
    assert "pip install" in install_script and "jax[tpu]" in install_script and "gcsfuse" in install_script
    assert len(commands) == 6


def test_tpu_worker_command_carries_the_arguments_exactly(stubs):
    mount_root = stubs["tmp"] / "gcs"   # /tmp/gcs on the workers
    out = _run([TPU, *TPU_FLAGS, "--model_dir=gs://my-bucket/runs/pt_rte", f"--mount_root={mount_root}",
                "--env", "XPROMPT_DATA_CACHE=/tmp/a b", "--skip_create", "--skip_install", "--dry_run", "--",
                *GIN_ARGS], stubs)
    assert out.returncode == 0, out.stderr
    (ssh,) = [shlex.split(c) for c in _commands(out.stdout)]
    script = next(a for a in ssh if a.startswith("--command="))[len("--command="):]
    argv = _run_worker_script(script, stubs)
    # The given arguments, in order and unchanged, then what the launcher adds.
    model_dir = mount_root / "my-bucket" / "runs" / "pt_rte"
    assert argv == ["-m", "xprompt_jax.cli", *GIN_ARGS, f"--gin.MODEL_DIR='{model_dir}'", "--distributed=cluster"]
    gcsfuse = [c for c in _calls(stubs) if c[0] == "gcsfuse"]
    assert gcsfuse == [["gcsfuse", "--implicit-dirs", "my-bucket", str(mount_root / "my-bucket")]]
    # Each worker's log goes to the bucket (worker 0's is also streamed to the terminal).
    assert (model_dir / "logs" / "worker-0.log").exists()


def test_tpu_without_model_dir_logs_per_worker_at_home(stubs):
    out = _run([TPU, *TPU_FLAGS, "--skip_create", "--skip_install", "--dry_run", "--", *GIN_ARGS], stubs)
    (ssh,) = [shlex.split(c) for c in _commands(out.stdout)]
    script = next(a for a in ssh if a.startswith("--command="))[len("--command="):]
    argv = _run_worker_script(script, stubs)
    assert argv == ["-m", "xprompt_jax.cli", *GIN_ARGS, "--distributed=cluster"]
    assert (stubs["tmp"] / "home" / "xprompt-logs" / "worker-0.log").exists()


@pytest.mark.parametrize("missing, named", [("--project", "missing --project"), ("--zone", "missing --zone"),
                                            ("--accelerator", "missing --accelerator")])
def test_tpu_missing_setting_is_named(stubs, missing, named):
    flags = [f for f in TPU_FLAGS if not f.startswith(missing + "=")]
    out = _run([TPU, *flags, "--dry_run", "--", *GIN_ARGS], stubs)
    assert out.returncode == 2
    assert out.stderr.startswith(f"error: {named} (")
    assert out.stdout == "" and _calls(stubs) == []


def test_tpu_settings_from_the_environment(stubs):
    out = _run([TPU, "--dry_run", "--", *GIN_ARGS], stubs, CLOUDSDK_CORE_PROJECT="p1", CLOUDSDK_COMPUTE_ZONE="z1",
               TPU_ACCELERATOR_TYPE="v5litepod-16")
    assert out.returncode == 0, out.stderr
    assert "--accelerator-type=v5litepod-16" in out.stdout and "--project=p1 --zone=z1" in out.stdout


@pytest.mark.parametrize("extra, message", [
    (["--model_dir=/local/dir", "--", "train"], "--model_dir must be gs://BUCKET/PATH"),
    (["--", "train", "--gin.MODEL_DIR='gs://b/x'"], "pass a Cloud Storage MODEL_DIR as --model_dir=gs://"),
    (["--"], "missing the xprompt-jax command after --"),
    (["--", "--gin_file=runs/prompt_tune.gin"], "starts with the sub-command"),
])
def test_tpu_refusals(stubs, extra, message):
    out = _run([TPU, *TPU_FLAGS, "--dry_run", *extra], stubs)
    assert out.returncode == 2 and message in out.stderr


def test_tpu_real_run_reuses_an_existing_slice(stubs):
    """Without --dry_run the same commands run (here: the gcloud stand-in, whose describe succeeds)."""
    out = _run([TPU, *TPU_FLAGS, "--skip_install", "--", *GIN_ARGS], stubs)
    assert out.returncode == 0, out.stderr
    verbs = [c[4] for c in _calls(stubs) if c[0] == "gcloud"]
    assert verbs == ["describe", "ssh"]          # it exists: no create
    assert "pt-rte exists" in out.stdout


# ------------------------------------------------------------------------------------------------
# GPU hosts
# ------------------------------------------------------------------------------------------------
def test_gpu_single_process(stubs):
    out = _run([GPU, "--dry_run", "--", *GIN_ARGS], stubs)
    assert out.returncode == 0, out.stderr
    assert "# one process: nothing to initialise" in out.stdout
    (command,) = _commands(out.stdout)
    assert shlex.split(command) == [sys.executable, "-m", "xprompt_jax.cli", *GIN_ARGS]
    assert _calls(stubs) == []
    # Without --dry_run it executes exactly that.
    out = _run([GPU, "--", *GIN_ARGS], stubs, PYTHON="fake_python")
    assert out.returncode == 0, out.stderr
    assert _calls(stubs) == [["fake_python", "-m", "xprompt_jax.cli", *GIN_ARGS]]


def test_gpu_this_host_of_several(stubs):
    flags = ["--coordinator=gpu0:12355", "--num_processes=2", "--process_id=1", "--env", "NCCL_DEBUG=WARN"]
    out = _run([GPU, *flags, "--dry_run", "--", *GIN_ARGS], stubs)
    assert out.returncode == 0, out.stderr
    assert "# process 1 of 2, coordinator gpu0:12355 (from flags)" in out.stdout
    (command,) = _commands(out.stdout)
    assert shlex.split(command) == ["NCCL_DEBUG=WARN", sys.executable, "-m", "xprompt_jax.cli", *GIN_ARGS,
                                    "--coordinator_address=gpu0:12355", "--num_processes=2", "--process_id=1"]


def test_gpu_slurm(stubs):
    slurm = {"SLURM_JOB_ID": "4097", "SLURM_NTASKS": "2", "SLURM_PROCID": "1", "SLURM_LOCALID": "0",
             "SLURM_STEP_NODELIST": "gpu[07-08]", "SLURM_NNODES": "2", "SLURM_NTASKS_PER_NODE": "1"}
    out = _run([GPU, "--dry_run", "--", *GIN_ARGS], stubs, **slurm)
    assert out.returncode == 0, out.stderr
    assert "# process 1 of 2, coordinator gpu07:61441 (from slurm)" in out.stdout
    (command,) = _commands(out.stdout)
    assert shlex.split(command) == [sys.executable, "-m", "xprompt_jax.cli", *GIN_ARGS]


def test_gpu_hosts_over_ssh(stubs):
    out = _run([GPU, "--hosts=gpu0,gpu1", "--repo_dir=/opt/xprompt jax", "--log_dir", str(stubs["tmp"] / "logs"),
                "--dry_run", "--", *GIN_ARGS], stubs, PYTHON="fake_python")
    assert out.returncode == 0, out.stderr
    assert _calls(stubs) == []
    lines = _commands(out.stdout)
    assert len(lines) == 2
    for i, line in enumerate(lines):
        words = shlex.split(line)
        assert words[:2] == ["ssh", f"gpu{i}"] and words[3:] == [">", str(stubs["tmp"] / "logs" / f"process-{i}.log"),
                                                                 "2>&1", "&"]
        remote = shlex.split(words[2])
        assert remote[:3] == ["cd", "/opt/xprompt jax", "&&"]
        assert remote[3:] == ["fake_python", "-m", "xprompt_jax.cli", *GIN_ARGS, "--coordinator_address=gpu0:12355",
                              "--num_processes=2", f"--process_id={i}"]


def test_gpu_hosts_run_every_process(stubs):
    """Without --dry_run: one ssh per host in parallel (the stand-in runs the remote command locally)."""
    _stub(stubs["bin"], "ssh", 'shift; exec bash -c "$1"\n')   # ssh HOST COMMAND -> run COMMAND here
    logs = stubs["tmp"] / "logs"
    out = _run([GPU, "--hosts=a,b,c", f"--repo_dir={stubs['tmp']}", f"--log_dir={logs}", "--", *GIN_ARGS], stubs,
               PYTHON="fake_python")
    assert out.returncode == 0, out.stderr
    ran = sorted(_calls(stubs), key=lambda c: c[-1])
    assert ran == [["fake_python", "-m", "xprompt_jax.cli", *GIN_ARGS, "--coordinator_address=a:12355",
                    "--num_processes=3", f"--process_id={i}"] for i in range(3)]
    assert sorted(os.listdir(logs)) == ["process-0.log", "process-1.log", "process-2.log"]


@pytest.mark.parametrize("flags, message", [
    (["--num_processes=2"], "missing --coordinator (HOST:PORT of process 0), --process_id"),
    (["--coordinator=h:1", "--process_id=0"], "missing --num_processes"),
    (["--hosts=a,b", "--process_id=0"], "--hosts sets the coordinator"),
    (["--bogus"], "unknown option --bogus"),
])
def test_gpu_refusals(stubs, flags, message):
    out = _run([GPU, *flags, "--dry_run", "--", *GIN_ARGS], stubs)
    assert out.returncode == 2
    assert message in out.stderr, out.stderr


def test_gpu_missing_command(stubs):
    out = _run([GPU, "--dry_run"], stubs)
    assert out.returncode == 2 and "missing the xprompt-jax command after --" in out.stderr


def test_a_url_model_dir_is_refused_with_the_mount_to_use():
    from xprompt_jax.errors import ConfigError
    from xprompt_jax.run.loop import train
    with pytest.raises(ConfigError, match=r"MODEL_DIR gs://b/run is a URL.*mount the bucket"):
        train(model_dir="gs://b/run")
