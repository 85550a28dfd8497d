"""The assembly point: the pieces every command builds, each defined once.

A command (``train``, ``evaluate``, ``xprompt``, ``ensemble``, the demo, the benchmarks) receives the
settings objects gin built (``run/config.py``) and calls these; none opens a checkpoint, a cache or a
saved prompt itself, and none jits a step by hand. So a new command is a short file of calls:

    open_model(FrozenModel)                      -> (T5Config, frozen params): T5X, Hugging Face or random
    open_data(DataConfig)                        -> RunData: training split, evaluation split, vocabulary
    open_eval_data(DataConfig)                   -> (split, vocabulary) that evaluate/ensemble score
    open_predict_data(DataConfig)                -> (split, vocabulary) that predict runs on (labels optional)
    read_saved_prompt(path)                      -> SavedPrompt: a .npy, a PEFT adapter or a run's MODEL_DIR
    prompted_model(config, spec, frozen, ...)    -> PromptedT5 for a prompt spec (or no prompt)
    prompted_from_saved(config, saved, ...)      -> (PromptedT5, trainable, masks) of a saved prompt
    evaluator_for(model, split, vocabulary, ...) -> Evaluator with the run's batch size, buckets and mesh
    compile_step(model, optimizer, state, ...)   -> CompiledStep: shardings and the jitted step together
    make_mesh(MeshConfig), random_frozen(config, mesh): the mesh, and random weights laid out on it

The prompt's width and length are checked against the model in one place (``check_prompt_fits``).
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
from typing import Any, Callable, Optional, Tuple

import jax
import numpy as np

from xprompt_jax import export, partitioning, train_step
from xprompt_jax.data.task_info import check_labelled, label_token_ids
from xprompt_jax.models.config import T5Config
from xprompt_jax.models.t5 import logical_axes
from xprompt_jax.prompted import PromptedT5, build_prompted_t5, check_prompt_fits
from xprompt_jax.prompts import initializers
from xprompt_jax.prompts.kinds import PromptSpecBase, make_spec
from xprompt_jax.run import data as run_data
from xprompt_jax.run.config import DataConfig, EvalConfig, FrozenModel
from xprompt_jax.run.data import cached_input_length
from xprompt_jax.run.evaluator import Evaluator
from xprompt_jax.run.frozen_model import check_vocabulary, load_frozen, model_config_for

__all__ = ["CompiledStep", "SavedPrompt", "cached_input_length", "check_prompt_fits", "compile_step", "evaluator_for", "model_config_for",
           "open_data", "open_eval_data", "open_model", "open_predict_data", "prompted_from_saved", "prompted_model",
           "read_saved_prompt"]


# ------------------------------------------------------------------------------------------------
# The model and the data
# ------------------------------------------------------------------------------------------------
def open_model(source: FrozenModel, seed: int = 0, vocabulary=None) -> Tuple[T5Config, Any]:
    """(config, params) of the frozen T5; ``vocabulary``: checked against the model's embedding rows."""
    config, frozen = load_frozen(source, seed)
    if vocabulary is not None:
        check_vocabulary(config, vocabulary, source.checkpoint)
    return config, frozen


def open_data(data: DataConfig, with_eval: bool = True) -> run_data.RunData:
    """A run's training split, evaluation split (if any) and vocabulary; a bad task or cache fails here, and
    so does an empty or unlabelled split (a test split named as TRAIN_SPLIT or EVAL_SPLIT)."""
    splits = run_data.open_run_data(data, with_eval)
    check_labelled(splits.train, "training", "DataConfig.train_cache" if data.train_cache else "TRAIN_SPLIT")
    if splits.eval is not None:
        check_labelled(splits.eval, "evaluation", _eval_setting(data))
    return splits


def open_eval_data(data: DataConfig):
    """The split that ``evaluate``/``ensemble`` score (``data.eval_split`` or ``data.eval_cache``), and its
    vocabulary; an empty or unlabelled split is refused (scoring needs labels)."""
    split, vocabulary = run_data.open_eval_split(data)
    check_labelled(split, "evaluation", _eval_setting(data))
    return split, vocabulary


