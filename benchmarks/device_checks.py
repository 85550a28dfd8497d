"""The GPU suite's first step: is JAX (and PyTorch) really on the device the numbers will be read for?

    python benchmarks/device_checks.py --expect gpu [--out checks.json]

JAX falls back to the CPU when its CUDA plugin does not load, with one warning in a long log; every number
after that would be a CPU number under a GPU heading. This fails (exit status 1) when JAX's default backend
or PyTorch's CUDA availability is not what ``--expect`` says, and records versions and devices.
"""
from __future__ import annotations

import argparse
import json
import os
import sys


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--expect", choices=("gpu", "cpu"), default="gpu")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    import jax
    record = {"expect": args.expect, "jax": jax.__version__, "jax_backend": jax.default_backend(),
              "jax_devices": [d.device_kind for d in jax.devices()], "problems": []}
    if record["jax_backend"] != args.expect:
        record["problems"].append(f"JAX runs on {record['jax_backend']}, not {args.expect} (is jax[cuda] installed "
                                  "and the GPU visible?)")
    try:
        import torch
        record.update(torch=torch.__version__, torch_cuda=torch.cuda.is_available())
        if (args.expect == "gpu") != record["torch_cuda"]:
            record["problems"].append(f"PyTorch sees CUDA: {record['torch_cuda']}, expected {args.expect}")
    except ImportError:
        record["problems"].append("PyTorch is not installed: the PEFT steps will fail")
    print(json.dumps(record))
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(record, f, indent=1)
    for problem in record["problems"]:
        print(f"device check failed: {problem}", file=sys.stderr)
    return 1 if record["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
