"""Everything one training run works with, built in order, cheapest checks first.

Data first (a bad task, cache or metric fails before a model is loaded), then the frozen model, the
prompted model, the optimiser, the run config check, the mesh and shardings, the state (restored when
the folder holds a checkpoint), the compiled step and the evaluator, each from the assembly point
(``xprompt_jax/assembly.py``). The loop (``run/loop.py``) then only steps, evaluates and saves.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import jax
import numpy as np

from xprompt_jax import assembly, train_step
from xprompt_jax.data.task_cache import resolve_cache_dir
from xprompt_jax.data.task_info import metric_names
from xprompt_jax.errors import ConfigError
from xprompt_jax.models.config import T5Config
from xprompt_jax.progress import Progress
from xprompt_jax.prompted import T5_WEIGHTS, PromptedT5
from xprompt_jax.run import data as run_data
from xprompt_jax.run.checkpoints import BestCheckpoint, RunCheckpoints
from xprompt_jax.run.config import DataConfig, EvalConfig, RunSettings
from xprompt_jax.run.evaluator import Evaluator
from xprompt_jax.run.frozen_model import check_vocabulary
from xprompt_jax.run.run_dir import RunDir, Summaries

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Start:
    """Where a run starts when not from scratch (XPrompt's stages): the frozen model already loaded
    (``(config, params)``), and a rewound prompt with its fixed masks."""
    frozen_model: Optional[Tuple[T5Config, Any]] = None
    trainable: Any = None
    masks: Any = None


@dataclasses.dataclass
class Session:
    run_dir: RunDir
    settings: RunSettings
    splits: run_data.RunData
    config: T5Config
    model: PromptedT5
    frozen: Any
    state: Any
    compiled: assembly.CompiledStep
    evaluator: Optional[Evaluator]
    checkpoints: RunCheckpoints
    best: BestCheckpoint
    summaries: Summaries
    progress: Progress
    start_step: int
    buckets: Optional[Sequence[int]]
    n_trainable: int
    started: float
    last_eval: Optional[Dict[str, float]] = None
    train_losses: List[Tuple[int, float]] = dataclasses.field(default_factory=list)

    @property
    def data(self) -> DataConfig:
        return self.settings.data

    @property
    def evaluation(self) -> EvalConfig:
        return self.settings.evaluation

    @property
    def mesh(self):
        return self.compiled.mesh

    def data_position(self, step: int) -> dict:
        """What a restart needs to see the same batches from ``step`` on."""
        return {"step": step, "seed": self.data.seed, "batch_size": self.data.batch_size}

    def log_train(self, step: int, metrics) -> None:
        values = {k: float(v) for k, v in jax.device_get(metrics).items()}
        self.train_losses.append((step, values["loss"]))
        self.summaries.scalars("train", step, values)
        self.progress.update(step, {k: values[k] for k in ("loss", "learning_rate") if k in values})

    def evaluate(self, step: int) -> dict:
        """Score the current prompt, log it (metrics file, TensorBoard, console); returns the record."""
        self.last_eval = self.evaluator(self.state.trainable, self.frozen, self.state.masks)
        metric = self.evaluation.metric
        if metric not in self.last_eval:
            raise ConfigError(f"EVAL_METRIC={metric!r} (EvalConfig.metric) is not among this task's metrics "
                              f"{sorted(self.last_eval)}")
        record = {"step": step, **self.last_eval}
        self.summaries.scalars("eval", step, self.last_eval)
        self.run_dir.append_metrics(record)
        logger.info(f"[eval] step {step}: " + ", ".join(f"{k} {v:.2f}" for k, v in self.last_eval.items()))
        return record

    def close(self) -> None:
        self.compiled.close()
        self.summaries.close()
        self.checkpoints.close()
        self.best.close()


def _check_metric(evaluation: EvalConfig, split) -> None:
    """A metric the task does not report is refused before training, not at the first evaluation."""
    names = metric_names(split)
    if names and evaluation.metric not in names:
        raise ConfigError(f"EVAL_METRIC={evaluation.metric!r} (EvalConfig.metric) is not among this task's "
                          f"metrics {names}")


def _initial_state(model, optimizer, frozen, trains: str, seed: int, start: Start):
    """The state before any step, and the frozen tree (empty when the T5 weights train)."""
    initial = None
    if trains != "prompt":  # the T5 weights move from the frozen tree to the trainable one
        initial = {**model.init(jax.random.split(jax.random.PRNGKey(seed))[0])[0], T5_WEIGHTS: frozen}
        frozen = {}
    if start.trainable is not None:
        initial = start.trainable if initial is None else {**initial, **start.trainable}
    state = train_step.create_state(model, optimizer, jax.random.PRNGKey(seed), trainable=initial, masks=start.masks)
    return state, frozen


def _describe(model, settings: RunSettings, config, state, mesh, num_examples: int) -> int:
    spec, data = settings.prompt_spec, settings.data
    n_trainable = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(state.trainable))
    note = ""
    if state.masks:
        from xprompt_jax.prompts.masks import surviving_parameters
        unmasked = surviving_parameters(state.masks["token_mask"], state.masks["piece_mask"], config.emb_dim)
        if unmasked < spec.length * config.emb_dim:
            note = f" ({unmasked:,} unmasked)"
    kind = "" if spec.kind == "prompt" else f"{spec.kind} "
    what = f"{kind}prompt {spec.length}x{config.emb_dim} ({spec.init})" if model.prompt_module is not None else "no prompt"
    logger.info(f"[train] model: {config.emb_dim}-wide, {config.num_encoder_layers}+{config.num_decoder_layers} "
                f"layers; {what}; trains {settings.trains}: {n_trainable:,} parameters{note}")
    logger.info(f"[train] mesh {dict(mesh.shape)} on {jax.device_count()} {jax.default_backend()} device(s), "
                f"{jax.process_count()} process(es); batch {data.batch_size}; {num_examples} training examples")
    return n_trainable


def _say_where_caches_are(data: DataConfig) -> None:
    compiled = jax.config.jax_compilation_cache_dir or "off (XPROMPT_COMPILATION_CACHE)"
    caches = "named by DataConfig.train_cache/eval_cache" if data.train_cache else resolve_cache_dir(data.cache_dir)
    logger.info(f"[train] data caches: {caches}; compiled programs: {compiled}")


def build_session(model_dir: str, settings: RunSettings, start: Start) -> Session:
    started = time.time()
    data, evaluation, schedule = settings.data, settings.evaluation, settings.schedule
    _say_where_caches_are(data)
    if settings.trains != "model":  # settings checks first, before any data cache is written
        early = start.frozen_model[0] if start.frozen_model is not None else assembly.model_architecture(settings.model)
        if early is not None:
            assembly.check_spec(settings.prompt_spec, early, data.input_length)
    splits = assembly.open_data(data)
    if splits.eval is not None:
        _check_metric(evaluation, splits.eval)
    if start.frozen_model is not None:
        config, frozen = start.frozen_model
    else:
        config, frozen = assembly.open_model(settings.model, data.seed)
    check_vocabulary(config, splits.vocabulary, settings.model.checkpoint)
    model = assembly.prompted_model(config, None if settings.trains == "model" else settings.prompt_spec, frozen,
                                    splits)
    lr_fn = settings.learning_rate.build()
    tx = settings.optimizer.build(lr_fn)
    run_dir = RunDir(model_dir)
    run_dir.check_config(settings.identity(config, splits.vocabulary.path))

    mesh = assembly.make_mesh(settings.mesh, data.batch_size)
    state, frozen = _initial_state(model, tx, frozen, settings.trains, data.seed, start)
    compiled = assembly.compile_step(model, tx, state, mesh, z_loss=settings.z_loss,
                                     accumulation_steps=schedule.accumulation_steps, dropout=settings.dropout,
                                     learning_rate_fn=lr_fn)
    frozen = compiled.place_frozen(frozen)
    checkpoints = RunCheckpoints(model_dir, schedule.keep_checkpoints)
    start_step = 0
    if checkpoints.latest_step() is not None:
        state, position = checkpoints.restore(state, compiled.shardings.state)
        start_step = int(position["step"])
        logger.info(f"[train] resumed from {checkpoints.directory}/{start_step}")
    else:
        state = compiled.place_state(state)
    n_trainable = _describe(model, settings, config, state, mesh, splits.train.num_examples)
    evaluator = (assembly.evaluator_for(model, splits.eval, splits.vocabulary, data, evaluation, mesh=mesh)
                 if splits.eval is not None else None)
    return Session(run_dir=run_dir, settings=settings, splits=splits, config=config, model=model, frozen=frozen,
                   state=state, compiled=compiled, evaluator=evaluator, checkpoints=checkpoints,
                   best=BestCheckpoint(model_dir, evaluation.metric), summaries=Summaries(model_dir),
                   progress=Progress(schedule.train_steps, start_step), start_step=start_step,
                   buckets=run_data.buckets_for(data, splits.train), n_trainable=n_trainable, started=started)
