"""Rank classification against an explicit per-label computation; exported prompts against PEFT."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xprompt_jax import export
from xprompt_jax.errors import ConfigError
from xprompt_jax.models.decoding import greedy_decode_encoded, shift_right, token_log_likelihoods
from xprompt_jax.models.t5 import T5
from xprompt_jax.prompted import build_prompted_t5
from xprompt_jax.prompts.kinds import make_spec
from xprompt_jax.run import evaluator as evaluation
from xprompt_jax.t5_import import load_t5_checkpoint


@pytest.fixture(scope="module")
def prompted():
    from helpers import shared_path
    config, frozen = load_t5_checkpoint(str(shared_path("fixtures", "hf_t5_v1_1_tiny")))
    model = build_prompted_t5(config, make_spec(length=3, init="uniform", pieces=4), frozen)
    trainable, masks = model.init(jax.random.PRNGKey(3))
    return config, frozen, model, trainable, masks


def _inputs():
    return np.array([[37, 5, 98, 21, 1, 0], [13, 9, 1, 0, 0, 0], [4, 5, 6, 7, 8, 1]], np.int32)


def _prefix_encode(t5, params, inputs, prompt):
    """The prompt's rows written in front of the token embeddings, by hand, and encoded."""
    embedded = t5.apply({"params": params}, inputs, method=T5.embed)
    combined = jnp.concatenate([jnp.broadcast_to(prompt, (inputs.shape[0],) + prompt.shape), embedded], axis=1)
    mask = jnp.concatenate([jnp.ones((inputs.shape[0], prompt.shape[0]), bool), inputs > 0], axis=1)
    return t5.apply({"params": params}, combined, mask, method=T5.encode_embedded), mask


def test_rank_classification_equals_per_label_log_likelihoods(prompted):
    config, frozen, model, trainable, masks = prompted
    labels = np.array([[10, 11, 1], [12, 1, 0], [13, 14, 1]], np.int32)
    inputs = _inputs()
    got = np.asarray(evaluation.rank_scores(model, trainable, frozen, masks, inputs, labels))
    prompt = model.prompt(trainable, masks)
    for c, label in enumerate(labels):
        targets = np.tile(label, (3, 1))
        encoded, mask = _prefix_encode(model.t5, frozen, inputs, prompt)
        logits = model.t5.apply({"params": frozen}, encoded, mask, shift_right(targets), method=T5.decode)
        explicit = token_log_likelihoods(logits, targets).sum(-1)
        np.testing.assert_allclose(got[:, c], np.asarray(explicit), rtol=1e-5, atol=1e-5)
    batches = [({"encoder_input_tokens": jnp.asarray(inputs)}, np.array([True, True, False]))]
    predicted = evaluation.predict_labels(model, trainable, frozen, masks, batches, labels)
    np.testing.assert_array_equal(predicted, got.argmax(-1)[:2])


def test_greedy_prediction_equals_prefix_decoding(prompted):
    config, frozen, model, trainable, masks = prompted
    inputs = _inputs()
    ours = np.asarray(evaluation.greedy_tokens(model, trainable, frozen, masks, inputs, 5))
    encoded, mask = _prefix_encode(model.t5, frozen, inputs, model.prompt(trainable, masks))
    reference = np.asarray(greedy_decode_encoded(model.t5, frozen, encoded, mask, 5))
    np.testing.assert_array_equal(ours, reference)


def test_peft_adapter_loads_in_peft_and_gives_our_logits(prompted, tmp_path):
    torch = pytest.importorskip("torch")
    peft = pytest.importorskip("peft")
    import transformers
    from helpers import shared_path
    config, frozen, model, trainable, masks = prompted
    prompt = np.asarray(model.prompt(trainable, masks))
    adapter = export.save_peft_adapter(str(tmp_path / "adapter"), prompt, "hf_t5_v1_1_tiny", config)
    np.testing.assert_array_equal(export.load_peft_adapter(adapter), prompt)

    base = transformers.T5ForConditionalGeneration.from_pretrained(str(shared_path("fixtures", "hf_t5_v1_1_tiny")))
    peft_model = peft.PeftModel.from_pretrained(base, adapter).eval()
    inputs = _inputs()
    targets = np.array([[10, 11, 1], [12, 1, 0], [13, 14, 1]], np.int64)
    decoder_inputs = np.pad(targets, ((0, 0), (1, 0)))[:, :-1]
    with torch.no_grad():
        theirs = peft_model(input_ids=torch.tensor(inputs, dtype=torch.long),
                            attention_mask=torch.tensor(inputs > 0, dtype=torch.long),
                            decoder_input_ids=torch.tensor(decoder_inputs)).logits.numpy()
    batch = {"encoder_input_tokens": inputs, "decoder_input_tokens": decoder_inputs.astype(np.int32)}
    ours = np.asarray(model.logits(trainable, frozen, masks, batch))
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-4)


def test_prompt_sources(tmp_path):
    values = np.arange(12, dtype=np.float32).reshape(3, 4)
    export.save_npy(str(tmp_path / "run" / "export" / "prompt.npy"), values)
    np.testing.assert_array_equal(export.load_prompt_source(str(tmp_path / "run"))[0], values)
    export.save_peft_adapter(str(tmp_path / "peft"), values)
    np.testing.assert_array_equal(export.load_prompt_source(str(tmp_path / "peft"))[0], values)
    with pytest.raises(ConfigError, match="no prompt at"):
        export.load_prompt_source(str(tmp_path / "nothing"))
