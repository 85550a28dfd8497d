"""A step whose loss or update is not finite leaves the state as it was and says so (issue 15)."""
import jax
import numpy as np
from helpers import random_batch

from xprompt_jax import assembly, partitioning, train_step
from xprompt_jax.optimizers import make_optimizer


def _steps(model, config, frozen, learning_rate, steps=2):
    mesh = partitioning.make_mesh(1, 1, devices=jax.devices()[:1])
    opt = make_optimizer("adafactor", learning_rate=learning_rate)
    state = train_step.create_state(model, opt, jax.random.PRNGKey(0))
    step = assembly.compile_step(model, opt, state, mesh, donate=False)
    shardings = step.shardings
    states, flags = [jax.device_put(state, shardings.state)], []
    for i in range(steps):
        new, metrics = step(states[-1], jax.device_put(frozen, shardings.frozen),
                            partitioning.global_batch(random_batch(seed=i), mesh))
        states.append(new)
        flags.append(bool(metrics["finite"]))
    return states, flags


def test_an_overflowing_update_is_flagged_and_not_applied(fixture_model):
    config, frozen, model = fixture_model
    states, flags = _steps(model, config, frozen, learning_rate=1e39)  # lr * update overflows float32
    assert flags == [False, False]
    for state in states[1:]:
        for before, after in zip(jax.tree.leaves(states[0]), jax.tree.leaves(state)):
            np.testing.assert_array_equal(np.asarray(before), np.asarray(after))


def test_a_finite_step_is_flagged_finite_and_applied(fixture_model):
    config, frozen, model = fixture_model
    states, flags = _steps(model, config, frozen, learning_rate=0.3, steps=1)
    assert flags == [True]
    assert int(states[1].step) == 1
    assert not np.array_equal(np.asarray(states[0].trainable["prompt"]["prompt"]),
                              np.asarray(states[1].trainable["prompt"]["prompt"]))
