"""The Flax T5: T5X's parameter tree, logical axes, sizes, prompt entry, dtypes, remat and decoding."""
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import serialization, traverse_util

from xprompt_jax.models.config import T5Config, t5_config
from xprompt_jax.models.decoding import (
    greedy_decode,
    score_targets,
    shift_right,
    token_log_likelihoods,
)
from xprompt_jax.models.t5 import T5, init_params, logical_axes, param_shapes

KNOWN_AXES = {"vocab", "embed", "mlp", "joined_kv", "heads", "relpos_buckets"}


def _batch(vocab=100, seed=0):
    rng = np.random.RandomState(seed)
    inputs = rng.randint(2, vocab, size=(3, 12)).astype(np.int32)
    inputs[1, 7:] = 0
    inputs[2, 3:] = 0
    inputs[np.arange(3), [11, 6, 2]] = 1
    targets = rng.randint(2, vocab, size=(3, 5)).astype(np.int32)
    targets[1, 3:] = 0
    return inputs, targets


def _prefixed_logits(model, params, inputs, decoder_inputs, prefix, prefix_mask=None):
    """Logits with ``prefix`` rows written in front of the token embeddings, through T5's one prompt door."""
    batch = inputs.shape[0]
    embedded = model.apply({"params": params}, inputs, method=T5.embed)
    prefix = jnp.broadcast_to(prefix, (batch,) + prefix.shape[-2:])
    prefix_mask = jnp.ones(prefix.shape[:2], bool) if prefix_mask is None else jnp.broadcast_to(
        prefix_mask, prefix.shape[:2])
    mask = jnp.concatenate([prefix_mask, inputs > 0], axis=1)
    encoded = model.apply({"params": params}, jnp.concatenate([prefix, embedded], axis=1), mask,
                          method=T5.encode_embedded)
    return model.apply({"params": params}, encoded, mask, decoder_inputs, method=T5.decode)


def test_parameter_names_equal_a_real_t5x_checkpoint(t5x_tiny_dir):
    """Our tree, built from the config alone, has exactly the names and shapes T5X wrote."""
    state = serialization.msgpack_restore((t5x_tiny_dir / "checkpoint").read_bytes())
    flat = traverse_util.flatten_dict(state["optimizer"]["target"], sep="/",
                                      is_leaf=lambda _, v: isinstance(v, dict) and "driver" in v)
    t5x_shapes = {k: tuple(v["metadata"]["shape"]) if isinstance(v, dict) else v.shape for k, v in flat.items()}
    ours = traverse_util.flatten_dict(param_shapes(t5_config("t5_1_1_prompt_tuning_test")), sep="/")
    assert {k: tuple(v.shape) for k, v in ours.items()} == t5x_shapes


def test_t5_1_0_tree_is_tied_with_single_wi():
    names = set(traverse_util.flatten_dict(param_shapes(t5_config("t5_1_0_tiny")), sep="/"))
    assert "decoder/logits_dense/kernel" not in names
    assert "encoder/layers_0/mlp/wi/kernel" in names and "encoder/layers_0/mlp/wi_0/kernel" not in names
    assert "encoder/relpos_bias/rel_embedding" in names and "decoder/relpos_bias/rel_embedding" in names


@pytest.mark.parametrize("name", ["t5_1_1_tiny", "t5_1_0_tiny", "t5_1_1_base"])
def test_every_parameter_has_logical_axes(name):
    cfg = t5_config(name)
    shapes = traverse_util.flatten_dict(param_shapes(cfg), sep="/")
    axes = traverse_util.flatten_dict(logical_axes(cfg), sep="/")
    assert shapes.keys() == axes.keys()
    for key, spec in axes.items():
        assert len(spec) == len(shapes[key].shape), key
        assert set(spec) <= KNOWN_AXES, (key, spec)
    assert tuple(axes["token_embedder/embedding"]) == ("vocab", "embed")
    assert tuple(axes["encoder/layers_0/mlp/wo/kernel"]) == ("mlp", "embed")


