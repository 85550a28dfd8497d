"""Hugging Face T5 folders through the importer, against PyTorch's T5 on the same weights.

Two sources of truth: the fixtures in ../shared (PyTorch logits, log-likelihoods and greedy decodes
stored beside the weights, so no PyTorch is needed), and, where torch and transformers are installed
(the [test] extra), freshly built random models saved with save_pretrained in both weight formats.

Relative error is ||ours - torch||_2 / ||torch||_2 over the batch's logits. In float64 the model equals
an independent NumPy T5 to 1e-9, so what remains in float32 is rounding: the 1.1 fixture's PyTorch
float32 logits are themselves 8.6e-4 (max abs) from the float64 truth.
"""
import json

import jax
import numpy as np
import pytest
from numpy_t5 import NumpyT5
from safetensors.numpy import load_file

from xprompt_jax.errors import CheckpointError
from xprompt_jax.models.decoding import greedy_decode, score_targets
from xprompt_jax.models.t5 import T5
from xprompt_jax.t5_import import load_t5_checkpoint


def _rel_err(ours, ref):
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    return np.linalg.norm(ours - ref) / np.linalg.norm(ref)


def test_fixture_logits_loglik_and_greedy_match_pytorch(hf_fixture_dir):
    config, params = load_t5_checkpoint(hf_fixture_dir)
    ref = np.load(hf_fixture_dir / "reference.npz")
    model = T5(config)
    logits = model.apply({"params": params}, ref["input_ids"], ref["decoder_input_ids"])
    assert _rel_err(logits, ref["logits"]) < 1e-4
    loglik = score_targets(model, params, ref["input_ids"], ref["targets"])
    np.testing.assert_allclose(loglik, ref["target_loglik"], rtol=1e-4)
    steps = ref["greedy_ids"].shape[1] - 1
    greedy = greedy_decode(model, params, ref["input_ids"], steps, min_decode_length=steps)
    np.testing.assert_array_equal(greedy, ref["greedy_ids"][:, 1:])


def test_fixture_config_follows_hf_defaults(hf_fixture_dir):
    config, params = load_t5_checkpoint(hf_fixture_dir)
    if hf_fixture_dir.name.endswith("v1_0_tiny"):
        assert config.mlp_activations == ("relu",) and config.logits_via_embedding and config.scale_logits
        assert "logits_dense" not in params["decoder"]
    else:
        assert config.mlp_activations == ("gelu", "linear") and not config.logits_via_embedding
        assert not config.scale_logits
        assert (config.num_encoder_layers, config.num_decoder_layers) == (3, 2)
        assert config.num_heads * config.head_dim != config.emb_dim


def test_float64_equals_independent_numpy_t5(hf_fixture_dir):
    """Exactness of every formula, free of float32 rounding: an independent NumPy T5 in float64."""
    jax.config.update("jax_enable_x64", True)
    try:
        config, params = load_t5_checkpoint(hf_fixture_dir, param_dtype="float64")
        config = config.replace(dtype="float64")
        ref = np.load(hf_fixture_dir / "reference.npz")
        ours = T5(config).apply({"params": params}, ref["input_ids"], ref["decoder_input_ids"])
        numpy_model = NumpyT5(load_file(hf_fixture_dir / "model.safetensors"),
                              json.loads((hf_fixture_dir / "config.json").read_text()))
        expected = numpy_model.logits(ref["input_ids"], ref["attention_mask"], ref["decoder_input_ids"])
        np.testing.assert_allclose(np.asarray(ours), expected, rtol=0, atol=1e-9)
    finally:
        jax.config.update("jax_enable_x64", False)


HF_CONFIGS = {
    "t5_1_0": dict(vocab_size=300, d_model=24, d_kv=8, d_ff=40, num_layers=2, num_heads=3,
                   relative_attention_num_buckets=8, relative_attention_max_distance=20),
    "t5_1_1": dict(vocab_size=300, d_model=24, d_kv=6, d_ff=40, num_layers=3, num_decoder_layers=2, num_heads=4,
                   feed_forward_proj="gated-gelu", tie_word_embeddings=False,
                   relative_attention_num_buckets=8, relative_attention_max_distance=20),
}


