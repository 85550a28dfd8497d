"""The prompt-tuning run: frozen T5 + prompt, trained, evaluated and checkpointed under ``MODEL_DIR``.

``train()`` is a plain function of typed settings (``run/config.py``); gin builds them at the entry
point (``gin_configurables.py``, ``gin/runs/prompt_tune.gin``). It reads its data from numpy caches of
seqio task splits (``run/data.py``), so nothing here imports TensorFlow. Layout of ``MODEL_DIR``:

    run.lock             held while the run is alive: a second run on the folder is refused
    run_config.json      what defines the run; a restart with other settings is refused (run_dir.py)
    checkpoints/<step>/  resumable state (orbax), every ``checkpoint_period`` steps, at the end, on SIGTERM
    best/<step>/         trainable params and masks of the best evaluation by ``EvalConfig.metric``
    eval_metrics.jsonl   one line per evaluation
    train/, eval/        TensorBoard summaries
    export/              prompt.npy and peft_adapter/ of the best prompt

At a step where both are due, the evaluation runs before the checkpoint is saved, and a restart from
step c first drops what was written after c (metrics lines, best checkpoints): so a run killed at any
moment and restarted writes exactly what the uninterrupted run writes.
"""
from __future__ import annotations

import contextlib
import logging
import time
from typing import Any, Dict, Optional

import jax
import numpy as np

from xprompt_jax import export, partitioning, train_step
from xprompt_jax.compile_log import CompileLog
from xprompt_jax.errors import ConfigError
from xprompt_jax.logs import is_main_process
from xprompt_jax.optimizers import LearningRate, Optimizer
from xprompt_jax.prompted import T5_WEIGHTS
from xprompt_jax.prompts.kinds import PromptSpecBase
from xprompt_jax.run import data as run_data
from xprompt_jax.run.config import DataConfig, EvalConfig, FrozenModel, MeshConfig, RunSettings, ScheduleConfig
from xprompt_jax.run.lock import RunLock, prepare_model_dir
from xprompt_jax.run.preemption import PreemptionWatcher, RunPreempted
from xprompt_jax.run.run_dir import check_model_dir
from xprompt_jax.run.session import Session, Start, build_session
from xprompt_jax.run.trackers import BestTracker, EarlyStopping

logger = logging.getLogger(__name__)


class TrainingDiverged(ConfigError):
    """A step's loss or update was NaN/Inf: the run stops there, keeping its last good checkpoint."""


def train(model_dir: str,
          data: DataConfig = DataConfig(),
          schedule: ScheduleConfig = ScheduleConfig(),
          evaluation: EvalConfig = EvalConfig(),
          model: FrozenModel = FrozenModel(),
          optimizer: Optimizer = Optimizer(),
          learning_rate: LearningRate = LearningRate(),
          prompt_spec: Optional[PromptSpecBase] = None,
          mesh: MeshConfig = MeshConfig(),
          trains: str = "prompt",
          dropout: bool = False,
          z_loss: float = 1e-4,
          export_peft: bool = True) -> Dict[str, Any]:
    """Train a prompt on a frozen T5; returns the final and best metrics. Defaults are Lester et al.'s.

    ``trains``: 'prompt' (prompt tuning), 'model' (full fine-tuning, no prompt: every T5 weight
    trains, optimiser state sharded like the weights; also how the demo's model is pre-trained) or
    'prompt+model'. SIGTERM saves a checkpoint at the current step and raises ``RunPreempted``.
    """
    check_model_dir(model_dir)
    settings = RunSettings(data=data, schedule=schedule, evaluation=evaluation, model=model, optimizer=optimizer,
                           learning_rate=learning_rate, prompt_spec=prompt_spec, mesh=mesh, trains=trains,
                           dropout=dropout, z_loss=z_loss)
    return run_training(model_dir, settings, export_peft=export_peft)


def run_training(model_dir: str, settings: RunSettings, start: Optional[Start] = None, export_peft: bool = True
                 ) -> Dict[str, Any]:
    """``train`` on settings already gathered; XPrompt's stages call it with a ``Start`` (the frozen model
    once loaded, the rewound prompt and its fixed masks)."""
    check_model_dir(model_dir)
    prepare_model_dir(model_dir)
    with contextlib.ExitStack() as stack:
        if is_main_process():
            stack.enter_context(RunLock(model_dir))
        watcher = stack.enter_context(PreemptionWatcher())
        compiles = stack.enter_context(CompileLog())
        session = build_session(model_dir, settings, start or Start())
        try:
            step = _run_steps(session, settings.schedule, watcher)
            return _finish(session, step, export_peft)
        finally:
            logger.info(f"[train] {compiles.summary()}")
            session.close()