@pytest.mark.parametrize("name,hf_kwargs", [
    ("t5_1_1_small", dict(d_model=512, d_kv=64, d_ff=1024, num_layers=8, num_heads=6,
                          feed_forward_proj="gated-gelu", tie_word_embeddings=False)),
    ("t5_1_1_base", dict(d_model=768, d_kv=64, d_ff=2048, num_layers=12, num_heads=12,
                         feed_forward_proj="gated-gelu", tie_word_embeddings=False)),
    ("t5_1_1_large", dict(d_model=1024, d_kv=64, d_ff=2816, num_layers=24, num_heads=16,
                          feed_forward_proj="gated-gelu", tie_word_embeddings=False)),
    ("t5_1_1_xl", dict(d_model=2048, d_kv=64, d_ff=5120, num_layers=24, num_heads=32,
                       feed_forward_proj="gated-gelu", tie_word_embeddings=False)),
    ("t5_1_1_xxl", dict(d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
                        feed_forward_proj="gated-gelu", tie_word_embeddings=False)),
    ("t5_1_0_small", dict(d_model=512, d_kv=64, d_ff=2048, num_layers=6, num_heads=8)),
    ("t5_1_0_base", dict(d_model=768, d_kv=64, d_ff=3072, num_layers=12, num_heads=12)),
    ("t5_1_0_large", dict(d_model=1024, d_kv=64, d_ff=4096, num_layers=24, num_heads=16)),
    ("t5_1_0_3B", dict(d_model=1024, d_kv=128, d_ff=16384, num_layers=24, num_heads=32)),
])
def test_named_sizes_have_pytorch_parameter_counts(name, hf_kwargs):
    """Counts against transformers' own T5 built on the meta device (no memory used)."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    with torch.device("meta"):
        hf = transformers.T5ForConditionalGeneration(transformers.T5Config(vocab_size=32128, **hf_kwargs))
    hf_count = sum(p.numel() for p in hf.parameters())  # shared once even when lm_head is tied
    if hf_kwargs.get("tie_word_embeddings") is False:
        # transformers 5 ties lm_head to `shared` in a fresh model; T5 1.1 checkpoints carry their own.
        hf_count += 32128 * hf_kwargs["d_model"] * (hf.lm_head.weight is hf.shared.weight)
    ours = sum(math.prod(x.shape) for x in jax.tree_util.tree_leaves(param_shapes(t5_config(name))))
    assert ours == hf_count


def test_bare_size_means_t5_1_1_and_unknown_size_lists_known():
    assert t5_config("large") == t5_config("t5_1_1_large")
    with pytest.raises(ValueError, match="t5_1_1_base"):
        t5_config("huge")


@pytest.mark.parametrize("name", ["t5_1_1_tiny", "t5_1_0_tiny"])
def test_prefix_embeddings_equal_prepended_tokens(name):
    """A prompt made of embedding rows must act exactly like those tokens typed in front."""
    cfg = t5_config(name)
    params = init_params(cfg, jax.random.PRNGKey(1))
    model = T5(cfg)
    inputs, targets = _batch()
    prefix_ids = np.array([17, 23, 5, 42], np.int32)
    prefix = params["token_embedder"]["embedding"][prefix_ids]
    with_prompt = _prefixed_logits(model, params, inputs, shift_right(targets), prefix)
    typed = np.concatenate([np.broadcast_to(prefix_ids, (3, 4)), inputs], axis=1)
    with_tokens = model.apply({"params": params}, typed, shift_right(targets))
    np.testing.assert_allclose(with_prompt, with_tokens, rtol=1e-5, atol=1e-5)


def test_masked_prefix_rows_are_invisible():
    cfg = t5_config("t5_1_1_tiny")
    params = init_params(cfg, jax.random.PRNGKey(2))
    model = T5(cfg)
    inputs, targets = _batch()
    prefix = jax.random.normal(jax.random.PRNGKey(3), (3, cfg.emb_dim))
    masked = _prefixed_logits(model, params, inputs, shift_right(targets), prefix, jnp.array([True, False, True]))
    other = prefix.at[1].set(100.0)
    masked_other = _prefixed_logits(model, params, inputs, shift_right(targets), other,
                                    jnp.array([True, False, True]))
    np.testing.assert_allclose(masked, masked_other, rtol=1e-6, atol=1e-6)


def test_encoder_padding_does_not_change_real_positions():
    cfg = t5_config("t5_1_1_tiny")
    params = init_params(cfg, jax.random.PRNGKey(4))
    model = T5(cfg)
    inputs, targets = _batch()
    padded = np.pad(inputs, ((0, 0), (0, 9)))
    a = model.apply({"params": params}, inputs, shift_right(targets))
    b = model.apply({"params": params}, padded, shift_right(targets))
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_bfloat16_activations_and_weights():
    cfg = t5_config("t5_1_1_tiny")
    params = init_params(cfg, jax.random.PRNGKey(5))
    inputs, targets = _batch()
    ref = T5(cfg).apply({"params": params}, inputs, shift_right(targets))
    bf_cfg = cfg.replace(dtype="bfloat16", param_dtype="bfloat16")
    bf_params = jax.tree_util.tree_map(lambda x: x.astype(jnp.bfloat16), params)
    out = T5(bf_cfg).apply({"params": bf_params}, inputs, shift_right(targets))
    assert out.dtype == jnp.float32  # logits stay float32 for the loss
    assert bool(jnp.all(jnp.isfinite(out)))
    assert float(jnp.mean(jnp.abs(out - ref))) < 0.05 * float(jnp.mean(jnp.abs(ref)))
    # bfloat16 activations over float32 weights: the other supported combination.
    mixed = T5(cfg.replace(dtype="bfloat16")).apply({"params": params}, inputs, shift_right(targets))
    assert float(jnp.mean(jnp.abs(mixed - ref))) < 0.05 * float(jnp.mean(jnp.abs(ref)))


@pytest.mark.parametrize("policy", ["full", "minimal"])
def test_remat_changes_nothing_but_memory(policy):
    cfg = t5_config("t5_1_1_tiny")
    params = init_params(cfg, jax.random.PRNGKey(6))
    inputs, targets = _batch()
    prefix = jax.random.normal(jax.random.PRNGKey(7), (2, cfg.emb_dim))

    def loss(prompt, config):
        logits = _prefixed_logits(T5(config), params, inputs, shift_right(targets), prompt)
        return -token_log_likelihoods(logits, targets).sum()

    value, grad = jax.jit(jax.value_and_grad(loss), static_argnums=1)(prefix, cfg)
    value_r, grad_r = jax.jit(jax.value_and_grad(loss), static_argnums=1)(prefix, cfg.replace(remat=policy))
    np.testing.assert_allclose(value_r, value, rtol=1e-5)
    np.testing.assert_allclose(grad_r, grad, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name,remat", [("t5_1_1_tiny", "none"), ("t5_1_0_tiny", "none"), ("t5_1_1_tiny", "full")])
def test_cached_greedy_decode_equals_uncached_argmax(name, remat):
    """Decoding with the cache must equal re-running the full decoder for every prefix."""
    cfg = t5_config(name, remat=remat)
    params = init_params(cfg, jax.random.PRNGKey(8))
    model = T5(cfg)
    inputs, _ = _batch()
    steps = 6
    cached = np.asarray(jax.jit(lambda p, x: greedy_decode(model, p, x, steps, min_decode_length=steps))(params, inputs))
    tokens = np.zeros((3, 1), np.int32)
    full_decoder = jax.jit(lambda p, x, y: model.apply({"params": p}, x, y))  # compiled: eager costs more
    for _ in range(steps):
        logits = full_decoder(params, inputs, tokens)
        logits = logits[:, -1].at[:, 1].set(-jnp.inf)
        tokens = np.concatenate([tokens, np.asarray(jnp.argmax(logits, -1))[:, None]], axis=1)
    np.testing.assert_array_equal(cached, tokens[:, 1:])


def test_decode_stops_at_eos_then_pads():
    cfg = t5_config("t5_1_1_tiny")
    params = init_params(cfg, jax.random.PRNGKey(9))
    model = T5(cfg)
    inputs, _ = _batch()
    free = np.asarray(greedy_decode(model, params, inputs, 6, eos_id=-1))  # no EOS at all
    eos = int(free[0, 2])  # declare the token example 0 emits third to be EOS
    assert eos not in free[0, :2]
    out = np.asarray(greedy_decode(model, params, inputs, 6, min_decode_length=2, eos_id=eos))
    np.testing.assert_array_equal(out[0, :3], free[0, :3])
    assert (out[0, 3:] == 0).all()
    for row in out:
        hits = np.flatnonzero(row == eos)
        assert hits.size == 0 or (hits[0] >= 2 and (row[hits[0] + 1:] == 0).all())


def test_score_targets_is_sum_of_log_softmax():
    cfg = t5_config("t5_1_1_tiny")
    params = init_params(cfg, jax.random.PRNGKey(10))
    model = T5(cfg)
    inputs, targets = _batch()
    scores = np.asarray(score_targets(model, params, inputs, targets))
    logits = np.asarray(model.apply({"params": params}, inputs, shift_right(targets)), np.float64)
    logp = logits - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1, keepdims=True)) - logits.max(-1, keepdims=True)
    expected = [sum(logp[b, t, targets[b, t]] for t in range(targets.shape[1]) if targets[b, t] > 0) for b in range(3)]
    np.testing.assert_allclose(scores, expected, rtol=1e-5)


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="remat"):
        T5Config(remat="sometimes")
    with pytest.raises(ValueError, match="swish"):
        T5Config(mlp_activations=("swish",))
    with pytest.raises(ValueError, match="emb_dim"):
        cfg = t5_config("t5_1_1_tiny")
        T5(cfg).apply({"params": init_params(cfg)}, np.zeros((1, 3, cfg.emb_dim + 1), np.float32),
                      np.ones((1, 3), bool), method=T5.encode_embedded)
    json.dumps(t5_config("base").__dict__)  # a config is plain data (written beside runs later)
