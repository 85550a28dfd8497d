"""The settings of a run as typed objects, checked when they are built.

T5X passes ``DatasetConfig``, a partitioner and a checkpoint config into ``train``; this project does
the same: gin files build these with ``@xprompt_jax.DataConfig()`` & co. (``gin_configurables.py``
registers them) and pass them to ``run.loop.train``, which reads no global state. Each object checks
its fields in ``__post_init__``, so ``BATCH_SIZE=0`` or ``EVAL_PERIOD='x'`` is one line naming the macro
before any data is read or any model is loaded.
"""
from __future__ import annotations

import dataclasses
import numbers
from typing import Any, Dict, Optional, Tuple, Union

from xprompt_jax.errors import ConfigError
from xprompt_jax.models.config import T5Config


def require_string(macro: str, value, binding: str):
    """gin passes an unset ``%gin.REQUIRED`` macro through as a sentinel object: name the macro instead."""
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{macro} is not set: pass --gin.{macro}=\"'/path'\" (or bind {binding})")


def check_int(value, name: str, *, minimum: int = 1, allow_none: bool = False) -> None:
    """An integer >= ``minimum`` (bools and floats refused), else one ConfigError naming ``name``."""
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")


def check_choice(value, name: str, choices: Tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{name} must be one of {list(choices)}, got {value!r}")


def check_optional_string(value, name: str) -> None:
    if value is not None and (not isinstance(value, str) or not value):
        raise ConfigError(f"{name} must be a non-empty string or None, got {value!r}")


def _checked_buckets(value):
    """LENGTH_BUCKETS: True/False, or increasing positive int lengths (a list from gin becomes a tuple)."""
    if isinstance(value, bool):
        return value
    from xprompt_jax.data.buckets import check_buckets
    if isinstance(value, (list, tuple)) and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        try:
            return check_buckets(value)
        except ValueError:
            pass
    raise ConfigError(f"LENGTH_BUCKETS (DataConfig.length_buckets) must be True, False or increasing positive "
                      f"lengths such as (64, 128, 256), got {value!r}")


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Which examples, how they are cut and batched: gin ``xprompt_jax.DataConfig`` (macros TASK, BATCH_SIZE ...).

    ``task`` names a registered seqio task (its cache is written on first use under ``cache_dir``), or
    ``train_cache``/``eval_cache`` name cache folders directly. ``length_buckets`` pads each batch only
    to the smallest of a few static lengths that holds its longest example (results unchanged, much less
    encoder work on real data): True for ``buckets.bucket_lengths(input length)``, or the lengths
    themselves (e.g. ``(64, 128, 192, 256, 320, 384)``: finer buckets, less padding, one compiled program
    each; the cache's input length is added as the last); ``group_by_length`` also sorts examples by length within windows
    before batching (changes the batches, so a run records it). ``max_buckets`` caps how many bucket
    programs are compiled (evenly spread, the full length kept): worth setting on accelerators with large
    models, where each program takes minutes to compile. ``compile_ahead`` reads that many training batches
    ahead and compiles the program of each new bucket shape in a background thread before it is needed
    (0: compile each on first use; multi-process runs always compile on first use, in step).
    """
    task: Optional[str] = None
    train_split: str = "train"
    eval_split: Optional[str] = "validation"
    train_cache: Optional[str] = None
    eval_cache: Optional[str] = None
    cache_dir: Optional[str] = None
    vocabulary_path: Optional[str] = None
    input_length: int = 512
    target_length: int = 16
    batch_size: int = 32
    seed: int = 0
    length_buckets: Union[bool, Tuple[int, ...]] = True
    group_by_length: bool = False
    max_buckets: Optional[int] = None
    compile_ahead: int = 32

    def __post_init__(self):
        check_optional_string(self.task, "TASK (DataConfig.task)")
        for field in ("train_cache", "eval_cache", "cache_dir", "vocabulary_path", "eval_split"):
            check_optional_string(getattr(self, field), f"DataConfig.{field}")
        if not isinstance(self.train_split, str) or not self.train_split:
            raise ConfigError(f"TRAIN_SPLIT (DataConfig.train_split) must be a split name, got {self.train_split!r}")
        check_int(self.input_length, "INPUT_LENGTH (DataConfig.input_length)")
        check_int(self.target_length, "TARGET_LENGTH (DataConfig.target_length)")
        check_int(self.batch_size, "BATCH_SIZE (DataConfig.batch_size)")
        check_int(self.seed, "SEED (DataConfig.seed)", minimum=0)
        check_int(self.max_buckets, "DataConfig.max_buckets", allow_none=True)
        check_int(self.compile_ahead, "DataConfig.compile_ahead", minimum=0)
        if not isinstance(self.group_by_length, bool):
            raise ConfigError(f"DataConfig.group_by_length must be True or False, got {self.group_by_length!r}")
        object.__setattr__(self, "length_buckets", _checked_buckets(self.length_buckets))

    def defines_the_run(self) -> Dict[str, Any]:
        """What a restart must not change (buckets only change padding, so they are left out)."""
        names = ("task", "train_split", "eval_split", "input_length", "target_length", "batch_size", "seed",
                 "group_by_length")
        record = {name: getattr(self, name) for name in names}
        if not self.task:  # caches named directly: the folders are the data
            record.update(train_cache=self.train_cache, eval_cache=self.eval_cache)
        return record


@dataclasses.dataclass(frozen=True)
class ScheduleConfig:
    """How long and how often: gin ``xprompt_jax.ScheduleConfig`` (TRAIN_STEPS, EVAL_PERIOD, CHECKPOINT_PERIOD)."""
    train_steps: int = 30000
    eval_period: int = 1000
    checkpoint_period: int = 1000
    keep_checkpoints: int = 3
    accumulation_steps: int = 1
    log_period: int = 100
    early_stopping_patience: Optional[int] = None

    def __post_init__(self):
        check_int(self.train_steps, "TRAIN_STEPS (ScheduleConfig.train_steps)")
        check_int(self.eval_period, "EVAL_PERIOD (ScheduleConfig.eval_period)")
        check_int(self.checkpoint_period, "CHECKPOINT_PERIOD (ScheduleConfig.checkpoint_period)")
        check_int(self.keep_checkpoints, "ScheduleConfig.keep_checkpoints")
        check_int(self.accumulation_steps, "ScheduleConfig.accumulation_steps")
        check_int(self.log_period, "ScheduleConfig.log_period")
        check_int(self.early_stopping_patience, "ScheduleConfig.early_stopping_patience", allow_none=True)

    def check_batch(self, batch_size: int) -> None:
        if batch_size % self.accumulation_steps:
            raise ConfigError(f"ScheduleConfig.accumulation_steps={self.accumulation_steps} must divide "
                              f"BATCH_SIZE={batch_size}")


EVAL_MODES = ("auto", "rank", "decode", "beam")


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """How a prompt is scored: gin ``xprompt_jax.EvalConfig`` (EVAL_METRIC); ``mode`` 'rank' (rank
    classification), 'decode' (greedy), 'beam' (beam search, ``beam_size`` beams, T5X's brevity penalty
    ``beam_alpha``) or 'auto' (rank when the task has label names, else greedy)."""
    metric: str = "accuracy"
    mode: str = "auto"
    batch_size: Optional[int] = None
    beam_size: int = 4
    beam_alpha: float = 0.6

    def __post_init__(self):
        if not isinstance(self.metric, str) or not self.metric:
            raise ConfigError(f"EVAL_METRIC (EvalConfig.metric) must be a metric name, got {self.metric!r}")
        check_choice(self.mode, "EvalConfig.mode", EVAL_MODES)
        check_int(self.batch_size, "EvalConfig.batch_size", allow_none=True)
        check_int(self.beam_size, "EvalConfig.beam_size")


FROZEN_DTYPES = (None, "float32", "bfloat16", "float16")
ACTIVATION_DTYPES = (None, "auto", "float32", "bfloat16", "float16")


def resolve_activation_dtype(name: Optional[str], backend: str) -> Optional[str]:
    """'auto': bfloat16 on GPU and TPU (T5X's activations; TF32 matrix products on twice the bytes otherwise),
    float32 on the CPU (no fast bfloat16 there). None keeps the model config's own ``dtype``."""
    if name == "auto":
        return "bfloat16" if backend in ("gpu", "tpu") else "float32"
    return name


@dataclasses.dataclass(frozen=True)
class FrozenModel:
    """Where the frozen T5 comes from: gin ``xprompt_jax.FrozenModel`` (CHECKPOINT, FROZEN_DTYPE).

    ``checkpoint``: a T5X checkpoint (its architecture from ``config``, i.e. the models/ and sizes/ gin
    files) or a Hugging Face T5 folder (which carries its own config; ``config`` is then ignored), or
    None for random weights (pre-training, tests, benchmarks). ``dtype='bfloat16'`` halves the frozen
    weights' memory; ``activation_dtype`` (ACTIVATION_DTYPE, 'auto' in the run files) is the compute dtype:
    bfloat16 on GPU and TPU, float32 on the CPU. The prompt, optimiser state, masks and importance scores
    stay float32 either way.
    """
    checkpoint: Optional[str] = None
    config: Optional[T5Config] = None
    dtype: Optional[str] = None
    activation_dtype: Optional[str] = None

    def __post_init__(self):
        check_optional_string(self.checkpoint, "CHECKPOINT (FrozenModel.checkpoint)")
        if self.dtype not in FROZEN_DTYPES:
            raise ConfigError(f"FROZEN_DTYPE (FrozenModel.dtype) must be one of {list(FROZEN_DTYPES)}, "
                              f"got {self.dtype!r}")
        if self.activation_dtype not in ACTIVATION_DTYPES:
            raise ConfigError(f"ACTIVATION_DTYPE (FrozenModel.activation_dtype) must be one of "
                              f"{list(ACTIVATION_DTYPES)}, got {self.activation_dtype!r}")


@dataclasses.dataclass(frozen=True)
class MeshConfig:
    """The device mesh: ``data`` x ``model`` axes (-1: all remaining devices), as T5X's partitioner."""
    data: int = -1
    model: int = 1

    def __post_init__(self):
        if self.data != -1:
            check_int(self.data, "MeshConfig.data")
        check_int(self.model, "MeshConfig.model")


TRAINS = ("prompt", "model", "prompt+model")


@dataclasses.dataclass(frozen=True)
class RunSettings:
    """Every setting of one training run, as the settings objects arrived from gin: what ``train`` takes,
    what the session reads and what XPrompt's stages share (``dataclasses.replace`` changes one).

    ``trains``: 'prompt' (prompt tuning), 'model' (full fine-tuning, no prompt) or 'prompt+model'.
    """
    data: DataConfig = DataConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    evaluation: EvalConfig = EvalConfig()
    model: FrozenModel = FrozenModel()
    optimizer: Any = None
    learning_rate: Any = None
    prompt_spec: Any = None
    mesh: MeshConfig = MeshConfig()
    trains: str = "prompt"
    dropout: bool = False
    z_loss: float = 1e-4

    def __post_init__(self):
        from xprompt_jax.optimizers import LearningRate, Optimizer
        from xprompt_jax.prompts.kinds import make_spec
        check_choice(self.trains, "train.trains", TRAINS)
        self.schedule.check_batch(self.data.batch_size)
        for name, default in (("optimizer", Optimizer), ("learning_rate", LearningRate), ("prompt_spec", make_spec)):
            if getattr(self, name) is None:
                object.__setattr__(self, name, default())

    def identity(self, config: T5Config, vocabulary: Optional[str] = None) -> Dict[str, Any]:
        """What defines the run: a restart that changes any of these is refused (``RunDir.check_config``).
        ``vocabulary``: the path (or ``'byte'``) of the vocabulary the run tokenises and scores with."""
        data = self.data.defines_the_run()
        if vocabulary is not None:
            data["vocabulary"] = vocabulary
        return {"model": dataclasses.asdict(config),
                "prompt": self.prompt_spec.to_dict() if self.trains != "model" else None,
                "trainable": self.trains, "data": data,
                "optimizer": dataclasses.asdict(self.optimizer), "learning_rate": dataclasses.asdict(self.learning_rate),
                "accumulation_steps": self.schedule.accumulation_steps, "checkpoint": self.model.checkpoint}
