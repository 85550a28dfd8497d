"""``xprompt-jax transfer``: zero-shot prompt transfer, every saved prompt scored on every task.

Lester et al.'s Table 2 (a QQP prompt on MRPC and back) and EPT's transfer figure (every task's prompt on
every other task, as a fraction of that task's own prompt, beside the prompts' cosine similarity) from one
command, in one process on one loaded frozen model:

    xprompt-jax transfer --gin_file=... --gin_file=runs/transfer.gin --gin.OUTPUT_DIR="'/tmp/transfer'" \\
        --gin.PROMPTS="{'taskless_glue_qqp_v002': '/runs/qqp', 'taskless_glue_mrpc_v002': '/runs/mrpc'}"

``PROMPTS`` maps each prompt's own task to its source (a ``.npy``, a PEFT adapter, a MODEL_DIR or an XPrompt
export); several prompts of one task (seeds) are told apart by a tag, ``task#seed1``, and ``by_task`` in
``transfer.json`` gives each task's prompts' mean +- sample stddev on each target (Lester et al.'s
Table 1); ``TASKS`` (default: the same tasks) are the targets, each scored by its own metrics on its
evaluation split. How a prompt answers a target (the ``how`` matrix):
- ``rank``: the tasks share their label strings, or the target has a label space the prompt's task does not
  (scored over the target's labels);
- ``mapped``: the label spaces match under another spelling (``LABEL_MAPS``: QQP's ``duplicate`` is MRPC's
  ``equivalent``, as prompt-tuning's ``glue_transfer.py`` maps them): ranked over the prompt's own labels,
  the prediction renamed into the target's;
- ``decode``: the target has no label names (free text): greedy decoding, scored by the target's metric.
Prompts of one shape whose answers need no renaming share every batch (the ensembling mechanism). The
cosine similarity is that of the prompts' mean token vectors (the rule for prompts of different lengths).
Written: ``transfer.json``, ``scores.csv``, ``relative.csv``, ``cosine.csv`` and two heatmaps.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import logging
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np

from xprompt_jax import assembly, export
from xprompt_jax.data.task_info import task_info
from xprompt_jax.ensembling import EnsembleEvaluator, PromptEnsemble
from xprompt_jax.errors import ConfigError
from xprompt_jax.logs import is_main_process
from xprompt_jax.run.config import DataConfig, EvalConfig, FrozenModel, require_string
from xprompt_jax.run.evaluator import label_scores

logger = logging.getLogger(__name__)

_QQP_MRPC = {"duplicate": "equivalent", "not_duplicate": "not_equivalent"}
# (prompt's task, target task) -> prompt label -> target label; taskless and plain names alike.
LABEL_MAPS: Dict[tuple, Dict[str, str]] = {}
for _prefix in ("", "taskless_"):
    LABEL_MAPS[(f"{_prefix}glue_qqp_v002", f"{_prefix}glue_mrpc_v002")] = _QQP_MRPC
    LABEL_MAPS[(f"{_prefix}glue_mrpc_v002", f"{_prefix}glue_qqp_v002")] = {v: k for k, v in _QQP_MRPC.items()}


def label_map(source: str, target: str) -> Optional[Dict[str, str]]:
    strip = (lambda name: name[len("taskless_"):] if name.startswith("taskless_") else name)
    return LABEL_MAPS.get((source, target)) or LABEL_MAPS.get((strip(source), strip(target)))


def how_scored(source_labels, target_labels, mapping) -> str:
    if not target_labels:
        return "decode"
    if mapping and source_labels and set(mapping) == set(source_labels) and set(mapping.values()) == set(target_labels):
        return "mapped"
    return "rank"


def mean_token_cosine(prompts: Sequence[np.ndarray]) -> np.ndarray:
    """Cosine similarity of the prompts' mean token vectors."""
    means = np.stack([np.asarray(p, np.float64).reshape(-1, np.shape(p)[-1]).mean(0) for p in prompts])
    unit = means / np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-12)
    return unit @ unit.T


