"""The paper-style table of a sweep: method x task, mean +- stddev over seeds at the chosen learning rate.

For each method, task, model and extra-axis value, the learning rate is chosen on validation (the best mean
over seeds of each cell's best validation score, as EPT chooses it), and the seeds' scores at that rate give
the mean and the sample standard deviation (n - 1; none with one seed). The average column is the mean of a
row's per-task means, every task weighing the same (how the XPrompt and EPT papers average). Scores come
from each cell's own ``eval_metrics.jsonl`` (``runner.best_validation``). When every cell was also scored on a
test split (``Sweep.test_split``, EPT's ``ept_test``), the table reports those test scores at the learning
rate chosen on validation, and says so. Written as Markdown, CSV and JSON,
with a PNG of average score against trainable parameters per method (the papers' efficiency figure).
"""
from __future__ import annotations

import csv
import io
import os
import statistics
from typing import Any, Dict, List, Optional, Tuple

from xprompt_jax import export

TABLE_FILES = ("table.md", "table.csv", "table.json", "score_vs_parameters.png")


def _row_key(point: Dict[str, Any]) -> Tuple:
    extra = tuple((k, v) for k, v in point.items() if k not in ("method", "task", "learning_rate", "seed", "model"))
    return (point["method"], point.get("model")) + extra


def _label(key: Tuple) -> str:
    method, model, *extra = key
    details = ([model] if model else []) + [f"{k.split('.')[-1]}={v}" for k, v in extra]
    return method + (f" ({', '.join(details)})" if details else "")


def _choose(by_lr: Dict[Any, List[Tuple[float, Optional[float]]]]) -> Tuple[Any, List[Tuple[float, Optional[float]]]]:
    """The learning rate with the best mean validation score, and its seeds' (validation, test) scores."""
    return max(by_lr.items(), key=lambda item: statistics.mean(v for v, _ in item[1]))


def _zero_shot_records(done: List[dict]) -> List[dict]:
    """One record per zero-shot score, as a column ``<task> -> <target>``: its value is the target's score,
    its learning rate chosen on the source task's validation like the source column's."""
    out = []
    for r in done:
        for target, scored in (r.get("zero_shot") or {}).items():
            point = dict(r["point"], task=f"{r['point']['task']} -> {target}")
            out.append(dict(r, point=point, test=scored["score"], zero_shot_metric=scored["metric"]))
    return out


def build_table(records: List[dict]) -> Dict[str, Any]:
    """{'tasks': [...], 'rows': [{'label', 'parameters', 'cells': {task: {...}}, 'average'}], 'failed': [...]};
    zero-shot columns (``<task> -> <target>``) follow the trained tasks' and stay out of the average."""
    done = [r for r in records if r.get("status") == "done" and r.get("validation") is not None]
    tested = bool(done) and all(r.get("test") is not None for r in done)
    trained = list(dict.fromkeys(r["point"]["task"] for r in done))
    done = [dict(r, test=r.get("test") if tested else None) for r in done] + _zero_shot_records(done)
    tasks = list(dict.fromkeys(r["point"]["task"] for r in done))
    groups: Dict[Tuple, Dict[Any, Dict[Any, List[Tuple[float, Optional[float]]]]]] = {}
    parameters: Dict[Tuple, List[int]] = {}
    metric: Dict[Tuple, str] = {}
    column_metric = {r["point"]["task"]: r["zero_shot_metric"] for r in done if "zero_shot_metric" in r}
    for r in done:
        key = _row_key(r["point"])
        groups.setdefault(key, {}).setdefault(r["point"]["task"], {}).setdefault(r["point"]["learning_rate"], []).append(
            (r["validation"], r.get("test")))
        if r.get("trainable_parameters") is not None:
            parameters.setdefault(key, []).append(int(r["trainable_parameters"]))
        metric[key] = r["metric"]
    rows = []
    for key, by_task in groups.items():
        cells = {}
        for task, by_lr in by_task.items():
            lr, pairs = _choose(by_lr)
            scores = [v if t is None else t for v, t in pairs]
            cells[task] = {"mean": statistics.mean(scores), "std": statistics.stdev(scores) if len(scores) > 1 else None,
                           "n": len(scores), "learning_rate": lr, "scores": scores,
                           "validation_mean": statistics.mean(v for v, _ in pairs),
                           "metric": column_metric.get(task, metric[key]),
                           "by_learning_rate": {str(k): statistics.mean(v for v, _ in p) for k, p in by_lr.items()}}
        means = [c["mean"] for t, c in cells.items() if t in trained]
        counts = sorted(set(parameters.get(key, [])))
        rows.append({"label": _label(key), "metric": metric[key], "parameters": counts[0] if len(counts) == 1 else counts,
                     "cells": cells, "average": statistics.mean(means) if len(means) == len(trained) else None,
                     **_diagnostics([r for r in done if _row_key(r["point"]) == key and "zero_shot_metric" not in r])})
    failed = [{"cell": r["cell"], "error": r.get("error")} for r in records if r.get("status") == "failed"]
    split = next((r["test_split"] for r in done if r.get("test_split")), "test") if tested else "validation"
    return {"tasks": tasks, "rows": rows, "failed": failed, "split": split, "tested": tested}


