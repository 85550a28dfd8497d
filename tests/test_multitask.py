"""Multi-task serving: a batch mixing three tasks, each example under its own task's prompt, predicts
exactly what per-task batches (each task alone, the ordinary PromptedT5 path) predict."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xprompt_jax import multitask
from xprompt_jax.errors import ConfigError
from xprompt_jax.prompted import build_prompted_t5
from xprompt_jax.prompts.kinds import make_spec
from xprompt_jax.run.evaluator import greedy_tokens, rank_scores

# Each task's label strings as token ids (EOS 1, padding 0): tasks of two and three labels, of different widths.
LABELS = [np.array([[3, 1], [4, 1]]), np.array([[5, 6, 1], [3, 1, 0], [7, 1, 0]]), np.array([[8, 1], [9, 1]])]


@pytest.fixture(scope="module")
def setup(fixture_model):
    config, frozen, _ = fixture_model
    rng = np.random.RandomState(0)
    prompts = [rng.normal(scale=3.0, size=(5, config.emb_dim)).astype(np.float32) for _ in LABELS]
    tokens = rng.randint(3, 200, (12, 9)).astype(np.int32)
    tokens[::4, 5:] = 0
    task_ids = np.array([0, 1, 2, 1, 0, 2, 2, 1, 0, 0, 1, 2], np.int32)
    return config, frozen, prompts, tokens, task_ids


def _alone(config, frozen, prompt):
    """The ordinary single-task model with this prompt as its (fixed) trainable value."""
    model = build_prompted_t5(config, make_spec(length=prompt.shape[0], init="uniform"), frozen)
    trainable, masks = model.init(jax.random.PRNGKey(0))
    leaves, tree = jax.tree.flatten(trainable)
    assert len(leaves) == 1 and leaves[0].shape == prompt.shape
    return model, jax.tree.unflatten(tree, [jnp.asarray(prompt)]), masks


def test_mixed_rank_predictions_equal_per_task_batches(setup):
    config, frozen, prompts, tokens, task_ids = setup
    model = multitask.MultiTaskPrompts(config, prompts)
    trainable, _ = model.init()
    table, valid = multitask.task_label_table(LABELS)
    assert table.shape == (3, 3, 3) and valid.sum() == 7
    mixed = np.asarray(jax.jit(lambda x, t: multitask.mixed_rank_predictions(model, trainable, frozen, x, t, table,
                                                                             valid))(tokens, task_ids)).tolist()
    alone = [None] * len(tokens)
    for task, prompt in enumerate(prompts):
        single, single_trainable, masks = _alone(config, frozen, prompt)
        rows = np.flatnonzero(task_ids == task)
        scores = jax.jit(lambda t, x, labels, m=single, k=masks: rank_scores(m, t, frozen, k, x, labels))(
            single_trainable, tokens[rows], jnp.asarray(LABELS[task]))
        for row, label in zip(rows, np.asarray(scores).argmax(-1)):
            alone[row] = int(label)
    assert mixed == alone
    assert len(set(mixed)) > 1  # not one constant answer


def test_mixed_greedy_decodes_equal_per_task_batches(setup):
    config, frozen, prompts, tokens, task_ids = setup
    model = multitask.MultiTaskPrompts(config, prompts)
    trainable, _ = model.init()
    mixed = np.asarray(jax.jit(lambda x, t: multitask.mixed_greedy_tokens(model, trainable, frozen, x, t, 5))(
        tokens, task_ids))
    for task, prompt in enumerate(prompts):
        single, single_trainable, masks = _alone(config, frozen, prompt)
        rows = np.flatnonzero(task_ids == task)
        alone = jax.jit(lambda t, x, m=single, k=masks: greedy_tokens(m, t, frozen, k, x, 5))(single_trainable,
                                                                                             tokens[rows])
        np.testing.assert_array_equal(mixed[rows], np.asarray(alone))
    assert len({tuple(r) for r in mixed}) > 1


def test_prompts_of_different_shapes_are_refused(fixture_model):
    config = fixture_model[0]
    with pytest.raises(ConfigError, match="share one"):
        multitask.MultiTaskPrompts(config, [np.zeros((5, config.emb_dim)), np.zeros((4, config.emb_dim))])
