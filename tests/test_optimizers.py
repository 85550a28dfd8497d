"""Lester et al.'s Adafactor equals T5X's update rule (NumPy transcription), step by step."""
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from xprompt_jax.errors import ConfigError
from xprompt_jax.optimizers import learning_rate_schedule, make_optimizer


def t5x_adafactor_numpy(param, grads, lr=0.3, decay_exponent=0.8, weight_decay=1e-5, clip=1.0, eps1=1e-30):
    """T5X ``Adafactor.apply_param_gradient`` for an unfactored parameter, no momentum, no param scaling."""
    v = np.zeros_like(param, np.float64)
    p = param.astype(np.float64)
    for step, g in enumerate(grads):
        g = g.astype(np.float64)
        decay = 1.0 - (step + 1.0) ** (-decay_exponent)
        v = decay * v + (1.0 - decay) * (g * g + eps1)
        y = g / np.sqrt(v)
        y = y / max(1.0, np.sqrt(np.mean(y * y)) / clip)
        p = (1.0 - weight_decay) * p - lr * y
    return p


def test_adafactor_matches_t5x_rule():
    rng = np.random.RandomState(0)
    param = rng.normal(size=(5, 8)).astype(np.float32)
    grads = [rng.normal(size=(5, 8)).astype(np.float32) * s for s in (1.0, 0.1, 3.0, 0.01)]
    opt = make_optimizer("adafactor", learning_rate=0.3)
    state = opt.init(jnp.asarray(param))
    p = jnp.asarray(param)
    for g in grads:
        updates, state = opt.update(jnp.asarray(g), state, p)
        p = optax.apply_updates(p, updates)
    np.testing.assert_allclose(np.asarray(p), t5x_adafactor_numpy(param, grads), rtol=2e-5, atol=2e-6)


def test_adafactor_second_moment_is_not_factored():
    opt = make_optimizer("adafactor", learning_rate=0.3)
    state = opt.init({"prompt": jnp.zeros((200, 256))})
    v = state[0].v["prompt"]
    assert v.shape == (200, 256)  # a whole second moment, not row/column factors


def test_schedules_and_errors():
    assert float(learning_rate_schedule(0.3, "constant")(1000)) == pytest.approx(0.3)
    warm = learning_rate_schedule(1.0, "linear", warmup_steps=10, total_steps=110)
    assert float(warm(5)) == pytest.approx(0.5) and float(warm(60)) == pytest.approx(0.5)
    with pytest.raises(ConfigError, match="needs total_steps"):
        learning_rate_schedule(0.3, "cosine")
    with pytest.raises(ConfigError, match="adafactor"):
        make_optimizer("lamb")