def _score_target(target: str, saved: Mapping[str, Optional[assembly.SavedPrompt]], data: DataConfig,
                  evaluation: EvalConfig, config, frozen, combine: str) -> Dict[str, Dict[str, Any]]:
    """{prompt name: {'metrics': ..., 'how': ...}} of every prompt on ``target``'s evaluation split. A name
    is its prompt's task, optionally with ``#<tag>`` (``mrqa_squad_v100#seed1``); a prompt of None scores
    the model alone (a fine-tuned model's zero-shot transfer, as the sweep runs it)."""
    split, vocabulary = assembly.open_eval_data(dataclasses.replace(data, task=target))
    target_info = task_info(target, split.meta.get("label_names"))
    out, plain = {}, []
    for name, prompt in saved.items():
        source = source_task(name)
        mapping = label_map(source, target)
        how = how_scored(task_info(source).label_names if source != target else target_info.label_names,
                         target_info.label_names, mapping)
        if how == "mapped" or prompt is None:
            model, trainable, masks = assembly.prompted_or_alone(config, prompt, frozen, combine,
                                                                 assembly.cached_input_length(split))
            evaluator = assembly.evaluator_for(model, split, vocabulary, data,
                                               dataclasses.replace(evaluation, mode=_mode(how)))
            if how == "mapped":
                source_labels = list(mapping)
                scores = label_scores(model, trainable, frozen, masks, evaluator.batches(),
                                      vocabulary.encode_padded(source_labels))
                texts = [mapping[source_labels[int(i)]] for i in scores.argmax(-1)]
            else:
                texts = evaluator.predictions_text(trainable, frozen, masks)
            out[name] = {"metrics": target_info.score(texts, split.examples), "how": how}
        else:
            plain.append(name)
    groups: Dict[tuple, List[str]] = {}
    for name in plain:  # prompts of one shape share every batch (ensembling keyed by prompt)
        groups.setdefault(tuple(saved[name].values.shape), []).append(name)
    mode = "rank" if target_info.label_names else "decode"
    for names in groups.values():
        model = PromptEnsemble(config, np.stack([saved[n].values for n in names]), combine)
        evaluator = assembly.evaluator_for(model, split, vocabulary, data, dataclasses.replace(evaluation, mode=mode),
                                           kind=EnsembleEvaluator)
        trainable, _ = model.init()
        per_prompt = evaluator.per_prompt_texts(trainable, frozen)
        for k, name in enumerate(names):
            texts = [row[k] for row in per_prompt]
            out[name] = {"metrics": target_info.score(texts, split.examples), "how": mode}
    return out


def source_task(name: str) -> str:
    """The task a prompt was tuned on: its name up to ``#`` (several prompts of one task: ``task#seed1``)."""
    return name.split("#", 1)[0]


def _mode(how: str) -> str:
    return "decode" if how == "decode" else "rank"


def score_result(source: str, prompt: Optional[assembly.SavedPrompt], targets: Sequence[str], data: DataConfig,
                 evaluation: EvalConfig, config, frozen, combine: str = "prefix") -> Dict[str, Dict[str, Any]]:
    """{target: {'metrics', 'how'}}: one tuned result (a prompt, or with None the fine-tuned model ``frozen``)
    of task ``source`` scored zero-shot on each target (the sweep's zero-shot columns)."""
    return {target: _score_target(target, {source: prompt}, data, evaluation, config, frozen, combine)[source]
            for target in targets}


def transfer(prompts: Mapping[str, str],
             output_dir: str,
             tasks: Optional[Sequence[str]] = None,
             data: DataConfig = DataConfig(),
             model: FrozenModel = FrozenModel(),
             evaluation: EvalConfig = EvalConfig(),
             combine: str = "prefix") -> Dict[str, Any]:
    """Every prompt of ``prompts`` (its task -> source) on every task of ``tasks``; the matrices in ``output_dir``."""
    require_string("OUTPUT_DIR", output_dir, "transfer.output_dir")
    if not prompts:
        raise ConfigError("PROMPTS is empty: give {task name: prompt source}, the prompt each task was tuned with")
    names, targets = list(prompts), list(tasks or prompts)
    saved = {name: assembly.read_saved_prompt(str(source)) for name, source in prompts.items()}
    _, vocabulary = assembly.open_eval_data(dataclasses.replace(data, task=targets[0]))
    config, frozen = assembly.open_model(model, data.seed, vocabulary)
    results = {}
    for number, target in enumerate(targets, 1):
        logger.info(f"[transfer] {number}/{len(targets)} {target}: {len(names)} prompts")
        results[target] = _score_target(target, saved, data, evaluation, config, frozen, combine)
    record = _matrices(names, targets, results, evaluation.metric, [saved[n].values for n in names])
    if is_main_process():
        write_outputs(record, output_dir)
    print(format_table(record))
    return record