def open_predict_data(data: DataConfig):
    """The split ``predict`` runs on (``data.eval_split`` or ``data.eval_cache``) and its vocabulary: labels
    are not needed, so SuperGLUE's and GLUE's unlabelled test splits are the main use."""
    return run_data.open_eval_split(data)


def _eval_setting(data: DataConfig) -> str:
    return "DataConfig.eval_cache" if data.eval_cache else "EVAL_SPLIT"


def model_architecture(source: FrozenModel) -> Optional[T5Config]:
    """The frozen model's config without reading its weights (a Hugging Face folder's config.json, else the
    gin-built config), for checks that must come before any data is written; None when unknown."""
    config = model_config_for(source)
    if config is not None or not source.checkpoint:
        return config
    from xprompt_jax.t5_import import huggingface, resolve_checkpoint
    folder, kind = resolve_checkpoint(source.checkpoint)
    if kind != "huggingface":
        return None
    return huggingface.config_from_hf(huggingface.read_config(folder), folder)


def check_spec(spec: PromptSpecBase, config: T5Config, input_length: Optional[int] = None) -> None:
    """Every check of ``spec`` against the model's width and the input length, without building weights:
    run before the data caches are written, so a bad prompt setting costs nothing."""
    check_prompt_fits(spec.length, None, config, input_length)
    spec.build_module(config.emb_dim, lambda rng, shape: None)


# ------------------------------------------------------------------------------------------------
# Prompted models
# ------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class SavedPrompt:
    """An m x e float32 prompt and where it was read from (the file, for messages and records)."""
    values: np.ndarray
    where: str

    @property
    def shape(self) -> Tuple[int, int]:
        return int(self.values.shape[0]), int(self.values.shape[1])


def read_saved_prompt(path: str) -> SavedPrompt:
    """A prompt from a ``.npy``, a PEFT adapter folder or a run's ``MODEL_DIR``; bad files are one line."""
    values, where = export.load_prompt_source(path)
    return SavedPrompt(np.asarray(values, np.float32), where)


def prompted_model(config: T5Config, spec: Optional[PromptSpecBase], frozen,
                   splits: Optional[run_data.RunData] = None) -> PromptedT5:
    """The model a run trains: ``spec``'s prompt in front of the frozen T5, or plain T5 when ``spec`` is None
    (full fine-tuning, pre-training, the demo's no-prompt baseline). With ``splits``, class-label
    initialisation reads the task's labels and the prompt is checked against the cached input length."""
    if spec is None:
        return PromptedT5(config, None)
    if splits is None:
        return build_prompted_t5(config, spec, frozen)
    return build_prompted_t5(config, spec, frozen, label_token_ids(splits.vocabulary, splits.train),
                             input_length=splits.cached_input_length, vocab_pieces=splits.vocabulary.piece_count)


def prompted_from_saved(config: T5Config, saved: SavedPrompt, combine: str = "prefix",
                        input_length: Optional[int] = None):
    """``(PromptedT5, trainable, masks)`` scoring a saved prompt: the spec of ``init='file'``, built from the
    values already read (the file is not read twice), after the one width/length check."""
    length, width = saved.shape
    check_prompt_fits(length, width, config, input_length, where=f"the prompt in {saved.where}")
    spec = make_spec(length=length, pieces=1, init="file", init_file=saved.where, combine=combine)
    model = PromptedT5(config, spec.build_module(config.emb_dim, initializers.from_array(saved.values, saved.where)),
                       spec.combine)
    trainable, masks = model.init(jax.random.PRNGKey(0))
    return model, trainable, masks


def prompted_or_alone(config: T5Config, saved: Optional[SavedPrompt], frozen, combine: str = "prefix",
                      input_length: Optional[int] = None):
    """``prompted_from_saved``, or with ``saved`` None the model alone (a fine-tuned model scored as it is):
    ``(PromptedT5, trainable, masks)`` either way."""
    if saved is None:
        model = prompted_model(config, None, frozen)
        return (model, *model.init(None))
    return prompted_from_saved(config, saved, combine, input_length)


