"""Where gin meets the library: every name a gin file binds is registered here, at the entry point.

Library functions and settings classes know nothing of gin (as in T5X, where ``gin.configurable`` is
applied in the entry modules); the CLI (``cli/main.py``) and the demo call the configured versions below.
A binding of a name this project used before the settings objects (``xprompt_jax.train.batch_size``)
is answered with the name that replaced it (``RENAMED``).
"""
from __future__ import annotations

import re
from typing import Iterable

import gin

from xprompt_jax import optimizers
from xprompt_jax.commands import ensemble as ensemble_command
from xprompt_jax.commands import evaluate as evaluate_command
from xprompt_jax.commands import predict as predict_command
from xprompt_jax.commands import transfer as transfer_command
from xprompt_jax.errors import ConfigError
from xprompt_jax.models import config as model_config
from xprompt_jax.prompts.kinds import make_spec
from xprompt_jax.run import config as settings
from xprompt_jax.run import loop
from xprompt_jax.sweep import grid as sweep_grid
from xprompt_jax.xprompt import stages as xprompt_stages

MODULE = "xprompt_jax"

# Entry points: what `xprompt-jax train|evaluate|xprompt|ensemble|predict` call.
train = gin.external_configurable(loop.train, module=MODULE)
evaluate = gin.external_configurable(evaluate_command.evaluate, module=MODULE)
xprompt = gin.external_configurable(xprompt_stages.xprompt, module=MODULE)
ensemble = gin.external_configurable(ensemble_command.ensemble, module=MODULE)
predict = gin.external_configurable(predict_command.predict, module=MODULE)
transfer = gin.external_configurable(transfer_command.transfer, module=MODULE)

# Settings objects, built in gin files with @xprompt_jax.Name().
DataConfig = gin.external_configurable(settings.DataConfig, module=MODULE)
ScheduleConfig = gin.external_configurable(settings.ScheduleConfig, module=MODULE)
EvalConfig = gin.external_configurable(settings.EvalConfig, module=MODULE)
FrozenModel = gin.external_configurable(settings.FrozenModel, module=MODULE)
MeshConfig = gin.external_configurable(settings.MeshConfig, module=MODULE)
Optimizer = gin.external_configurable(optimizers.Optimizer, module=MODULE)
LearningRate = gin.external_configurable(optimizers.LearningRate, module=MODULE)
PromptSpec = gin.external_configurable(make_spec, name="PromptSpec", module=MODULE)  # a spec of any kind
t5_config = gin.external_configurable(model_config.t5_config, module=MODULE)
Sweep = gin.external_configurable(sweep_grid.SweepGrid, name="Sweep", module=MODULE)  # `xprompt-jax sweep`'s grid

ENTRY_POINTS = {"train": train, "evaluate": evaluate, "xprompt": xprompt, "ensemble": ensemble, "predict": predict,
                "transfer": transfer}

# Bindings of the flat-argument era -> the settings field that replaced them.
_DATA = ("task", "train_split", "eval_split", "train_cache", "eval_cache", "vocabulary_path", "input_length",
         "target_length", "batch_size", "seed")
_SCHEDULE = ("train_steps", "eval_period", "checkpoint_period", "keep_checkpoints", "accumulation_steps",
             "log_period", "early_stopping_patience")
RENAMED = {
    **{f"xprompt_jax.train.{f}": f"xprompt_jax.DataConfig.{f}" for f in _DATA},
    "xprompt_jax.train.data_cache_dir": "xprompt_jax.DataConfig.cache_dir",
    **{f"xprompt_jax.train.{f}": f"xprompt_jax.ScheduleConfig.{f}" for f in _SCHEDULE},
    "xprompt_jax.train.eval_metric": "xprompt_jax.EvalConfig.metric",
    "xprompt_jax.train.eval_mode": "xprompt_jax.EvalConfig.mode",
    "xprompt_jax.train.eval_batch_size": "xprompt_jax.EvalConfig.batch_size",
    "xprompt_jax.train.checkpoint": "xprompt_jax.FrozenModel.checkpoint",
    "xprompt_jax.train.frozen_dtype": "xprompt_jax.FrozenModel.dtype",
    "xprompt_jax.train.mesh_data": "xprompt_jax.MeshConfig.data",
    "xprompt_jax.train.mesh_model": "xprompt_jax.MeshConfig.model",
    "xprompt_jax.train.trainable": "xprompt_jax.train.trains",
    **{f"xprompt_jax.make_optimizer.{f}": f"xprompt_jax.Optimizer.{f}"
       for f in ("name", "decay_rate", "weight_decay", "clipping_threshold", "factored",
                 "multiply_by_parameter_scale", "b1", "b2", "eps", "global_norm_clip")},
    **{f"xprompt_jax.learning_rate_schedule.{f}": f"xprompt_jax.LearningRate.{f}"
       for f in ("learning_rate", "schedule", "warmup_steps", "total_steps", "end_factor")},
}
_BINDING = re.compile(r"^\s*([\w.]+)\s*=", re.M)


def check_renamed(texts: Iterable[str]) -> None:
    """Refuse a binding of a replaced name, naming its replacement (gin would say only 'no such parameter')."""
    for text in texts:
        for name in _BINDING.findall(text):
            if name in RENAMED:
                raise ConfigError(f"{name} is now {RENAMED[name]} (the run takes settings objects; "
                                  "see xprompt_jax/run/config.py): rename the binding")
