#!/usr/bin/env python3
"""Run one ``xprompt-jax`` command on every worker of a Cloud TPU VM pod slice.

    launch/tpu_pod.sh --project=my-project --zone=us-central2-b --accelerator=v4-32 --tpu=xprompt-v4-32 \\
        --model_dir=gs://my-bucket/runs/pt_rte -- \\
        train --gin_file=models/t5_1_1.gin --gin_file=sizes/base.gin \\
        --gin_file=prompts/sampled_vocabulary.gin --gin_file=runs/prompt_tune.gin \\
        --gin.TASK="'taskless_super_glue_rte_v102'" \\
        --gin.CHECKPOINT="'gs://t5-data/pretrained_models/t5x/t5_1_1_lm100k_base/checkpoint_1100000'"

Steps, each a ``gcloud`` (or ``git``) command, all printed and none run with ``--dry_run``:

1. create the TPU VM slice unless ``describe`` finds it (``--spot``/``--preemptible`` optional);
   a slice that exists with another accelerator type is refused;
2. pack this checkout (``git archive`` of HEAD plus uncommitted changes to tracked files), copy it to
   every worker, and ``pip install -e`` it with ``jax[tpu]`` there (``--skip_install`` skips this);
3. on every worker at once (``--worker=all``): mount the ``--model_dir`` bucket with gcsfuse at
   ``/tmp/gcs/<bucket>``, then run ``python3 -m xprompt_jax.cli <your arguments> --distributed=cluster
   --gin.MODEL_DIR='<mounted path>'``. The arguments after ``--`` reach the workers exactly as given
   (each is shell-quoted). Every worker writes its log to ``<model_dir>/logs/worker-<n>.log``
   (``--log_dir`` elsewhere); worker 0's log is also streamed here.

``--distributed=cluster`` makes ``jax.distributed.initialize()`` find the other workers from the TPU
metadata. Orbax writes each worker's shards of the checkpoints into the shared MODEL_DIR, which is why
it lives on Cloud Storage. Settings missing from the flags are read from the environment
(``CLOUDSDK_CORE_PROJECT``, ``CLOUDSDK_COMPUTE_ZONE``, ``TPU_ACCELERATOR_TYPE``); a missing one is an
error that names it.
"""
from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
from typing import List, Optional, Sequence

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_RUNTIME = "tpu-ubuntu2204-base"
REMOTE_DIR = "~/xprompt-jax"
REMOTE_TARBALL = "xprompt-jax-src.tar.gz"
MOUNT_ROOT = "/tmp/gcs"
WORKER_NUMBER = ("$(curl -s -H 'Metadata-Flavor: Google' "
                 "http://metadata.google.internal/computeMetadata/v1/instance/attributes/agent-worker-number)")
GCSFUSE_INSTALL = (
    "if ! command -v gcsfuse >/dev/null ; then "
    "echo \"deb [signed-by=/usr/share/keyrings/cloud.google.asc] https://packages.cloud.google.com/apt "
    "gcsfuse-$(lsb_release -c -s) main\" | sudo tee /etc/apt/sources.list.d/gcsfuse.list >/dev/null && "
    "curl -fsSL https://packages.cloud.google.com/apt/doc/apt-key.gpg | sudo tee /usr/share/keyrings/cloud.google.asc "
    ">/dev/null && sudo apt-get update -qq && sudo apt-get install -y -qq gcsfuse ; fi")


class LaunchError(Exception):
    pass


