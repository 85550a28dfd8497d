"""A study's grid: methods x tasks x models x learning rates x seeds (x any gin binding), as runs.

``SweepGrid`` is what gin's ``xprompt_jax.Sweep`` binds (``runs/sweep_*.gin``); ``cells`` expands it into
``Cell``s, each an ordinary run (``train`` or ``xprompt``) with its own folder under the sweep folder, its
gin files and its bindings. Nothing here runs anything: ``sweep/runner.py`` does.
"""
from __future__ import annotations

import dataclasses
import itertools
import os
import re
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from xprompt_jax.errors import ConfigError

CELLS_DIR = "cells"


@dataclasses.dataclass(frozen=True)
class SweepGrid:
    """The axes of a sweep; every cell is ``files`` + its method's files + its model's files, with the bindings.

    ``methods``: name -> run files (``{'prompt_tuning': ['runs/prompt_tune.gin'], 'ept': ['runs/ept.gin']}``),
    or a ``{'files': [...], 'bindings': {...}}`` dict (P-Tuning with ``PTUNING_ENCODER='lstm'``); a method
    whose files include an ``*xprompt.gin`` runs the ``xprompt`` command, any other ``train``.
    ``tasks`` bind TASK; ``seeds`` bind SEED; ``learning_rates`` bind LEARNING_RATE, one list for every
    method or a dict method -> list (EPT's grid: fine-tuning 1e-5..1e-3, prompt methods 3e-3..3e-1);
    empty keeps each run file's own rate. ``models``: name -> gin files (``sizes/``, ``models/``), or a
    ``{'files': [...], 'bindings': {...}}`` dict (a CHECKPOINT, say). ``axes``: any further gin binding ->
    its values, each one more axis. ``bindings``: the same in every cell. The cell's MODEL_DIR is
    ``<sweep_dir>/cells/<cell id>``. ``test_split``: after each run, its result (best prompt, XPrompt's best
    ratio, a fine-tuned model) is scored on this split too, and the table reports it at the learning rate
    chosen on validation (EPT's protocol: ``ept_test``, with ``ept_train``/``ept_validation`` to train and
    choose); None: the table reports validation. ``zero_shot_tasks``: each run's result is also scored, with
    no further training, on these tasks' ``validation`` splits (Lester et al.'s Table 1: a SQuAD prompt or
    fine-tuned model on the MRQA out-of-domain sets), one more table column each, ``<task> -> <target>``.
    """
    sweep_dir: str
    methods: Mapping[str, Sequence[str]]
    tasks: Sequence[str] = ()
    seeds: Sequence[int] = (0,)
    learning_rates: Union[Sequence[float], Mapping[str, Sequence[float]]] = ()
    models: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    files: Sequence[str] = ()
    bindings: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    axes: Mapping[str, Sequence[Any]] = dataclasses.field(default_factory=dict)
    test_split: Optional[str] = None
    zero_shot_tasks: Sequence[str] = ()

    def __post_init__(self):
        if not isinstance(self.sweep_dir, str) or not self.sweep_dir:
            raise ConfigError("SWEEP_DIR (Sweep.sweep_dir) must be a folder for the sweep's cells and tables")
        if not self.methods:
            raise ConfigError("Sweep.methods is empty: give {name: [run files]}, e.g. "
                              "{'prompt_tuning': ['runs/prompt_tune.gin']}")
        for name, spec in self.methods.items():
            files = _parts(spec)[0]
            if isinstance(spec, str) or not files or not all(isinstance(f, str) for f in files):
                raise ConfigError(f"Sweep.methods[{name!r}] must be a list of gin files (or {{'files': [...], "
                                  f"'bindings': {{...}}}}), got {spec!r}")
        if isinstance(self.learning_rates, Mapping):
            unknown = sorted(set(self.learning_rates) - set(self.methods))
            if unknown:
                raise ConfigError(f"Sweep.learning_rates names methods the grid does not have: {', '.join(unknown)} "
                                  f"(methods: {', '.join(self.methods)})")
        if not self.seeds:
            raise ConfigError("Sweep.seeds is empty: give at least one seed, e.g. [0, 1, 2]")


