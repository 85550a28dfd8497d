"""Bucket programs compiled ahead: the window over the batches, and the step run from the early executable.

Each length bucket is its own XLA program. ``compiling_ahead`` reads training batches ahead and starts the
compilation of each new shape in a background thread (``CompiledStep.compile_ahead``); the batches and the
results must be exactly those of compiling on first use.
"""
import jax
import numpy as np
from helpers import random_batch

from xprompt_jax import assembly, partitioning, train_step
from xprompt_jax.compile_log import CompileLog
from xprompt_jax.optimizers import make_optimizer
from xprompt_jax.run.data import compiling_ahead


def _shaped(width, index):
    return {"encoder_input_tokens": np.full((2, width), index), "decoder_target_tokens": np.zeros((2, 4))}


def test_the_window_sees_a_new_shape_before_the_batch_is_needed():
    widths = [16, 16, 32, 16, 16, 64, 16]
    events = []
    stream = compiling_ahead((_shaped(w, i) for i, w in enumerate(widths)), 2,
                             lambda batch: events.append(("compile", batch["encoder_input_tokens"].shape[1])))
    out = []
    for batch in stream:
        out.append(int(batch["encoder_input_tokens"][0, 0]))
        events.append(("step", out[-1]))
    assert out == list(range(len(widths)))  # every batch, in order
    assert [e for e in events if e[0] == "compile"] == [("compile", 16), ("compile", 32), ("compile", 64)]
    # the 32-wide program starts two batches before the 32-wide batch (index 2) is stepped
    assert events.index(("compile", 32)) < events.index(("step", 0))
    assert events.index(("compile", 64)) < events.index(("step", 3))
    assert list(compiling_ahead(iter([_shaped(8, 0)]), 0, lambda b: None))[0]["encoder_input_tokens"].shape == (2, 8)


def test_a_step_compiled_ahead_equals_the_jitted_step(fixture_model):
    config, frozen, model = fixture_model
    mesh = partitioning.make_mesh(1, 1, devices=jax.devices()[:1])
    optimizer = make_optimizer("adafactor", learning_rate=0.3)
    state = train_step.create_state(model, optimizer, jax.random.PRNGKey(0))
    results = []
    for ahead in (False, True):
        step = assembly.compile_step(model, optimizer, state, mesh, donate=False)
        placed, frozen_placed = step.place_state(state), step.place_frozen(frozen)
        batch = random_batch(seed=3)
        batch["encoder_input_tokens"] = np.pad(batch["encoder_input_tokens"], ((0, 0), (0, 7)))  # a shape of its own
        if ahead:
            step.compile_ahead(placed, frozen_placed, partitioning.abstract_global_batch(batch, mesh))
            assert len(step._ahead) == 1
            step._ahead[next(iter(step._ahead))].result()  # compiled in the background thread
        with CompileLog() as log:
            new_state, metrics = step(placed, frozen_placed, partitioning.global_batch(batch, mesh))
        if ahead:
            assert log.durations == []  # the early executable ran: nothing compiled at the call
        results.append((jax.device_get(new_state.trainable), float(metrics["loss"])))
        step.close()
    (trainable_a, loss_a), (trainable_b, loss_b) = results
    assert loss_b == loss_a
    for a, b in zip(jax.tree.leaves(trainable_a), jax.tree.leaves(trainable_b)):
        np.testing.assert_array_equal(b, a)
