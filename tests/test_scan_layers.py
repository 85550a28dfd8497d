"""Scanned layers (``T5Config.scan_layers``): the same model as the unrolled one, and T5X's scanned checkpoints.

The unrolled model is the reference: it is the tree T5X writes and the one checked against Hugging Face's
PyTorch T5 elsewhere (tests/test_hf_import.py). The scanned model must give the same logits, the same
gradients to a prompt (what prompt tuning trains), the same decodes, and read checkpoints in flaxformer's
scanned spelling, whose axis order is taken from flaxformer's own test data below.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import serialization, traverse_util

from xprompt_jax.models import scan_layout
from xprompt_jax.models.config import t5_config
from xprompt_jax.models.decoding import greedy_decode
from xprompt_jax.models.t5 import T5, init_params, logical_axes
from xprompt_jax.t5_import import load_t5_checkpoint

FIXTURE_CONFIG = "t5_1_1_prompt_tuning_test"
TOKENS = np.array([[37, 5, 29, 1, 0, 0], [8, 11, 1, 0, 0, 0]], np.int32)
DECODER_INPUTS = np.array([[0, 3, 4], [0, 9, 1]], np.int32)

# flaxformer/architectures/t5/testdata/encoder_scanned_per_layer_relpos_bias.json: the logical axes of a
# scanned flaxformer encoder (scan_axis=1), under encoder/encoder/.
FLAXFORMER_SCANNED_AXES = {
    "attention/query/kernel": ("embed", "layers", "joined_kv"),
    "attention/out/kernel": ("joined_kv", "layers", "embed"),
    "mlp/wo/kernel": ("mlp", "layers", "embed"),
    "pre_attention_layer_norm/scale": ("embed", "layers"),
    "relpos_bias/rel_embedding": ("heads", "layers", "relpos_buckets"),
}


def _flat(tree):
    return traverse_util.flatten_dict(tree, sep="/")


def _scanned(params):
    return traverse_util.unflatten_dict(scan_layout.stack_flat(_flat(params)), sep="/")


def _prompt_loss(config, params, prompt):
    """What prompt tuning differentiates: a loss of the logits with the prompt rows before the inputs."""
    model = T5(config)
    embedded = model.apply({"params": params}, TOKENS, method=T5.embed)
    combined = jnp.concatenate([jnp.broadcast_to(prompt, (2,) + prompt.shape), embedded], axis=1)
    mask = jnp.concatenate([jnp.ones((2, prompt.shape[0]), bool), TOKENS > 0], axis=1)
    encoded = model.apply({"params": params}, combined, mask, method=T5.encode_embedded)
    logits = model.apply({"params": params}, encoded, mask, DECODER_INPUTS, method=T5.decode)
    return jnp.mean(jax.nn.log_softmax(logits)[..., 7])


@pytest.mark.parametrize("remat", ["none", "full"])
def test_scanned_model_equals_unrolled_logits_and_prompt_gradients(remat):
    config = t5_config("t5_1_1_tiny", remat=remat)
    params = init_params(config, jax.random.PRNGKey(3))
    scanned_config = config.replace(scan_layers=True)
    prompt = jax.random.normal(jax.random.PRNGKey(4), (3, config.emb_dim))
    scanned = _scanned(params)
    value, grad = jax.jit(jax.value_and_grad(lambda p: _prompt_loss(config, params, p)))(prompt)
    value_s, grad_s = jax.jit(jax.value_and_grad(lambda p: _prompt_loss(scanned_config, scanned, p)))(prompt)
    np.testing.assert_allclose(value_s, value, rtol=1e-5)
    np.testing.assert_allclose(grad_s, grad, rtol=1e-4, atol=1e-6)
    assert np.abs(np.asarray(grad)).max() > 1e-4  # the gradient compared is not all zeros


def test_scanned_tree_is_the_stacked_unrolled_tree_with_flaxformer_axes():
    config = t5_config("t5_1_1_tiny")
    scanned_config = config.replace(scan_layers=True)
    built = _flat(jax.eval_shape(lambda: init_params(scanned_config)))
    stacked = scan_layout.stack_flat(_flat(init_params(config)))
    assert {k: v.shape for k, v in built.items()} == {k: v.shape for k, v in stacked.items()}
    assert built["encoder/layers/attention/query/kernel"].shape == (32, 2, 32)  # [embed, layers, joined_kv]
    unrolled = scan_layout.unstack_flat(stacked)
    for name, value in _flat(init_params(config)).items():
        np.testing.assert_array_equal(unrolled[name], value)
    axes = _flat(logical_axes(scanned_config.replace(per_layer_relpos_bias=True)))
    for name, expected in FLAXFORMER_SCANNED_AXES.items():
        assert tuple(axes[f"encoder/layers/{name}"]) == expected, name


def test_scanned_decode_equals_unrolled_with_per_layer_tables():
    config = t5_config("t5_1_1_tiny", per_layer_relpos_bias=True)
    params = init_params(config, jax.random.PRNGKey(5))
    tables = [_flat(params)[f"decoder/layers_{i}/relpos_bias/rel_embedding"] for i in range(2)]
    assert not np.array_equal(tables[0], tables[1])  # each layer really has its own table
    decode = jax.jit(greedy_decode, static_argnums=(0, 3))
    unrolled = decode(T5(config), params, TOKENS, 5)
    scanned = decode(T5(config.replace(scan_layers=True)), _scanned(params), TOKENS, 5)
    np.testing.assert_array_equal(scanned, unrolled)


def _write_msgpack(flat, folder):
    folder.mkdir()
    target = traverse_util.unflatten_dict({k: np.asarray(v) for k, v in flat.items()}, sep="/")
    state = {"version": 3, "optimizer": {"target": target, "state": {"step": np.array(3)}}}
    (folder / "checkpoint").write_bytes(serialization.msgpack_serialize(state))


def _flaxformer_spelling(flat, per_layer_tables):
    """The real fixture as a scanned flaxformer model saves it: ``{stack}/{stack}/...`` stacked on axis 1,
    each shared relative-position table either repeated per layer or, with ``per_layer_tables``, made
    different in every layer."""
    out = {}
    for name, value in scan_layout.stack_flat(flat).items():
        stack = name.split("/")[0]
        if name == f"{stack}/relpos_bias/rel_embedding":
            layers = np.stack([value * (1.0 + 0.5 * i * per_layer_tables) for i in range(2)], axis=1)
            out[f"{stack}/{stack}/relpos_bias/rel_embedding"] = layers
        else:
            out[name.replace(f"{stack}/layers/", f"{stack}/{stack}/")] = value
    return out


@pytest.mark.parametrize("scan", [False, True])
def test_flaxformer_scanned_checkpoint_loads_into_either_layout(t5x_tiny_dir, tmp_path, scan):
    config, params = load_t5_checkpoint(t5x_tiny_dir, FIXTURE_CONFIG)
    reference = T5(config).apply({"params": params}, TOKENS, DECODER_INPUTS)
    _write_msgpack(_flaxformer_spelling(_flat(params), per_layer_tables=False), tmp_path / "scanned")
    wanted = t5_config(FIXTURE_CONFIG, scan_layers=scan)
    loaded_config, loaded = load_t5_checkpoint(tmp_path / "scanned", wanted)
    assert loaded_config.scan_layers is scan and not loaded_config.per_layer_relpos_bias
    assert ("encoder/layers/mlp/wo/kernel" in _flat(loaded)) is scan
    np.testing.assert_allclose(T5(loaded_config).apply({"params": loaded}, TOKENS, DECODER_INPUTS), reference,
                               rtol=1e-5, atol=1e-6)


def test_flaxformer_per_layer_tables_build_a_per_layer_model(t5x_tiny_dir, tmp_path):
    """Tables that differ per layer are a different architecture: the model gets one table per layer (and
    its size is still found from the shapes), and the unrolled and scanned readings agree."""
    _, params = load_t5_checkpoint(t5x_tiny_dir, FIXTURE_CONFIG)
    _write_msgpack(_flaxformer_spelling(_flat(params), per_layer_tables=True), tmp_path / "per_layer")
    config, unrolled = load_t5_checkpoint(tmp_path / "per_layer", guess_size=True)
    assert config.per_layer_relpos_bias and not config.scan_layers
    assert "encoder/layers_1/relpos_bias/rel_embedding" in _flat(unrolled)
    scanned_config, scanned = load_t5_checkpoint(tmp_path / "per_layer", t5_config(FIXTURE_CONFIG, scan_layers=True))
    logits = T5(config).apply({"params": unrolled}, TOKENS, DECODER_INPUTS)
    np.testing.assert_allclose(T5(scanned_config).apply({"params": scanned}, TOKENS, DECODER_INPUTS), logits,
                               rtol=1e-5, atol=1e-6)
    shared = T5(config.replace(per_layer_relpos_bias=False)).apply({"params": params}, TOKENS, DECODER_INPUTS)
    assert np.abs(np.asarray(logits) - np.asarray(shared)).max() > 1e-4  # the second layer's table is used