def primary_metric(metrics: Mapping[str, float], wanted: str) -> str:
    """``wanted`` where the task reports it, else the task's first metric by name (SQuAD: em)."""
    return wanted if wanted in metrics else sorted(metrics)[0]


def _matrices(names, targets, results, wanted_metric, prompt_values) -> Dict[str, Any]:
    metric = {t: primary_metric(results[t][names[0]]["metrics"], wanted_metric) for t in targets}
    scores = [[results[t][p]["metrics"][metric[t]] for t in targets] for p in names]
    own = {}  # the target's own prompts' mean score (several with tagged names, task#seed)
    for t in targets:
        mine = [results[t][p]["metrics"][metric[t]] for p in names if source_task(p) == t]
        own[t] = sum(mine) / len(mine) if mine else None
    relative = [[None if not own[t] else row[j] / own[t] for j, t in enumerate(targets)] for row in scores]
    return {"prompts": names, "tasks": targets, "metric": metric, "scores": scores, "relative": relative,
            "how": [[results[t][p]["how"] for t in targets] for p in names],
            "all_metrics": {t: {p: results[t][p]["metrics"] for p in names} for t in targets},
            "cosine": mean_token_cosine(prompt_values).tolist(), "cosine_rule": "mean token vector",
            "by_task": _by_task(names, targets, scores)}


def _by_task(names, targets, scores) -> Dict[str, Dict[str, Dict[str, Any]]]:
    """{prompt task: {target: {mean, std, n}}} over the task's prompts (std: sample, n - 1; None for one)."""
    out: Dict[str, Dict[str, Dict[str, Any]]] = {}
    for source in dict.fromkeys(source_task(n) for n in names):
        rows = np.array([row for n, row in zip(names, scores) if source_task(n) == source], np.float64)
        out[source] = {t: {"mean": float(rows[:, j].mean()), "n": len(rows),
                           "std": float(rows[:, j].std(ddof=1)) if len(rows) > 1 else None}
                       for j, t in enumerate(targets)}
    return out


def _csv(rows: List[list], header: List[str], labels: List[str]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["prompt \\ task"] + header)
    for label, row in zip(labels, rows):
        writer.writerow([label] + ["" if v is None else v for v in row])
    return out.getvalue()


def format_table(record: Dict[str, Any]) -> str:
    tasks, lines = record["tasks"], []
    lines.append("| prompt \\ task | " + " | ".join(f"{t} ({record['metric'][t]})" for t in tasks) + " |")
    lines.append("|---|" + "---:|" * len(tasks))
    for name, row, rel, how in zip(record["prompts"], record["scores"], record["relative"], record["how"]):
        cells = [f"{s:.1f}" + ("" if r is None else f" ({r:.2f})") + ("" if h != "mapped" else " mapped")
                 for s, r, h in zip(row, rel, how)]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append("(score, and in brackets as a fraction of the task's own prompt)")
    for source, by_target in record.get("by_task", {}).items():
        if next(iter(by_target.values()))["n"] > 1:
            cells = [f"{t} {c['mean']:.1f} ± {c['std']:.1f}" for t, c in by_target.items()]
            lines.append(f"{source} ({next(iter(by_target.values()))['n']} prompts): " + ", ".join(cells))
    return "\n".join(lines) + "\n"


def write_outputs(record: Dict[str, Any], output_dir: str) -> None:
    from xprompt_jax.plots import matrix_heatmap
    export.save_json(os.path.join(output_dir, "transfer.json"), record)
    export.save_text(os.path.join(output_dir, "scores.csv"), _csv(record["scores"], record["tasks"], record["prompts"]))
    export.save_text(os.path.join(output_dir, "relative.csv"),
                     _csv(record["relative"], record["tasks"], record["prompts"]))
    export.save_text(os.path.join(output_dir, "cosine.csv"), _csv(record["cosine"], record["prompts"], record["prompts"]))
    matrix_heatmap(os.path.join(output_dir, "transfer_relative.png"), record["relative"], record["prompts"],
                   record["tasks"], "score as a fraction of the task's own prompt")
    matrix_heatmap(os.path.join(output_dir, "prompt_cosine.png"), record["cosine"], record["prompts"],
                   record["prompts"], "cosine similarity of mean prompt tokens")