def parse_args(argv: Sequence[str]):
    argv = list(argv)
    if "--" in argv:
        split = argv.index("--")
        own, command = argv[:split], argv[split + 1:]
    else:
        own, command = argv, []
    parser = argparse.ArgumentParser(prog="launch/tpu_pod.sh", description=__doc__.split("\n\n")[0],
                                     epilog="Everything after -- is the xprompt-jax command (train, xprompt, "
                                            "evaluate ...) with its --gin_file and --gin. arguments.")
    parser.add_argument("--project", default=os.environ.get("CLOUDSDK_CORE_PROJECT"),
                        help="Google Cloud project (env CLOUDSDK_CORE_PROJECT)")
    parser.add_argument("--zone", default=os.environ.get("CLOUDSDK_COMPUTE_ZONE"),
                        help="TPU zone, e.g. us-central2-b (env CLOUDSDK_COMPUTE_ZONE)")
    parser.add_argument("--accelerator", default=os.environ.get("TPU_ACCELERATOR_TYPE"),
                        help="TPU type, e.g. v4-32, v5litepod-16 (env TPU_ACCELERATOR_TYPE)")
    parser.add_argument("--tpu", default=os.environ.get("TPU_NAME", "xprompt-jax"),
                        help="TPU VM name, created if absent (env TPU_NAME; default xprompt-jax)")
    parser.add_argument("--runtime", default=DEFAULT_RUNTIME, help=f"TPU VM software version ({DEFAULT_RUNTIME})")
    capacity = parser.add_mutually_exclusive_group()
    capacity.add_argument("--spot", action="store_true", help="create a Spot slice")
    capacity.add_argument("--preemptible", action="store_true", help="create a preemptible slice")
    parser.add_argument("--model_dir", help="gs://BUCKET/PATH: mounted on every worker and passed as MODEL_DIR")
    parser.add_argument("--mount_root", default=MOUNT_ROOT, help=f"where buckets are mounted ({MOUNT_ROOT})")
    parser.add_argument("--log_dir", help="per-worker logs on the workers (default: MODEL_DIR/logs, else "
                                          "~/xprompt-logs)")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="environment of the run on every worker (repeatable), e.g. XPROMPT_DATA_CACHE=/tmp/c")
    parser.add_argument("--skip_create", action="store_true", help="the slice exists: do not describe/create it")
    parser.add_argument("--skip_install", action="store_true", help="the package is installed on every worker")
    parser.add_argument("--pip_extra", default="jax[tpu]", help="what else pip installs on the workers")
    parser.add_argument("--dry_run", action="store_true", help="print every command; run none")
    args = parser.parse_args(own)
    args.command = command
    return args


def check(args):
    for name, hint in (("project", "the Google Cloud project; or set CLOUDSDK_CORE_PROJECT"),
                       ("zone", "the TPU zone, e.g. us-central2-b; or set CLOUDSDK_COMPUTE_ZONE"),
                       ("accelerator", "the TPU type, e.g. v4-32; or set TPU_ACCELERATOR_TYPE")):
        if not getattr(args, name):
            raise LaunchError(f"missing --{name} ({hint})")
    if not args.command:
        raise LaunchError("missing the xprompt-jax command after --, e.g. -- train --gin_file=runs/prompt_tune.gin ...")
    if args.command[0].startswith("-"):
        raise LaunchError(f"the command after -- starts with the sub-command (train, xprompt, evaluate ...), "
                          f"not {args.command[0]!r}")
    if args.model_dir is not None and not re.match(r"^gs://[^/]+(/.*)?$", args.model_dir):
        raise LaunchError(f"--model_dir must be gs://BUCKET/PATH (Cloud Storage, shared by every worker), "
                          f"got {args.model_dir!r}")
    for arg in args.command:
        if re.match(r"^--gin\.MODEL_DIR=.*gs://", arg):
            raise LaunchError(f"{arg}: pass a Cloud Storage MODEL_DIR as --model_dir=gs://... instead; the "
                              "launcher mounts the bucket on every worker and passes the mounted path")
    for item in args.env:
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", item):
            raise LaunchError(f"--env {item!r} must be NAME=VALUE")


def mounted(model_dir: str, mount_root: str = MOUNT_ROOT):
    """gs://bucket/path -> (bucket, /tmp/gcs/bucket, /tmp/gcs/bucket/path)."""
    bucket, _, path = model_dir[len("gs://"):].partition("/")
    mount = f"{mount_root.rstrip('/')}/{bucket}"
    return bucket, mount, f"{mount}/{path}".rstrip("/")


def quote(arg: str) -> str:
    """Shell quoting that keeps gin overrides as users type them: --gin.TASK="'rte'" rather than shlex's
    '--gin.TASK='"'"'rte'"'"''. Either way the shell hands the program the argument unchanged."""
    if shlex.quote(arg) == arg or "'" not in arg:
        return shlex.quote(arg)
    if not any(c in arg for c in '"$`\\!'):
        return f'"{arg}"'
    return shlex.quote(arg)


def gcloud(args, verb: str, *rest: str) -> List[str]:
    return ["gcloud", "compute", "tpus", "tpu-vm", verb, *rest, f"--project={args.project}", f"--zone={args.zone}"]


