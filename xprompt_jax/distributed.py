"""Multi-process start-up: ``jax.distributed.initialize`` from flags or the cluster's environment.

One process per host (or per GPU) runs the same ``xprompt-jax`` command; before JAX touches a device,
every process joins the others through a coordinator. Where the settings come from, first match wins:

1. the flags ``--coordinator_address``, ``--num_processes``, ``--process_id`` (``--local_device_ids``);
2. JAX's environment variables ``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES``, ``JAX_PROCESS_ID``
   (``JAX_LOCAL_DEVICE_IDS``); a flag given alone is completed from these;
3. SLURM (``srun``): ``SLURM_NTASKS`` processes, this one ``SLURM_PROCID``, the coordinator on the first
   node of ``SLURM_STEP_NODELIST``/``SLURM_JOB_NODELIST`` on port ``XPROMPT_COORDINATOR_PORT`` (default:
   derived from ``SLURM_JOB_ID`` as JAX does); with several tasks on a node each takes GPU ``SLURM_LOCALID``;
4. otherwise one process, and nothing is initialised.

``--distributed=cluster`` (what ``launch/tpu_pod.sh`` passes) hands everything to JAX's own cluster
detection, ``jax.distributed.initialize()`` with no arguments: TPU VM pod slices (every worker learns
the others from the TPU metadata), GKE, SLURM, Open MPI. ``--distributed=off`` never initialises.
On CPU, processes exchange data through gloo collectives (``jax_cpu_collectives_implementation``),
which is how the multi-host tests run on one machine.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import re
from typing import List, Mapping, Optional, Sequence

from xprompt_jax.errors import ConfigError

MODES = ("auto", "cluster", "off")


class DistributedError(ConfigError):
    """Multi-process settings that are incomplete or inconsistent; the message names the missing one."""


@dataclasses.dataclass(frozen=True)
class Settings:
    """What ``jax.distributed.initialize`` is called with, and where it came from."""
    coordinator_address: Optional[str]
    num_processes: Optional[int]
    process_id: Optional[int]
    local_device_ids: Optional[List[int]] = None
    source: str = "flags"   # flags | environment | slurm | cluster

    def describe(self) -> str:
        if self.source == "cluster":
            return "JAX cluster auto-detection (TPU pod / GKE / SLURM / MPI)"
        devices = f", local devices {self.local_device_ids}" if self.local_device_ids else ""
        return (f"process {self.process_id} of {self.num_processes}, coordinator {self.coordinator_address}"
                f" (from {self.source}){devices}")


# ------------------------------------------------------------------------------------------------
# Resolving the settings (pure: takes the environment as a mapping, so it is tested without JAX)
# ------------------------------------------------------------------------------------------------
def _int(name: str, value) -> Optional[int]:
    if value is None or value == "":
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise DistributedError(f"{name} must be an integer, got {value!r}") from None


def _device_ids(name: str, value) -> Optional[List[int]]:
    if value is None or value == "":
        return None
    if isinstance(value, (list, tuple)):
        return [int(v) for v in value]
    try:
        return [int(v) for v in str(value).split(",") if v.strip()]
    except ValueError:
        raise DistributedError(f"{name} must be comma-separated device numbers such as 0,1, got {value!r}") from None


def first_slurm_host(node_list: str) -> str:
    """The first host of a SLURM node list: ``gpu[003-008,010],cpu1`` -> ``gpu003``."""
    node_list = node_list.strip()
    match = re.match(r"^([^,\[]+)(?:\[([^\]]+)\])?", node_list)
    if not match:
        raise DistributedError(f"cannot read the SLURM node list {node_list!r}")
    prefix, ranges = match.group(1), match.group(2)
    if ranges is None:
        return prefix
    first = re.split(r"[,-]", ranges)[0]
    return prefix + first


def slurm_port(environ: Mapping[str, str]) -> int:
    """``XPROMPT_COORDINATOR_PORT``, else one port per job in [61440, 65535] from ``SLURM_JOB_ID`` (as JAX)."""
    if environ.get("XPROMPT_COORDINATOR_PORT"):
        return _int("XPROMPT_COORDINATOR_PORT", environ["XPROMPT_COORDINATOR_PORT"])
    job = _int("SLURM_JOB_ID", environ.get("SLURM_JOB_ID")) or 0
    return job % 2 ** 12 + (65535 - 2 ** 12 + 1)


def _from_slurm(environ: Mapping[str, str]) -> Optional[Settings]:
    count = _int("SLURM_NTASKS", environ.get("SLURM_NTASKS") or environ.get("SLURM_NPROCS"))
    if count is None or count <= 1 or "SLURM_PROCID" not in environ:
        return None
    nodes = (environ.get("SLURM_STEP_NODELIST") or environ.get("SLURM_JOB_NODELIST")
             or environ.get("SLURM_NODELIST"))
    if not nodes:
        raise DistributedError("SLURM_NTASKS > 1 but no SLURM_STEP_NODELIST / SLURM_JOB_NODELIST is set: "
                               "run under srun, or pass --coordinator_address")
    coordinator = f"{first_slurm_host(nodes)}:{slurm_port(environ)}"
    local_ids = None
    # Several tasks on one node: one GPU each, by local rank (one task per node keeps all its GPUs).
    per_node = environ.get("SLURM_NTASKS_PER_NODE", "").split("(")[0]
    num_nodes = _int("SLURM_NNODES", environ.get("SLURM_STEP_NUM_NODES") or environ.get("SLURM_NNODES"))
    several_per_node = (_int("SLURM_NTASKS_PER_NODE", per_node) or 1) > 1 or (num_nodes and count > num_nodes)
    if several_per_node and environ.get("SLURM_LOCALID") is not None and not environ.get("XPROMPT_ALL_LOCAL_DEVICES"):
        local_ids = [_int("SLURM_LOCALID", environ["SLURM_LOCALID"])]
    return Settings(coordinator, count, _int("SLURM_PROCID", environ["SLURM_PROCID"]), local_ids, "slurm")


def resolve(coordinator_address: Optional[str] = None, num_processes: Optional[int] = None,
            process_id: Optional[int] = None, local_device_ids=None, mode: str = "auto",
            environ: Optional[Mapping[str, str]] = None) -> Optional[Settings]:
    """The settings to initialise with, or None for a single process (nothing to initialise)."""
    if mode not in MODES:
        raise DistributedError(f"--distributed must be one of {list(MODES)}, got {mode!r}")
    environ = os.environ if environ is None else environ
    if mode == "off":
        return None
    given = {"--coordinator_address": coordinator_address, "--num_processes": num_processes,
             "--process_id": process_id}
    local_device_ids = _device_ids("--local_device_ids", local_device_ids)
    if mode == "cluster":
        # JAX's own detection; explicit values still override what it finds.
        return Settings(coordinator_address, _int("--num_processes", num_processes),
                        _int("--process_id", process_id), local_device_ids, "cluster")

    env = {"--coordinator_address": environ.get("JAX_COORDINATOR_ADDRESS") or None,
           "--num_processes": environ.get("JAX_NUM_PROCESSES") or None,
           "--process_id": environ.get("JAX_PROCESS_ID") or None}
    env_names = {"--coordinator_address": "JAX_COORDINATOR_ADDRESS", "--num_processes": "JAX_NUM_PROCESSES",
                 "--process_id": "JAX_PROCESS_ID"}
    flags_given = any(v is not None for v in given.values())
    if flags_given or any(v is not None for v in env.values()):
        merged = {k: given[k] if given[k] is not None else env[k] for k in given}
        missing = [f"{k} (or {env_names[k]})" for k, v in merged.items() if v is None]
        num = _int("--num_processes", merged["--num_processes"])
        if num == 1 and merged["--process_id"] in (None, 0, "0"):
            return None  # one process: nothing to coordinate
        if missing:
            raise DistributedError("multi-process settings are incomplete: missing " + ", ".join(missing)
                                   + "; give all three of --coordinator_address, --num_processes, --process_id")
        pid = _int("--process_id", merged["--process_id"])
        if num < 1 or not 0 <= pid < num:
            raise DistributedError(f"--process_id {pid} must be in [0, --num_processes={num})")
        if ":" not in str(merged["--coordinator_address"]):
            raise DistributedError(f"--coordinator_address {merged['--coordinator_address']!r} needs a port: "
                                   "HOST:PORT, e.g. 10.0.0.1:12345")
        ids = local_device_ids or _device_ids("JAX_LOCAL_DEVICE_IDS", environ.get("JAX_LOCAL_DEVICE_IDS"))
        return Settings(str(merged["--coordinator_address"]), num, pid, ids,
                        "flags" if flags_given else "environment")
    slurm = _from_slurm(environ)
    if slurm is not None and local_device_ids:
        slurm = dataclasses.replace(slurm, local_device_ids=local_device_ids)
    return slurm


# ------------------------------------------------------------------------------------------------
# Initialising
# ------------------------------------------------------------------------------------------------
_INITIALIZED: Optional[Settings] = None


def initialize(coordinator_address: Optional[str] = None, num_processes: Optional[int] = None,
               process_id: Optional[int] = None, local_device_ids=None, mode: str = "auto",
               environ: Optional[Mapping[str, str]] = None) -> Optional[Settings]:
    """Join the other processes (see the module docstring); a no-op for one process or when done already.

    Must run before the first JAX computation (``jax.devices()`` included) of the process.
    """
    global _INITIALIZED
    settings = resolve(coordinator_address, num_processes, process_id, local_device_ids, mode, environ)
    if settings is None or _INITIALIZED is not None:
        return _INITIALIZED if settings is not None else None
    import jax
    try:
        if jax.config.jax_cpu_collectives_implementation in (None, "", "none"):
            jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU processes talk over gloo
    except AttributeError:  # older JAX: the option has another name or none
        pass
    if jax.distributed.is_initialized():  # someone (a notebook, a wrapper script) did it already
        _INITIALIZED = settings
        return settings
    kwargs = {}
    if settings.local_device_ids:
        kwargs["local_device_ids"] = settings.local_device_ids
    try:
        jax.distributed.initialize(coordinator_address=settings.coordinator_address,
                                   num_processes=settings.num_processes, process_id=settings.process_id, **kwargs)
    except ValueError as err:
        if settings.source != "cluster":
            raise
        raise DistributedError(f"--distributed=cluster found no cluster to join ({err}); outside a TPU pod, "
                               "SLURM or MPI job pass --coordinator_address, --num_processes and --process_id"
                               ) from None
    _INITIALIZED = settings
    if jax.process_index() == 0:
        print(f"[distributed] {jax.process_count()} processes, {jax.device_count()} devices "
              f"({jax.local_device_count()} per process) on {jax.default_backend()}: {settings.describe()}",
              flush=True)
    return settings


def add_flags(parser: argparse.ArgumentParser):
    """The multi-process flags of every ``xprompt-jax`` sub-command."""
    group = parser.add_argument_group("multi-host (jax.distributed; see xprompt_jax/distributed.py)")
    group.add_argument("--coordinator_address", default=None,
                       help="HOST:PORT of process 0's coordinator (env JAX_COORDINATOR_ADDRESS)")
    group.add_argument("--num_processes", type=int, default=None, help="processes in the run (env JAX_NUM_PROCESSES)")
    group.add_argument("--process_id", type=int, default=None, help="this process, 0..N-1 (env JAX_PROCESS_ID)")
    group.add_argument("--local_device_ids", default=None,
                       help="comma-separated local GPUs this process uses (env JAX_LOCAL_DEVICE_IDS)")
    group.add_argument("--distributed", choices=MODES, default=os.environ.get("XPROMPT_DISTRIBUTED", "auto"),
                       help="auto: flags, then JAX_* variables, then SLURM, else one process; cluster: JAX's own "
                            "detection (TPU pod slices); off: never initialise (env XPROMPT_DISTRIBUTED)")


def initialize_from_args(args: argparse.Namespace) -> Optional[Settings]:
    return initialize(getattr(args, "coordinator_address", None), getattr(args, "num_processes", None),
                      getattr(args, "process_id", None), getattr(args, "local_device_ids", None),
                      getattr(args, "distributed", "auto"))


def process_index() -> int:
    import jax
    return jax.process_index()


def sync(name: str):
    """A barrier across processes (no-op for one process)."""
    import jax
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils
        multihost_utils.sync_global_devices(name)


def to_host(x):
    """A (possibly multi-process, sharded) array as one full numpy array on every process."""
    import jax
    import numpy as np
    if isinstance(x, jax.Array) and not x.is_fully_addressable and not x.is_fully_replicated:
        from jax.experimental import multihost_utils
        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(x)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m xprompt_jax.distributed [flags]``: print what this process would initialise with."""
    import sys
    parser = argparse.ArgumentParser(prog="python -m xprompt_jax.distributed", description=main.__doc__)
    add_flags(parser)
    args = parser.parse_args(argv)
    try:
        settings = resolve(args.coordinator_address, args.num_processes, args.process_id, args.local_device_ids,
                           args.distributed)
    except DistributedError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print("one process: nothing to initialise" if settings is None else settings.describe())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
