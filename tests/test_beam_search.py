"""Beam search: one beam is greedy decoding; every returned score is its sequence's teacher-forced
log-likelihood over the brevity penalty (which checks the cache reordering); more beams score at least as
well as greedy; scanned layers decode the same."""
import jax
import numpy as np
import pytest
from flax import traverse_util

from xprompt_jax.models.beam_search import beam_search_encoded, brevity_penalty
from xprompt_jax.models.config import t5_config
from xprompt_jax.models.decoding import EOS_ID, greedy_decode, score_targets
from xprompt_jax.models.scan_layout import stack_flat
from xprompt_jax.models.t5 import T5, init_params

INPUTS = np.array([[37, 5, 29, 1, 0, 0], [8, 11, 1, 0, 0, 0], [99, 98, 97, 96, 95, 1]], np.int32)
LENGTH = 5


@pytest.fixture(scope="module", params=["never_eos", "eos"])
def model(request):
    """Random tiny T5 weights, whose decoder never says EOS in 5 steps (every answer unfinished), and the same
    with EOS's output column made 0.995 of a column that often wins, so hypotheses finish after 1 to 3
    tokens and compete with unfinished ones."""
    config = t5_config("t5_1_1_tiny")
    params = init_params(config, jax.random.PRNGKey(7))
    if request.param == "eos":
        kernel = np.array(params["decoder"]["logits_dense"]["kernel"])
        kernel[:, EOS_ID] = 0.995 * kernel[:, 25994]
        params = {**params, "decoder": {**params["decoder"], "logits_dense": {"kernel": kernel}}}
    return config, params


def _beam(config, params, beam_size, alpha):
    t5 = T5(config)

    @jax.jit
    def run(p, x):
        encoded, mask = t5.apply({"params": p}, x, method=T5.encode)
        return beam_search_encoded(t5, p, encoded, mask, LENGTH, beam_size, alpha)
    return [np.asarray(a) for a in run(params, INPUTS)]


def _teacher_forced(config, params, tokens):
    """Each sequence's summed log-likelihood up to and including its EOS (or over all positions), and length."""
    lengths = np.array([list(row).index(EOS_ID) + 1 if EOS_ID in row else LENGTH for row in tokens])
    targets = np.where(np.arange(LENGTH)[None, :] < lengths[:, None], tokens, 0)
    return np.asarray(score_targets(T5(config), params, INPUTS, targets)), lengths


def test_one_beam_is_greedy(model):
    config, params = model
    tokens, _ = _beam(config, params, 1, 0.0)
    np.testing.assert_array_equal(tokens, np.asarray(greedy_decode(T5(config), params, INPUTS, LENGTH)))


@pytest.mark.parametrize("alpha", [0.0, 0.6])
def test_scores_are_the_sequences_log_likelihood_over_the_brevity_penalty(model, alpha):
    config, params = model
    tokens, scores = _beam(config, params, 4, alpha)
    summed, lengths = _teacher_forced(config, params, tokens)
    if (tokens == EOS_ID).any():
        assert len(set(lengths)) > 1  # finished at different lengths: the brevity penalty matters
    np.testing.assert_allclose(scores, summed / brevity_penalty(lengths.astype(float), alpha), rtol=1e-4, atol=1e-4)


def test_more_beams_score_at_least_greedy_and_scanned_layers_agree(model):
    config, params = model
    greedy = np.asarray(greedy_decode(T5(config), params, INPUTS, LENGTH))
    greedy_scores, _ = _teacher_forced(config, params, greedy)
    tokens, scores = _beam(config, params, 4, 0.0)
    assert np.all(scores >= greedy_scores - 1e-4)
    scanned = traverse_util.unflatten_dict(stack_flat(traverse_util.flatten_dict(params, sep="/")), sep="/")
    tokens_s, scores_s = _beam(config.replace(scan_layers=True), scanned, 4, 0.0)
    np.testing.assert_array_equal(tokens_s, tokens)
    np.testing.assert_allclose(scores_s, scores, rtol=1e-5)