@pytest.mark.parametrize("variant", sorted(HF_CONFIGS))
@pytest.mark.parametrize("safe_serialization", [True, False], ids=["safetensors", "pytorch_bin"])
def test_random_pytorch_t5_saved_and_imported(tmp_path, variant, safe_serialization):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    hf = transformers.T5ForConditionalGeneration(transformers.T5Config(
        decoder_start_token_id=0, pad_token_id=0, eos_token_id=1, **HF_CONFIGS[variant])).eval()
    with torch.no_grad():  # give the untied head its own values, as real 1.1 checkpoints have
        if variant == "t5_1_1":
            hf.lm_head.weight = torch.nn.Parameter(torch.randn_like(hf.shared.weight) * 0.5)
        for p in hf.parameters():  # layer norms start at one: randomise them so a wrong mapping shows
            if p.ndim == 1:
                p.copy_(torch.rand_like(p) + 0.5)
    hf.save_pretrained(tmp_path)
    if not safe_serialization:
        # transformers 5 writes only safetensors; older releases (and most hub folders of the T5 era)
        # hold pytorch_model.bin, a pickled state dict, which is what this writes.
        (tmp_path / "model.safetensors").unlink()
        torch.save(hf.state_dict(), tmp_path / "pytorch_model.bin")

    rng = np.random.RandomState(0)
    ids = rng.randint(2, 300, size=(3, 17))
    ids[1, 9:] = 0
    ids[2, 4:] = 0
    ids[np.arange(3), [16, 8, 3]] = 1
    mask = (ids > 0).astype(np.int64)
    dec = rng.randint(2, 300, size=(3, 5))
    dec[:, 0] = 0
    with torch.no_grad():
        torch_logits = hf(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask),
                          decoder_input_ids=torch.tensor(dec)).logits.numpy()
        torch_greedy = hf.generate(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask),
                                   do_sample=False, num_beams=1, max_new_tokens=6, min_new_tokens=6).numpy()

    config, params = load_t5_checkpoint(tmp_path)
    assert config.logits_via_embedding == (variant == "t5_1_0")
    model = T5(config)
    ours = model.apply({"params": params}, ids, dec)
    assert _rel_err(ours, torch_logits) < 1e-4
    greedy = greedy_decode(model, params, ids, 6, min_decode_length=6)
    np.testing.assert_array_equal(greedy, torch_greedy[:, 1:])


def test_given_config_must_agree_with_config_json(hf_fixture_dir):
    config, _ = load_t5_checkpoint(hf_fixture_dir)
    runtime = config.replace(dtype="bfloat16", remat="full")
    merged, _ = load_t5_checkpoint(hf_fixture_dir, config=runtime)
    assert merged.dtype == "bfloat16" and merged.remat == "full"
    with pytest.raises(CheckpointError, match="emb_dim: checkpoint 16 vs config 32"):
        load_t5_checkpoint(hf_fixture_dir, config=config.replace(emb_dim=32))


FAMILY_FIXTURES = {  # folder -> (what its config.json must give, the reference logits' key)
    "hf_mt5_tiny": (dict(vocab_size=250112, mlp_activations=("gelu", "linear")), "logits_first_32128"),
    "hf_ul2_style_tiny": (dict(vocab_size=32128, mlp_activations=("silu", "linear")), "logits"),
    "hf_byt5_tiny": (dict(vocab_size=384, num_encoder_layers=3, num_decoder_layers=1), "logits"),
}