def worker_script(args) -> str:
    """The shell command every worker runs (one string for ``gcloud ... ssh --command``)."""
    command = list(args.command)
    parts = ["set -o pipefail"]
    if args.model_dir:
        bucket, mount, path = mounted(args.model_dir, args.mount_root)
        command.append(f"--gin.MODEL_DIR='{path}'")
        parts.append(f"mkdir -p {shlex.quote(mount)} && ( mountpoint -q {shlex.quote(mount)} || "
                     f"gcsfuse --implicit-dirs {shlex.quote(bucket)} {shlex.quote(mount)} )")
        log_dir = args.log_dir or f"{path}/logs"
    else:
        log_dir = args.log_dir or "~/xprompt-logs"
    log_dir_q = log_dir.replace("~", "$HOME", 1) if log_dir.startswith("~") else shlex.quote(log_dir)
    parts.append(f"W={WORKER_NUMBER}")
    parts.append(f"mkdir -p {log_dir_q}")
    parts.append(f"cd {REMOTE_DIR}")
    env = "".join(f"{item.split('=', 1)[0]}={quote(item.split('=', 1)[1])} " for item in args.env)
    run = f"{env}python3 -m xprompt_jax.cli {' '.join(quote(c) for c in command)} --distributed=cluster"
    parts.append(f"{run} 2>&1 | if [ \"$W\" = 0 ] ; then tee {log_dir_q}/worker-$W.log ; "
                 f"else cat > {log_dir_q}/worker-$W.log ; fi")
    return " ; ".join(parts[:1]) + " ; " + " && ".join(parts[1:])


def install_script(args) -> str:
    steps = [f"rm -rf {REMOTE_DIR} && mkdir -p {REMOTE_DIR}",
             f"tar -xzf ~/{REMOTE_TARBALL} -C {REMOTE_DIR}",
             "python3 -m pip install -q -U pip",
             f"python3 -m pip install -q -e {REMOTE_DIR} {shlex.quote(args.pip_extra)}" if args.pip_extra
             else f"python3 -m pip install -q -e {REMOTE_DIR}"]
    if args.model_dir:
        steps.insert(0, GCSFUSE_INSTALL)
    return " && ".join(steps)


def plan(args):
    """(comment, argv, kind) for every step; kind 'exists' is a check whose failure means 'create'."""
    steps = []
    if not args.skip_create:
        steps.append(("the slice: reuse it if it exists", gcloud(args, "describe", args.tpu,
                                                               "--format=value(acceleratorType)"), "exists"))
        create = gcloud(args, "create", args.tpu, f"--accelerator-type={args.accelerator}", f"--version={args.runtime}")
        if args.spot:
            create.append("--spot")
        if args.preemptible:
            create.append("--preemptible")
        steps.append(("else create it", create, "create"))
    if not args.skip_install:
        tarball = os.path.join("/tmp", REMOTE_TARBALL)
        pack = ["sh", "-c", f"ref=$(git -C {shlex.quote(REPO)} stash create) ; git -C {shlex.quote(REPO)} archive "
                            f"--format=tar.gz -o {shlex.quote(tarball)} \"${{ref:-HEAD}}\""]
        steps.append(("pack this checkout (HEAD plus uncommitted changes to tracked files)", pack, "run"))
        steps.append(("copy it to every worker", gcloud(args, "scp", tarball, f"{args.tpu}:~/", "--worker=all"), "run"))
        steps.append(("install it on every worker", gcloud(args, "ssh", args.tpu, "--worker=all",
                                                           f"--command={install_script(args)}"), "run"))
    steps.append(("run on every worker at once", gcloud(args, "ssh", args.tpu, "--worker=all",
                                                        f"--command={worker_script(args)}"), "run"))
    return steps


def execute(args, steps) -> int:
    skip_create = False
    for comment, argv, kind in steps:
        if kind == "create" and skip_create:
            continue
        script = next((a[len("--command="):] for a in argv if a.startswith("--command=")), None)
        shown = f"\n#   the command: {script}" if script is not None else ""  # unquoted, for reading
        print(f"# {comment}{shown}\n{shlex.join(argv)}", flush=True)
        if args.dry_run:
            continue
        if kind == "exists":
            found = subprocess.run(argv, capture_output=True, text=True)
            if found.returncode == 0:
                existing = found.stdout.strip().lower()
                if existing and existing != args.accelerator.lower():
                    raise LaunchError(f"TPU {args.tpu} exists with accelerator {existing}, not {args.accelerator}: "
                                      "pass --accelerator to match, or another --tpu name")
                print(f"# {args.tpu} exists ({existing or 'type unknown'}): reused", flush=True)
                skip_create = True
            continue
        code = subprocess.run(argv).returncode
        if code:
            print(f"error: the step '{comment}' failed with exit status {code}", file=sys.stderr)
            return code
    if not args.dry_run and args.model_dir:
        print(f"# logs: {args.log_dir or args.model_dir.rstrip('/') + '/logs'}/worker-<n>.log", flush=True)
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        check(args)
        steps = plan(args)
        if args.dry_run:
            print("# dry run: nothing is executed", flush=True)
        return execute(args, steps)
    except LaunchError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
