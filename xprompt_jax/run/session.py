"""Everything one ``train()`` call works with, built in order, cheapest checks first.

Data first (a bad task, cache or metric fails before a model is loaded), then the frozen model, the
prompted model, the optimiser, the run config check, the mesh and shardings, the state (restored when
the folder holds a checkpoint), the jitted step and the evaluator. The loop (``run/loop.py``) then only
steps, evaluates and saves.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import jax
import numpy as np

from xprompt_jax import partitioning, train_step
from xprompt_jax.errors import ConfigError
from xprompt_jax.models.config import T5Config
from xprompt_jax.models.t5 import logical_axes
from xprompt_jax.optimizers import LearningRate, Optimizer
from xprompt_jax.progress import Progress
from xprompt_jax.prompted import T5_WEIGHTS, PromptedT5, PromptSpec, build_prompted_t5
from xprompt_jax.run import data as run_data
from xprompt_jax.run.checkpoints import BestCheckpoint, RunCheckpoints
from xprompt_jax.run.config import DataConfig, EvalConfig, FrozenModel, MeshConfig, ScheduleConfig
from xprompt_jax.run.evaluator import Evaluator, metric_names
from xprompt_jax.run.frozen_model import check_vocabulary, load_frozen
from xprompt_jax.run.run_dir import RunDir, Summaries

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class Session:
    run_dir: RunDir
    data_config: DataConfig
    evaluation: EvalConfig
    data: run_data.RunData
    config: T5Config
    checkpoint: Optional[str]
    model: PromptedT5
    frozen: Any
    state: Any
    mesh: Any
    step_fn: Any
    lr_fn: Any
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

    def data_position(self, step: int) -> dict:
        """What a restart needs to see the same batches from ``step`` on."""
        return {"step": step, "seed": self.data_config.seed, "batch_size": self.data_config.batch_size}

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
        self.summaries.close()
        self.checkpoints.close()
        self.best.close()


def run_config(config: T5Config, spec: PromptSpec, trainable: str, data: DataConfig, optimizer: Optimizer,
               learning_rate: LearningRate, schedule: ScheduleConfig, checkpoint: Optional[str]) -> dict:
    """What defines the run: a restart that changes any of these is refused (``RunDir.check_config``)."""
    return {"model": dataclasses.asdict(config), "prompt": spec.to_dict() if trainable != "model" else None,
            "trainable": trainable, "data": data.defines_the_run(), "optimizer": dataclasses.asdict(optimizer),
            "learning_rate": dataclasses.asdict(learning_rate),
            "accumulation_steps": schedule.accumulation_steps, "checkpoint": checkpoint}


def _check_metric(evaluation: EvalConfig, split) -> None:
    """A metric the task does not report is refused before training, not at the first evaluation."""
    names = metric_names(split)
    if names and evaluation.metric not in names:
        raise ConfigError(f"EVAL_METRIC={evaluation.metric!r} (EvalConfig.metric) is not among this task's "
                          f"metrics {names}")


def _prompted_model(config, spec, frozen, trainable, data: run_data.RunData) -> PromptedT5:
    if trainable == "model":
        return PromptedT5(config, None)
    return build_prompted_t5(config, spec, frozen, run_data.label_token_ids(data.vocabulary, data.train),
                             input_length=data.cached_input_length)


def _initial_state(model, optimizer, frozen, trainable, seed, initial_trainable, initial_masks):
    """The state before any step, and the frozen tree (empty when the T5 weights train)."""
    initial = None
    if trainable != "prompt":  # the T5 weights move from the frozen tree to the trainable one
        initial = {**model.init(jax.random.split(jax.random.PRNGKey(seed))[0])[0], T5_WEIGHTS: frozen}
        frozen = {}
    if initial_trainable is not None:
        initial = initial_trainable if initial is None else {**initial, **initial_trainable}
    state = train_step.create_state(model, optimizer, jax.random.PRNGKey(seed), trainable=initial, masks=initial_masks)
    return state, frozen


def _describe(model, spec, config, state, trainable, mesh, data: DataConfig, num_examples: int) -> int:
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
                f"layers; {what}; trains {trainable}: {n_trainable:,} parameters{note}")
    logger.info(f"[train] mesh {dict(mesh.shape)} on {jax.device_count()} {jax.default_backend()} device(s), "
                f"{jax.process_count()} process(es); batch {data.batch_size}; {num_examples} training examples")
    return n_trainable


def build_session(model_dir: str, data: DataConfig, evaluation: EvalConfig, source: FrozenModel,
                  optimizer: Optimizer, learning_rate: LearningRate, spec: PromptSpec, mesh_config: MeshConfig,
                  trainable: str, frozen_model, initial_trainable, initial_masks, dropout: bool, z_loss: float,
                  schedule: ScheduleConfig) -> Session:
    started = time.time()
    splits = run_data.open_run_data(data)
    if splits.eval is not None:
        _check_metric(evaluation, splits.eval)
    config, frozen = frozen_model if frozen_model is not None else load_frozen(source, data.seed)
    check_vocabulary(config, splits.vocabulary, source.checkpoint)
    model = _prompted_model(config, spec, frozen, trainable, splits)
    lr_fn = learning_rate.build()
    tx = optimizer.build(lr_fn)
    run_dir = RunDir(model_dir)
    run_dir.check_config(run_config(config, spec, trainable, data, optimizer, learning_rate, schedule,
                                    source.checkpoint))

    mesh = partitioning.make_mesh(mesh_config.data, mesh_config.model)
    partitioning.check_divisible(data.batch_size, mesh)
    state, frozen = _initial_state(model, tx, frozen, trainable, data.seed, initial_trainable, initial_masks)
    shardings = train_step.make_shardings(model, tx, jax.eval_shape(lambda: state), mesh, logical_axes(config))
    frozen = jax.device_put(frozen, shardings.frozen)
    checkpoints = RunCheckpoints(model_dir, schedule.keep_checkpoints)
    start_step = 0
    if checkpoints.latest_step() is not None:
        state, position = checkpoints.restore(state, shardings.state)
        start_step = int(position["step"])
        logger.info(f"[train] resumed from {checkpoints.directory}/{start_step}")
    else:
        state = jax.device_put(state, shardings.state)
    n_trainable = _describe(model, spec, config, state, trainable, mesh, data, splits.train.num_examples)

    step_fn = train_step.jit_train_step(train_step.make_train_step(model, tx, z_loss, schedule.accumulation_steps,
                                                                   dropout, lr_fn), shardings)
    buckets = run_data.buckets_for(data, splits.train)
    evaluator = (Evaluator(model, splits.eval, splits.vocabulary, evaluation.batch_size or data.batch_size,
                           evaluation.mode, mesh=mesh, buckets=run_data.buckets_for(data, splits.eval))
                 if splits.eval is not None else None)
    return Session(run_dir=run_dir, data_config=data, evaluation=evaluation, data=splits, config=config,
                   checkpoint=source.checkpoint, model=model, frozen=frozen, state=state, mesh=mesh, step_fn=step_fn,
                   lr_fn=lr_fn, evaluator=evaluator, checkpoints=checkpoints,
                   best=BestCheckpoint(model_dir, evaluation.metric), summaries=Summaries(model_dir),
                   progress=Progress(schedule.train_steps, start_step), start_step=start_step, buckets=buckets,
                   n_trainable=n_trainable, started=started)
