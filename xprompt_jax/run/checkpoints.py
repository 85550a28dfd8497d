"""Orbax checkpoints of a run under ``MODEL_DIR``: resumable state and the best prompt so far.

``MODEL_DIR/checkpoints/<step>/`` holds the ``TrainState`` (trainable params, optimiser state, masks,
step, RNG) and the data position as JSON; orbax writes each into a temporary folder and renames it
when complete, so a run killed mid-save (or stopped by a full disk) leaves the previous checkpoint
intact, and the temporary folders it left are removed when the run restarts (``cleanup_tmp_directories``).
``MODEL_DIR/best/<step>/`` keeps only the best evaluation's trainable params and masks with its metrics. The frozen T5 is never
written: it is re-read from its own checkpoint on restart.
"""
from __future__ import annotations

import logging
from typing import Optional, Tuple

import jax
import orbax.checkpoint as ocp

from xprompt_jax.errors import CheckpointError

logging.getLogger("absl").setLevel(logging.WARNING)
logger = logging.getLogger(__name__)


def _abstract(tree, shardings=None):
    if shardings is None:
        return jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree, shardings)


class RunCheckpoints:
    """Periodic, resumable checkpoints (the newest ``keep`` are kept)."""

    def __init__(self, model_dir: str, keep: int = 3):
        self.directory = f"{model_dir.rstrip('/')}/checkpoints"
        self.manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True, cleanup_tmp_directories=True))

    def latest_step(self) -> Optional[int]:
        return self.manager.latest_step()

    def save(self, step: int, state, data_position: dict):
        self.manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                        data=ocp.args.JsonSave(data_position)), force=True)

    def restore(self, template_state, shardings=None, step: Optional[int] = None) -> Tuple[object, dict]:
        """The state and data position of ``step``, or of the newest intact checkpoint.

        A checkpoint damaged after orbax finished it (a disk filled up, a file truncated or deleted by
        hand) is skipped with a warning naming it, and the next older one is used; the run then redoes
        the steps in between. None intact is a CheckpointError that says how to start afresh.
        """
        steps = [step] if step is not None else sorted(self.manager.all_steps(), reverse=True)
        for candidate in steps:
            try:
                restored = self.manager.restore(candidate, args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(_abstract(template_state, shardings)),
                    data=ocp.args.JsonRestore()))
            except Exception as err:  # orbax and tensorstore raise many kinds; none may reach the user raw
                first_line = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
                logger.warning(f"[train] checkpoint {self.directory}/{candidate} is damaged ({first_line}); "
                               "trying the next older one")
                continue
            return restored.state, restored.data
        raise CheckpointError(f"no intact checkpoint under {self.directory} (tried steps {steps}); move "
                              "the folder away (or delete it) to start this run afresh")

    def wait(self):
        self.manager.wait_until_finished()

    def close(self):
        self.manager.close()


class BestCheckpoint:
    """The trainable params and masks of the best evaluation by ``metric`` (higher is better)."""

    def __init__(self, model_dir: str, metric: str):
        self.metric = metric
        self.directory = f"{model_dir.rstrip('/')}/best"
        self.manager = ocp.CheckpointManager(self.directory, options=ocp.CheckpointManagerOptions(
            max_to_keep=1, create=True, cleanup_tmp_directories=True, best_fn=lambda m: m[metric], best_mode="max",
            keep_checkpoints_without_metrics=False))

    def best(self) -> Optional[Tuple[int, dict]]:
        step = self.manager.best_step()
        if step is None:
            return None
        return step, self.manager.restore(step, args=ocp.args.Composite(metrics=ocp.args.JsonRestore())).metrics

    def save(self, step: int, trainable, masks, metrics: dict):
        self.manager.save(step, args=ocp.args.Composite(
            params=ocp.args.StandardSave({"trainable": trainable, "masks": masks}),
            metrics=ocp.args.JsonSave(metrics)), metrics=metrics, force=True)
        if jax.process_count() > 1:
            # orbax names its cross-process commit barrier after the step: the run checkpoint of the same
            # step, saved right after, must not start its barrier while this one is open.
            self.manager.wait_until_finished()

    def drop_after(self, step: int) -> None:
        """Delete best checkpoints written after ``step``: a run resumed from ``step`` evaluates them again."""
        for saved in self.manager.all_steps():
            if saved > step:
                logger.info(f"[train] {self.directory}/{saved} is after the resumed step {step}: removed")
                self.manager.delete(saved)

    def restore(self, template=None, step: Optional[int] = None):
        """``({'trainable', 'masks'}, metrics)`` of the best (or a given) step."""
        step = self.manager.best_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no best checkpoint under {self.directory}")
        params_arg = (ocp.args.StandardRestore(_abstract(template)) if template is not None
                      else ocp.args.StandardRestore())
        restored = self.manager.restore(step, args=ocp.args.Composite(params=params_arg,
                                                                      metrics=ocp.args.JsonRestore()))
        return restored.params, restored.metrics

    def restore_intact(self, template=None):
        """``restore`` of the best step, or None with a warning naming it when it is damaged (truncated array
        files, a full disk): the caller falls back, as for damaged run checkpoints."""
        try:
            return self.restore(template)
        except FileNotFoundError:
            return None
        except Exception as err:  # orbax and tensorstore raise many kinds; none may reach the user raw
            first_line = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
            logger.warning(f"[train] the best checkpoint {self.directory}/{self.manager.best_step()} is damaged "
                           f"({first_line})")
            return None

    def wait(self):
        self.manager.wait_until_finished()

    def close(self):
        self.manager.close()