def _run_steps(s: Session, schedule: ScheduleConfig, watcher: PreemptionWatcher) -> int:
    """The loop: step, log, evaluate, checkpoint; returns the last step."""
    history = s.run_dir.keep_history_through(s.start_step)
    s.best.drop_after(s.start_step)
    best = BestTracker(s.best, s.evaluation.metric, history)
    stopping = EarlyStopping(schedule.early_stopping_patience, s.evaluation.metric, history)
    step, pending = s.start_step, None
    stopped = s.run_dir.stopped_early_at() == s.start_step
    batches = _training_batches(s)
    while step < schedule.train_steps and not stopped:
        s.state, metrics = s.compiled(s.state, s.frozen, run_data.device_batch(next(batches), s.mesh))
        _check_finite(pending, step, s)  # the previous step's flag: read without stalling the pipeline
        pending, step = metrics["finite"], step + 1
        due_log = step % schedule.log_period == 0 or step == schedule.train_steps or step == s.start_step + 1
        due_eval = s.evaluator is not None and (step % schedule.eval_period == 0 or step == schedule.train_steps)
        due_save = step % schedule.checkpoint_period == 0 or step == schedule.train_steps
        if due_log or due_eval or due_save:
            _check_finite(pending, step, s)
            pending = None
        if due_log:
            s.log_train(step, metrics)
        if due_eval:
            record = s.evaluate(step)
            stopped = stopping.should_stop(best.update(step, record, s.state.trainable, s.state.masks))
        if due_save or stopped:
            s.checkpoints.save(step, s.state, s.data_position(step))
        if stopped:
            s.run_dir.mark_stopped_early(step)  # a restart sees this and does not train on
        elif watcher.should_stop() and step < schedule.train_steps:
            if not due_save:
                s.checkpoints.save(step, s.state, s.data_position(step))
            s.checkpoints.wait()
            raise RunPreempted(step, s.checkpoints.directory)
    _check_finite(pending, step, s)
    return step


def _training_batches(s: Session):
    """The run's batches; with length buckets, each new bucket's program starts compiling ``compile_ahead``
    batches before it is needed (``DataConfig.compile_ahead``). One process only: with several, every
    process must compile and run its programs in the same order (their collectives meet), which a
    background thread does not keep."""
    batches = run_data.training_batches(s.splits.train, s.data, s.start_step, s.buckets)
    if not (s.buckets and s.data.compile_ahead) or jax.process_count() > 1:
        return batches

    def compile_for(local):
        abstract = partitioning.abstract_global_batch({k: local[k] for k in train_step.BATCH_KEYS}, s.mesh)
        s.compiled.compile_ahead(s.state, s.frozen, abstract)
    return run_data.compiling_ahead(batches, s.data.compile_ahead, compile_for)


def _check_finite(flag, step: int, s: Session) -> None:
    """Stop at the first non-finite loss or update; the state was left as it was at the step before."""
    if flag is None or bool(jax.device_get(flag)):
        return
    s.checkpoints.wait()
    last = s.checkpoints.latest_step()
    kept = f"the last good checkpoint is {s.checkpoints.directory}/{last}" if last is not None else "no checkpoint was written"
    raise TrainingDiverged(f"the loss or update at step {step} is not finite (NaN or Inf); {kept} and nothing "
                           "was exported. Lower LEARNING_RATE (or check the data), then restart")


def _intact(read):
    """``read()``, or None when the files it reads are damaged (a warning names them)."""
    try:
        return read()
    except Exception as err:  # orbax raises many kinds for truncated files
        logger.warning(f"[train] the best checkpoint's record is damaged ({str(err).splitlines()[0][:160] if str(err) else type(err).__name__})")
        return None


def _finish(s: Session, step: int, export_peft: bool) -> Dict[str, Any]:
    """Wait for the writes, export the best prompt (or the last, without evaluation), return the result."""
    s.checkpoints.wait()
    s.best.wait()
    result = {"step": step, "final": s.last_eval, "history": s.run_dir.history(), "train_loss": s.train_losses,
              "trainable_parameters": s.n_trainable, "seconds": time.time() - s.started}
    final_trainable, final_masks = s.state.trainable, s.state.masks
    best_entry = _intact(s.best.best)
    if best_entry is not None:
        result["best"] = best_entry[1]
        # Onto this run's shardings: the best may have been saved by another topology (a resumed pod run).
        restored = s.best.restore_intact({"trainable": s.state.trainable, "masks": s.state.masks})
        if restored is None:
            logger.warning(f"[train] exporting the final state (step {step}) instead of the best "
                           f"(step {best_entry[0]}): its checkpoint is damaged")
        else:
            final_trainable, final_masks = restored[0]["trainable"], restored[0]["masks"]
    if s.model.prompt_module is not None:
        prompt_values = np.asarray(s.model.prompt(final_trainable, final_masks))
        if not np.isfinite(prompt_values).all():
            raise TrainingDiverged(f"the prompt to export from {s.run_dir.path} is not finite; nothing was exported")
        result["prompt"] = prompt_values
        if is_main_process():
            export.save_npy(f"{s.run_dir.export_dir}/{export.PROMPT_FILE}", prompt_values)
            if export_peft:
                export.save_peft_adapter(f"{s.run_dir.export_dir}/peft_adapter", prompt_values,
                                          s.settings.model.checkpoint, s.config)
    if T5_WEIGHTS in final_trainable:
        export.save_t5_checkpoint(f"{s.run_dir.export_dir}/model", final_trainable[T5_WEIGHTS])
    logger.info(f"[train] done: step {step} in {result['seconds']:.0f}s; exported to {s.run_dir.export_dir}")
    return result