@dataclasses.dataclass(frozen=True)
class Cell:
    """One run of the grid: which point it is, what it runs, where it writes."""
    id: str
    method: str
    task: Optional[str]
    model: Optional[str]
    learning_rate: Optional[float]
    seed: int
    extra: Tuple[Tuple[str, Any], ...]
    command: str
    files: Tuple[str, ...]
    bindings: Tuple[Tuple[str, Any], ...]
    model_dir: str

    def point(self) -> Dict[str, Any]:
        """The cell's coordinates (what a table groups and averages over)."""
        return {"method": self.method, "task": self.task, "model": self.model, "learning_rate": self.learning_rate,
                "seed": self.seed, **{name: value for name, value in self.extra}}


def _learning_rates(grid: SweepGrid, method: str) -> List[Optional[float]]:
    rates = grid.learning_rates.get(method, ()) if isinstance(grid.learning_rates, Mapping) else grid.learning_rates
    return list(rates) or [None]


def _parts(spec) -> Tuple[Tuple[str, ...], Dict[str, Any]]:
    """(files, bindings) of a method or model: a list of gin files, or a dict of both."""
    if isinstance(spec, Mapping):
        return tuple(spec.get("files", ())), dict(spec.get("bindings", {}))
    if isinstance(spec, str):
        return (spec,), {}
    return tuple(spec), {}


def _slug(value: Any) -> str:
    text = f"{value:g}" if isinstance(value, float) else str(value)
    return re.sub(r"[^A-Za-z0-9.=+-]+", "_", text).strip("_") or "x"


def command_of(files: Sequence[str]) -> str:
    return "xprompt" if any(os.path.basename(f).endswith("xprompt.gin") for f in files) else "train"


def cells(grid: SweepGrid) -> List[Cell]:
    """Every cell, in a stable order: model, method, task, extra axes, learning rate, seed (the model first,
    so cells of one frozen model run together and share it; seeds last, so a stopped sweep has finished
    whole groups first)."""
    out = []
    models = list(grid.models.items()) or [(None, ())]
    extra_axes = [[(name, v) for v in values] for name, values in grid.axes.items()]
    for model, model_spec in models:
        model_files, model_bindings = _parts(model_spec)
        for method, method_spec in grid.methods.items():
            method_files, method_bindings = _parts(method_spec)
            for task in (list(grid.tasks) or [None]):
                for extra in itertools.product(*extra_axes):
                    for lr in _learning_rates(grid, method):
                        for seed in grid.seeds:
                            parts = [_slug(method)] + [_slug(p) for p in (task, model) if p is not None]
                            parts += [f"{_slug(k.split('.')[-1])}={_slug(v)}" for k, v in extra]
                            parts += ([f"lr={_slug(lr)}"] if lr is not None else []) + [f"seed={seed}"]
                            cell_id = "__".join(parts)
                            model_dir = os.path.join(grid.sweep_dir, CELLS_DIR, cell_id)
                            bindings = {**grid.bindings, **model_bindings, **method_bindings}
                            bindings.update({"MODEL_DIR": model_dir, "SEED": int(seed)})
                            if task is not None:
                                bindings["TASK"] = task
                            if lr is not None:
                                bindings["LEARNING_RATE"] = float(lr)
                            bindings.update(dict(extra))
                            files = tuple(model_files) + tuple(grid.files) + tuple(method_files)
                            out.append(Cell(cell_id, method, task, model, lr, int(seed), tuple(extra),
                                            command_of(method_files), files, tuple(bindings.items()), model_dir))
    ids = [c.id for c in out]
    if len(set(ids)) != len(ids):
        raise ConfigError("Sweep: two cells got the same folder name; give the axes' values distinct names")
    return out