@pytest.mark.parametrize("name", sorted(FAMILY_FIXTURES))
def test_mt5_ul2_and_byt5_folders_match_pytorch(name):
    """mT5 (its logits checked on the first 32,128 of 250,112 columns, as stored), gated-SiLU UL2 and ByT5
    (bytes + 3, deep encoder, shallow decoder), to the tolerances of the T5 folders."""
    from helpers import shared_path
    folder = shared_path("fixtures", name)
    expected, logits_key = FAMILY_FIXTURES[name]
    config, params = load_t5_checkpoint(folder)
    assert {k: getattr(config, k) for k in expected} == expected
    ref = np.load(folder / "reference.npz")
    model = T5(config)
    logits = model.apply({"params": params}, ref["input_ids"], ref["decoder_input_ids"])
    assert _rel_err(np.asarray(logits)[..., :ref[logits_key].shape[-1]], ref[logits_key]) < 1e-4
    np.testing.assert_allclose(score_targets(model, params, ref["input_ids"], ref["targets"]), ref["target_loglik"],
                               rtol=1e-4)
    steps = ref["greedy_ids"].shape[1] - 1
    greedy = greedy_decode(model, params, ref["input_ids"], steps, min_decode_length=steps)
    np.testing.assert_array_equal(greedy, ref["greedy_ids"][:, 1:])


@pytest.mark.parametrize("hub,named", [("google/flan-t5-base", "flan_t5_base"), ("google/mt5-small", "mt5_small"),
                                       ("google/ul2", "ul2_20B"), ("google/byt5-xl", "byt5_xl")])
def test_hub_names_map_to_the_named_configs(hub, named):
    from xprompt_jax.models.config import NAMED_CONFIGS, t5_config
    assert t5_config(hub) == NAMED_CONFIGS[named]


def test_a_byt5_run_trains_and_evaluates_with_the_byte_vocabulary(tmp_path):
    """ByT5 end to end on the tiny byte fixture: caches tokenised as UTF-8 bytes + 3, a sampled-vocabulary
    prompt drawn from the 259 byte rows (not the 125 padding rows), training, rank-classification
    evaluation over the byte-encoded labels, and the export."""
    from helpers import shared_path, train, write_label_task

    from xprompt_jax.prompts import initializers
    from xprompt_jax.prompts.kinds import make_spec
    from xprompt_jax.vocabulary import load_vocabulary
    folder = str(shared_path("fixtures", "hf_byt5_tiny"))
    vocab = load_vocabulary("byte")
    assert vocab.decode(vocab.encode("café")) == "café" and vocab.encode("a", add_eos=False) == [ord("a") + 3]
    train_cache = write_label_task(tmp_path / "train", "byte", n=16)
    eval_cache = write_label_task(tmp_path / "eval", "byte", n=8, seed=1)
    result = train(model_dir=str(tmp_path / "run"), checkpoint=folder, train_cache=train_cache, eval_cache=eval_cache,
                   batch_size=8, train_steps=4, eval_period=2, checkpoint_period=4, mesh_data=1,
                   prompt_spec=make_spec(length=3, init="sampled_vocabulary", pieces=4))
    assert "accuracy" in result["best"] and np.isfinite(result["prompt"]).all()
    assert (tmp_path / "run" / "export" / "prompt.npy").exists()
    _, params = load_t5_checkpoint(folder)
    table = np.asarray(params["token_embedder"]["embedding"])
    drawn = np.asarray(initializers.sampled_vocabulary(table, 5000, vocab.piece_count)(jax.random.PRNGKey(0), (200, 16)))
    rows = {int(np.flatnonzero((table == row).all(1))[0]) for row in drawn}
    assert max(rows) < vocab.piece_count and min(rows) >= 3


def test_a_vocabulary_that_is_not_the_models_is_refused():
    """T5's 32k SentencePiece with mT5's 250,112 rows tokenises without error and means nothing."""
    from helpers import shared_path

    from xprompt_jax.errors import ConfigError
    from xprompt_jax.models.config import t5_config
    from xprompt_jax.run.frozen_model import check_vocabulary
    from xprompt_jax.vocabulary import load_vocabulary
    t5_vocab = load_vocabulary(str(shared_path("fixtures", "t5_sentencepiece.model")))
    check_vocabulary(t5_config("t5_1_1_base"), t5_vocab, "t5")
    check_vocabulary(t5_config("byt5_small"), load_vocabulary("byte"), "byt5")
    with pytest.raises(ConfigError, match="not the model's vocabulary"):
        check_vocabulary(t5_config("mt5_small"), t5_vocab, "mt5")
    with pytest.raises(ConfigError, match="embeds only 384"):
        check_vocabulary(t5_config("byt5_small"), t5_vocab, "byt5")
