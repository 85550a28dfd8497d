"""Prompt initialisers, token/piece masks and placements, each against a NumPy computation."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xprompt_jax.errors import ConfigError
from xprompt_jax.prompts import combine, initializers, masks
from xprompt_jax.prompts.modules import Prompt


def _embedding(vocab=6000, width=8, seed=0):
    return np.random.RandomState(seed).normal(size=(vocab, width)).astype(np.float32)


def test_uniform_is_within_scale_and_float32():
    values = np.asarray(initializers.uniform(0.5)(jax.random.PRNGKey(0), (20, 16)))
    assert values.dtype == np.float32 and values.shape == (20, 16)
    assert values.min() >= -0.5 and values.max() <= 0.5 and values.std() > 0.2


def test_sampled_vocabulary_rows_are_distinct_common_embedding_rows():
    table = _embedding()
    values = np.asarray(initializers.sampled_vocabulary(table, population_size=50)(jax.random.PRNGKey(1), (20, 8)))
    rows = [int(np.where((table == v).all(axis=1))[0][0]) for v in values]
    assert all(initializers.FIRST_WORD_ID <= r < initializers.FIRST_WORD_ID + 50 for r in rows)
    assert len(set(rows)) == 20  # without replacement


def test_class_labels_rows_are_mean_label_embeddings_then_sampled():
    table = _embedding()
    labels = [[10, 11, 1], [12, 1]]  # EOS (1) excluded from the mean
    values = np.asarray(initializers.class_labels(table, labels)(jax.random.PRNGKey(2), (5, 8)))
    np.testing.assert_allclose(values[0], table[[10, 11]].mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(values[1], table[12], rtol=1e-6)
    for v in values[2:]:
        assert (table == v).all(axis=1).any()


def _file_initializer(path):
    """``PromptSpec.init='file'``'s initialiser (no embedding table needed): the one reader of saved prompts."""
    from xprompt_jax.prompted import make_initializer
    from xprompt_jax.prompts.kinds import make_spec
    return make_initializer(make_spec(init="file", init_file=str(path)), embedding=None)


def test_a_saved_npy_round_trips_and_a_wrong_shape_is_refused(tmp_path):
    saved = np.random.RandomState(0).normal(size=(5, 8)).astype(np.float32)
    np.save(tmp_path / "p.npy", saved)
    init = _file_initializer(tmp_path / "p.npy")
    np.testing.assert_array_equal(np.asarray(init(None, (5, 8))), saved)
    with pytest.raises(ConfigError, match=r"p.npy has shape \(5, 8\).*\(7, 8\)"):
        init(None, (7, 8))
    with pytest.raises(ConfigError, match="no prompt at .*missing.npy"):
        _file_initializer(tmp_path / "missing.npy")


def test_lester_fixture_prompt_loads(tmp_path):
    from helpers import shared_path
    path = shared_path("fixtures", "prompt_5x256.npy")
    values = np.asarray(_file_initializer(path)(None, (5, 256)))
    assert values.shape == (5, 256) and np.isfinite(values).all()


def test_dense_mask_matches_numpy_expansion():
    rng = np.random.RandomState(0)
    token = rng.randint(0, 2, size=(6,)).astype(np.float32)
    piece = rng.randint(0, 2, size=(6, 4)).astype(np.float32)
    expected = np.zeros((6, 12), np.float32)
    for i in range(6):
        for j in range(4):
            expected[i, 3 * j:3 * j + 3] = token[i] * piece[i, j]
    np.testing.assert_array_equal(np.asarray(masks.dense_mask(token, piece, 12)), expected)
    assert masks.surviving_parameters(token, piece, 12) == int(expected.sum())


def test_pieces_must_divide_width():
    with pytest.raises(ConfigError, match="k=5 must divide the prompt width e=12"):
        masks.check_pieces(12, 5)


def test_prompt_module_applies_per_example_masks():
    module = Prompt(length=3, width=8, pieces=4, init_fn=initializers.uniform(0.5))
    variables = jax.tree.map(np.asarray, __import__("flax").linen.unbox(module.init(jax.random.PRNGKey(0))))
    raw = variables["params"]["prompt"]
    np.testing.assert_array_equal(np.asarray(module.apply(variables)), raw)  # all-ones masks by default
    token = np.ones((2, 3), np.float32)
    token[1, 0] = 0
    piece = np.ones((2, 3, 4), np.float32)
    piece[0, 2, 1] = 0
    out = np.asarray(module.apply({"params": variables["params"], "masks": {"token_mask": token,
                                                                            "piece_mask": piece}}))
    assert out.shape == (2, 3, 8)
    np.testing.assert_array_equal(out[1, 0], 0)
    np.testing.assert_array_equal(out[0, 2, 2:4], 0)
    np.testing.assert_array_equal(out[0, 2, :2], raw[2, :2])
    np.testing.assert_array_equal(out[1, 1:], raw[1:])


def _numpy_insert(prompt, embedded, tokens, positions):
    out, mask = [], []
    for b in range(tokens.shape[0]):
        p = positions[b]
        out.append(np.concatenate([embedded[b, :p], prompt[b], embedded[b, p:]]))
        mask.append(np.concatenate([tokens[b, :p] > 0, np.ones(prompt.shape[1], bool), tokens[b, p:] > 0]))
    return np.stack(out), np.stack(mask)


@pytest.mark.parametrize("name", ["prefix", "after_first_token", "before_eos"])
def test_placements_match_numpy(name):
    rng = np.random.RandomState(0)
    tokens = np.array([[5, 6, 7, 1, 0, 0], [8, 1, 0, 0, 0, 0], [4, 5, 6, 7, 8, 1]], np.int32)
    embedded = rng.normal(size=(3, 6, 4)).astype(np.float32)
    prompt = rng.normal(size=(3, 2, 4)).astype(np.float32)
    positions = {"prefix": [0, 0, 0], "after_first_token": [1, 1, 1], "before_eos": [3, 1, 5]}[name]
    got, got_mask = combine.get_combine(name)(jnp.asarray(prompt), jnp.asarray(embedded), jnp.asarray(tokens))
    want, want_mask = _numpy_insert(prompt, embedded, tokens, positions)
    np.testing.assert_array_equal(np.asarray(got), want)
    np.testing.assert_array_equal(np.asarray(got_mask), want_mask)


def test_unknown_placement_lists_choices():
    with pytest.raises(ConfigError, match="after_first_token"):
        combine.get_combine("suffix")
