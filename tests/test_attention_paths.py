"""The fused attention path (``jax.nn.dot_product_attention``: cuDNN flash attention on GPU, XLA's on the
CPU) against the explicit einsums: forward logits, gradients to the prompt, the three prompt placements,
padded inputs, the causal decoder and cached decoding. On the CPU the same call runs with
``implementation='xla'``; on a GPU ``'auto'`` picks cuDNN where it fits."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xprompt_jax.models.attention import resolve_implementation
from xprompt_jax.models.config import t5_config
from xprompt_jax.models.decoding import greedy_decode, shift_right
from xprompt_jax.models.t5 import init_params
from xprompt_jax.prompted import build_prompted_t5
from xprompt_jax.prompts.kinds import make_spec

CONFIG = t5_config("t5_1_1_tiny")


def _batch():
    rng = np.random.RandomState(0)
    inputs = rng.randint(3, 200, (3, 10)).astype(np.int32)
    inputs[0, 6:] = 0                       # padded rows: the valid keys are a prefix
    inputs[1, 8:] = 0
    inputs[np.arange(3), [5, 7, 9]] = 1
    targets = rng.randint(3, 200, (3, 4)).astype(np.int32)
    targets[:, -1] = 1
    return {"encoder_input_tokens": inputs, "decoder_input_tokens": np.asarray(shift_right(targets)),
            "decoder_target_tokens": targets, "decoder_loss_weights": (targets > 0).astype(np.int32)}


@pytest.mark.parametrize("combine", ["prefix", "after_first_token", "before_eos"])
def test_fused_attention_equals_the_explicit_path_forward_and_in_the_prompt_gradient(combine):
    params = init_params(CONFIG, jax.random.PRNGKey(1))
    batch = _batch()
    results = {}
    for implementation in (None, "xla"):
        config = CONFIG.replace(attention_implementation=implementation)
        model = build_prompted_t5(config, make_spec(length=3, init="uniform", combine=combine, pieces=1), params)
        trainable, masks = model.init(jax.random.PRNGKey(2))

        def loss(t, model=model, masks=masks):
            logits = model.logits(t, params, masks, batch)
            return jnp.sum(jax.nn.log_softmax(logits) * jax.nn.one_hot(batch["decoder_target_tokens"], logits.shape[-1]))
        value, grads = jax.jit(jax.value_and_grad(loss))(trainable)
        results[implementation] = (model.logits(trainable, params, masks, batch), value, grads)
    (logits_e, value_e, grads_e), (logits_f, value_f, grads_f) = results[None], results["xla"]
    np.testing.assert_allclose(np.asarray(logits_f), np.asarray(logits_e), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(float(value_f), float(value_e), rtol=1e-5)
    for g_f, g_e in zip(jax.tree.leaves(grads_f), jax.tree.leaves(grads_e)):
        np.testing.assert_allclose(np.asarray(g_f), np.asarray(g_e), rtol=1e-4, atol=1e-6)


def test_fused_attention_decodes_as_the_explicit_path():
    params = init_params(CONFIG, jax.random.PRNGKey(3))
    inputs = _batch()["encoder_input_tokens"]
    from xprompt_jax.models.t5 import T5
    explicit = greedy_decode(T5(CONFIG), params, inputs, 5)
    fused = greedy_decode(T5(CONFIG.replace(attention_implementation="xla")), params, inputs, 5)
    np.testing.assert_array_equal(np.asarray(fused), np.asarray(explicit))


def test_auto_picks_xla_off_the_gpu_and_the_config_refuses_unknown_names():
    q = jnp.zeros((1, 4, 2, 64), jnp.bfloat16)
    assert resolve_implementation("auto", q) == ("cudnn" if jax.default_backend() == "gpu" else "xla")
    assert resolve_implementation(None, q) is None
    with pytest.raises(ValueError, match="attention_implementation"):
        CONFIG.replace(attention_implementation="flash")