def _diagnostics(records: List[dict]) -> Dict[str, Optional[float]]:
    """The prompt diagnostics averaged over a row's cells (None where no cell exported a prompt)."""
    out = {}
    for name in ("prompt_norm", "prompt_cosine"):
        values = [r[name] for r in records if r.get(name) is not None]
        out[name] = statistics.mean(values) if values else None
    return out


def _score(cell: Optional[dict]) -> str:
    if cell is None:
        return "-"
    std = f" ± {cell['std']:.1f}" if cell["std"] is not None else ""
    lr = f" (lr {cell['learning_rate']:g})" if cell["learning_rate"] is not None else ""
    return f"{cell['mean']:.1f}{std}{lr}"


def _parameters(value) -> str:
    return f"{value:,}" if isinstance(value, int) else " / ".join(f"{v:,}" for v in value) or "-"


def to_markdown(table: Dict[str, Any]) -> str:
    tasks = table["tasks"]
    lines = ["| method | trainable parameters | " + " | ".join(str(t) for t in tasks)
             + " | average | prompt norm / token | token cosine sim. |", "|---|---:|" + "---:|" * (len(tasks) + 3)]
    for row in table["rows"]:
        average = "-" if row["average"] is None else f"{row['average']:.1f}"
        norm = "-" if row.get("prompt_norm") is None else f"{row['prompt_norm']:.1f}"
        cosine = "-" if row.get("prompt_cosine") is None else f"{row['prompt_cosine']:.3f}"
        lines.append(f"| {row['label']} | {_parameters(row['parameters'])} | "
                     + " | ".join(_score(row["cells"].get(t)) for t in tasks) + f" | {average} | {norm} | {cosine} |")
    split = f"Test ({table['split']})" if table.get("tested") else "Validation"
    note = (f"\n{split} {table['rows'][0]['metric'] if table['rows'] else 'score'}: mean ± sample stddev over "
            "seeds at the learning rate chosen on validation; average: the mean of the task means; the prompt diagnostics "
            "(EPT's) are the exported prompts' mean over the row's cells.")
    failed = "".join(f"\n- failed: {f['cell']}: {f['error']}" for f in table["failed"])
    return "\n".join(lines) + "\n" + note + failed + "\n"


def to_csv(table: Dict[str, Any]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["method", "task", "metric", "mean", "std", "n", "learning_rate", "trainable_parameters", "scores"])
    for row in table["rows"]:
        for task, cell in row["cells"].items():
            writer.writerow([row["label"], task, row["metric"], cell["mean"], cell["std"], cell["n"],
                             cell["learning_rate"], row["parameters"], " ".join(f"{s:g}" for s in cell["scores"])])
    return out.getvalue()


def save_plot(table: Dict[str, Any], path: str) -> Optional[str]:
    """Average score against trainable parameters (log scale), one point per method row."""
    points = [(row["parameters"], row["average"], row["label"]) for row in table["rows"]
              if isinstance(row["parameters"], int) and row["parameters"] > 0 and row["average"] is not None]
    if not points:
        return None
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    figure = Figure(figsize=(6, 4), dpi=150, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    for params, score, label in points:
        axes.scatter([params], [score])
        axes.annotate(label, (params, score), textcoords="offset points", xytext=(4, 4), fontsize=8)
    axes.set_xscale("log")
    axes.set_xlabel("trainable parameters")
    axes.set_ylabel(f"average {table['split']} {table['rows'][0]['metric']}")
    export.save_png(path, figure)
    return path


def write_tables(table: Dict[str, Any], sweep_dir: str) -> str:
    """The four files under ``sweep_dir``; returns the Markdown (what the command prints)."""
    markdown = to_markdown(table)
    export.save_text(os.path.join(sweep_dir, "table.md"), markdown)
    export.save_text(os.path.join(sweep_dir, "table.csv"), to_csv(table))
    export.save_json(os.path.join(sweep_dir, "table.json"), table)
    save_plot(table, os.path.join(sweep_dir, "score_vs_parameters.png"))
    return markdown