# ------------------------------------------------------------------------------------------------
# Evaluation
# ------------------------------------------------------------------------------------------------
def evaluator_for(model: PromptedT5, split, vocabulary, data: DataConfig, evaluation: EvalConfig, mesh=None,
                  kind: Callable[..., Evaluator] = Evaluator) -> Evaluator:
    """An evaluator of ``split``: the evaluation batch size (else the run's), its length buckets and mesh."""
    return kind(model, split, vocabulary, evaluation.batch_size or data.batch_size, evaluation.mode, mesh=mesh,
                buckets=run_data.buckets_for(data, split), beam=(evaluation.beam_size, evaluation.beam_alpha))


# ------------------------------------------------------------------------------------------------
# The compiled step (T5X's trainer object: state, shardings and the jitted step together)
# ------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class CompiledStep:
    """The jitted, sharded train step ``(state, frozen, batch) -> (state, metrics)`` and where things live.

    ``compile_ahead`` compiles the program of a batch shape in a background thread before the first batch
    of that shape arrives (each length bucket is its own program); ``__call__`` then runs that executable,
    and otherwise the jitted step, which compiles on first use as usual."""
    step: Callable
    shardings: train_step.Shardings
    _ahead: dict = dataclasses.field(default_factory=dict, repr=False)
    _compiler: Any = dataclasses.field(default=None, repr=False)

    @property
    def mesh(self):
        return self.shardings.mesh

    def place_state(self, state):
        return jax.device_put(state, self.shardings.state)

    def place_frozen(self, frozen):
        return jax.device_put(frozen, self.shardings.frozen)

    def __call__(self, state, frozen, batch):
        future = self._ahead.get(_shape_key(batch))
        if future is not None:
            return future.result()(state, frozen, batch)  # waits if that compilation is still running
        return self.step(state, frozen, batch)

    def compile_ahead(self, state, frozen, batch) -> None:
        """Start compiling the program for these arguments' shapes (arrays or ``jax.ShapeDtypeStruct`` with
        shardings) in a background thread, once per batch shape. XLA compiles off the main thread: on a GPU
        or TPU host the CPU is otherwise idle during steps, so the compilation is hidden behind them."""
        key = _shape_key(batch)
        if key in self._ahead:
            return
        if self._compiler is None:
            self._compiler = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="compile_ahead")
        args = jax.tree.map(_abstract, (state, frozen, batch))
        self._ahead[key] = self._compiler.submit(lambda: self.step.lower(*args).compile())

    def close(self) -> None:
        if self._compiler is not None:
            self._compiler.shutdown(wait=True, cancel_futures=True)

    def lower(self, state, frozen, batch):
        """The step lowered for these arguments (``.compile()`` it to time compilation ahead of time)."""
        return self.step.lower(state, frozen, batch)


def _shape_key(batch) -> tuple:
    return tuple(sorted((name, tuple(value.shape)) for name, value in batch.items()))


def _abstract(x):
    return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None))


def compile_step(model: PromptedT5, optimizer, state, mesh, *, z_loss: float = 1e-4, accumulation_steps: int = 1,
                 dropout: bool = False, learning_rate_fn=None, donate: bool = True) -> CompiledStep:
    """Shardings of ``state`` (or its shapes) and the frozen tree on ``mesh``, and the step jitted with them
    (``donate``: the state's buffers are reused for the new state, as a run wants)."""
    shapes = jax.eval_shape(lambda: state)
    shardings = train_step.make_shardings(model, optimizer, shapes, mesh, logical_axes(model.config))
    step = train_step.make_train_step(model, optimizer, z_loss, accumulation_steps, dropout, learning_rate_fn)
    return CompiledStep(train_step.jit_train_step(step, shardings, donate=donate), shardings)


def random_frozen(config: T5Config, mesh):
    """Random T5 weights created directly in their shardings on ``mesh`` (benchmarks at any size: no host copy)."""
    from xprompt_jax.models.t5 import init_params
    shardings = partitioning.logical_to_sharding(logical_axes(config), mesh)
    return jax.jit(lambda: init_params(config), out_shardings=shardings)()


def make_mesh(mesh_config, batch_size: Optional[int] = None):
    """The (data, model) mesh of ``MeshConfig``; ``batch_size`` is checked to divide its data axis."""
    mesh = partitioning.make_mesh(mesh_config.data, mesh_config.model)
    if batch_size is not None:
        partitioning.check_divisible(batch_size, mesh)
    return mesh
