"""The GPU suite's table: what its steps measured, read from their JSON files, against the issue's targets.

    python benchmarks/gpu_summary.py benchmarks/results   # or $OUT on the device

Reads ``matmul_ceiling.json``, ``project_<size>.json`` (``train_step.py``), ``flash_<size>.json``,
``peft_eager.json`` and ``peft_compiled.json`` (``compare_peft.py``, PEFT alone). Missing files are steps
that did not run or did not finish: their rows say so. Ratios are of examples/s at the same size, batch and
lengths; "% of ceiling" divides the model FLOP/s (``model_flops_per_example``) by the measured bf16 rate.
"""
from __future__ import annotations

import json
import os
import sys

TARGETS = "targets: >= 5x eager PEFT and >= 2x compiled PEFT (base, large); >= 35% of the bf16 ceiling (large, xl)"


def _load(folder: str, name: str):
    path = os.path.join(folder, name)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def _peft_rates(record):
    """{size: examples/s} of PEFT's side in a compare_peft.py JSON."""
    rates = {}
    for entry in (record or {}).get("results", []):
        for name, side in entry.get("sides", {}).items():
            if name.startswith("peft") and side.get("examples_per_s"):
                rates[entry["size"]] = side["examples_per_s"]
    return rates


def summary(folder: str) -> list:
    ceiling = (_load(folder, "matmul_ceiling.json") or {}).get("tflop_per_s")
    eager, compiled = _peft_rates(_load(folder, "peft_eager.json")), _peft_rates(_load(folder, "peft_compiled.json"))
    rows = []
    for kind in ("project", "flash"):
        for size in ("tiny", "base", "large", "xl", "xxl"):
            record = _load(folder, f"{kind}_{size}.json")
            if record is None:
                continue
            rate = record.get("examples_per_s")
            row = {"run": f"{kind} {size}", "examples_per_s": rate, "compile_s": record.get("compile_s"),
                   "peak_GiB": None if record.get("peak_bytes_in_use") is None
                   else round(record["peak_bytes_in_use"] / 2**30, 2)}
            if rate and size in eager:
                row["x_eager_peft"] = round(rate / eager[size], 2)
            if rate and size in compiled:
                row["x_compiled_peft"] = round(rate / compiled[size], 2)
            if rate and ceiling:
                row["pct_of_ceiling"] = round(100 * record["model_tflop_per_s"] / ceiling, 1)
            if rate is None:
                row["note"] = "compiled, no timed steps (cut short or out of memory)"
            rows.append(row)
    for label, rates in (("peft eager", eager), ("peft compiled", compiled)):
        rows.extend({"run": f"{label} {size}", "examples_per_s": rate} for size, rate in rates.items())
    return rows


def main(argv=None) -> int:
    folder = (argv or sys.argv[1:] or ["benchmarks/results"])[0]
    rows = summary(folder)
    ceiling = (_load(folder, "matmul_ceiling.json") or {}).get("tflop_per_s")
    print(f"bf16 matmul ceiling: {ceiling if ceiling is None else round(ceiling, 1)} TFLOP/s; {TARGETS}")
    columns = ("run", "examples_per_s", "x_eager_peft", "x_compiled_peft", "pct_of_ceiling", "compile_s", "peak_GiB",
               "note")
    print(" | ".join(columns))
    for row in rows:
        print(" | ".join("" if row.get(c) is None else str(row[c]) for c in columns))
    with open(os.path.join(folder, "summary.json"), "w") as f:
        json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
