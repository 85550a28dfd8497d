"""XPrompt: importance scores against per-example gradients and finite differences, hierarchical pruning
that hits every ratio exactly and only ever removes entries, its ablations, and rewinding."""
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xprompt_jax import losses, partitioning, train_step
from xprompt_jax.errors import ConfigError
from xprompt_jax.prompts import masks as mask_lib
from xprompt_jax.xprompt import importance, pruning

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOKEN, PIECE = mask_lib.TOKEN_MASK, mask_lib.PIECE_MASK


def _kept(masks, width):
    """Prompt scalars ``masks`` keep."""
    return mask_lib.surviving_parameters(masks[TOKEN], masks[PIECE], width)


def _batch(n, seed, vocab=200):
    """A feature-converted batch of ``n`` different examples (padded inputs, 2-3 target tokens)."""
    rng = np.random.RandomState(seed)
    inputs = rng.randint(3, vocab, (n, 10)).astype(np.int32)
    inputs[:, -1] = 1
    inputs[::3, 6:] = 0
    targets = rng.randint(3, vocab, (n, 3)).astype(np.int32)
    targets[:, -1] = 1
    targets[1::2, -1] = 0
    targets[1::2, -2] = 1
    return {"encoder_input_tokens": inputs, "decoder_target_tokens": targets,
            "decoder_input_tokens": np.pad(targets, ((0, 0), (1, 0)))[:, :-1],
            "decoder_loss_weights": (targets > 0).astype(np.int32)}


def _rows(batch, rows):
    return {k: v[rows] for k, v in batch.items()}


def _masks(token_off=(), pieces_off=(), m=5, k=2):
    token, piece = np.ones(m, np.float32), np.ones((m, k), np.float32)
    token[list(token_off)] = 0
    for cell in pieces_off:
        piece[cell] = 0
    return {TOKEN: token, PIECE: piece}


@pytest.fixture(scope="module")
def tiny():
    """The T5X fixture (emb 4), a 5-token prompt in 2 pieces, moved off its init like a trained prompt."""
    from helpers import shared_path

    from xprompt_jax.prompted import build_prompted_t5
    from xprompt_jax.prompts.kinds import make_spec
    from xprompt_jax.t5_import import load_t5_checkpoint
    path = str(shared_path("fixtures", "t5x_t5_1_1_tiny", "checkpoint_3"))
    config, frozen = load_t5_checkpoint(path, "t5_1_1_prompt_tuning_test")
    model = build_prompted_t5(config, make_spec(length=5, pieces=2, init="uniform"), frozen)
    trainable, _ = model.init(jax.random.PRNGKey(0))
    trainable = jax.tree.map(lambda p: p + 0.3 * jax.random.normal(jax.random.PRNGKey(1), p.shape), trainable)
    return path, config, frozen, model, trainable


def _example_loss(model, trainable, frozen, masks, example):
    logits = model.logits(trainable, frozen, masks, example)
    return losses.per_example_loss(logits, example["decoder_target_tokens"], example["decoder_loss_weights"])[0]


# ------------------------------------------------------------------------------------------------
# Importance scores
# ------------------------------------------------------------------------------------------------
def test_scores_equal_a_loop_of_per_example_gradients(tiny):
    """Two batches of unequal size, masks already partly pruned: E_x |dL(x)/d mask| at those masks."""
    _, _, frozen, model, trainable = tiny
    masks = _masks(token_off=[3], pieces_off=[(0, 1)])
    batches = [_batch(4, seed=0), _batch(3, seed=1)]
    scores = importance.importance_scores(model, trainable, frozen, masks, [(b, None) for b in batches])

    grad_one = jax.jit(jax.grad(lambda m, ex: _example_loss(model, trainable, frozen, m, ex)))
    per_example = [grad_one({k: jnp.asarray(v) for k, v in masks.items()}, _rows(b, slice(i, i + 1)))
                   for b in batches for i in range(b["encoder_input_tokens"].shape[0])]
    expected_token = np.mean([np.abs(g[TOKEN]) for g in per_example], axis=0)
    expected_piece = np.mean([np.abs(g[PIECE]) for g in per_example], axis=0)
    assert scores["token"].shape == (5,) and scores["piece"].shape == (5, 2)
    np.testing.assert_allclose(scores["token"], expected_token, rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(scores["piece"], expected_piece, rtol=1e-5, atol=1e-9)
    # The absolute value is per example: the mean of signed gradients is different (and smaller).
    signed = np.abs(np.mean([g[TOKEN] for g in per_example], axis=0))
    assert (signed <= expected_token + 1e-9).all() and not np.allclose(signed, expected_token)
    # A pruned token's pieces cannot matter; the token itself keeps a score (the cost of its absence).
    np.testing.assert_array_equal(scores["piece"][3], 0)
    assert scores["token"][3] > 0


def test_padding_rows_and_examples_past_the_limit_do_not_count(tiny):
    _, _, frozen, model, trainable = tiny
    masks = _masks()
    real = _batch(4, seed=2)
    padded = {k: np.concatenate([v, _batch(2, seed=9)[k]]) for k, v in real.items()}
    valid = np.array([1, 1, 1, 1, 0, 0], bool)
    want = importance.importance_scores(model, trainable, frozen, masks, [(real, None)])
    got = importance.importance_scores(model, trainable, frozen, masks, [(padded, valid)])
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=1e-9)
    # max_examples=4 over [6 real] + [anything] sees exactly the first four rows.
    limited = importance.importance_scores(model, trainable, frozen, masks,
                                           [(padded, None), (_batch(4, seed=3), None)], max_examples=4)
    for name in want:
        np.testing.assert_allclose(limited[name], want[name], rtol=1e-5, atol=1e-9)
    with pytest.raises(ConfigError, match="no valid example"):
        importance.importance_scores(model, trainable, frozen, masks, [(real, np.zeros(4, bool))])
    with pytest.raises(ConfigError, match=r"\(batch, valid\) pairs"):
        importance.importance_scores(model, trainable, frozen, masks, [real])


def test_sharded_scores_equal_single_device_scores(tiny):
    """On a 4x2 (data x model) mesh, examples split over 'data', the scores are the same."""
    from xprompt_jax.models.t5 import logical_axes
    from xprompt_jax.optimizers import make_optimizer
    _, config, frozen, model, trainable = tiny
    masks = _masks(token_off=[1])
    batches = [(_batch(8, seed=4), np.arange(8) < 6)]
    single = importance.importance_scores(model, trainable, frozen, masks, batches)
    mesh = partitioning.make_mesh(4, 2)
    opt = make_optimizer("adafactor", learning_rate=0.3)
    state = train_step.create_state(model, opt, jax.random.PRNGKey(0), trainable=trainable)
    shardings = train_step.make_shardings(model, opt, jax.eval_shape(lambda: state), mesh, logical_axes(config))
    placed = jax.device_put(trainable, shardings.state.trainable)
    sharded = importance.importance_scores(model, placed, jax.device_put(frozen, shardings.frozen), masks, batches,
                                           shardings=shardings)
    for name in single:
        np.testing.assert_allclose(sharded[name], single[name], rtol=1e-5, atol=1e-9)


FINITE_DIFFERENCE_SCRIPT = r"""
import json, sys
import jax
jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp
import numpy as np
from xprompt_jax import losses
from xprompt_jax.xprompt import importance
from xprompt_jax.t5_import import load_t5_checkpoint
from xprompt_jax.prompted import build_prompted_t5
from xprompt_jax.prompts.kinds import make_spec

path, batch = sys.argv[1], {k: np.asarray(v, np.int32) for k, v in json.loads(sys.argv[2]).items()}
config, frozen = load_t5_checkpoint(path, "t5_1_1_prompt_tuning_test", param_dtype="float64")
config = config.replace(dtype="float64")
model = build_prompted_t5(config, make_spec(length=5, pieces=2, init="uniform"), frozen)
trainable, _ = model.init(jax.random.PRNGKey(0))
trainable = jax.tree.map(lambda p: (p + 0.3 * jax.random.normal(jax.random.PRNGKey(1), p.shape)).astype("float64"),
                         trainable)
masks = {"token_mask": jnp.ones(5, "float64").at[3].set(0.0),
         "piece_mask": jnp.ones((5, 2), "float64").at[0, 1].set(0.0)}
scores = importance.importance_scores(model, trainable, frozen, masks, [(batch, None)])

@jax.jit
def example_losses(masks):
    logits = model.logits(trainable, frozen, masks, batch)
    return losses.per_example_loss(logits, batch["decoder_target_tokens"], batch["decoder_loss_weights"])

eps = 1e-7
def central(name, index):
    up = dict(masks, **{name: masks[name].at[index].add(eps)})
    down = dict(masks, **{name: masks[name].at[index].add(-eps)})
    return np.asarray((example_losses(up) - example_losses(down)) / (2 * eps))  # dL(x)/d entry, per example

fd_token = [np.abs(central("token_mask", i)).mean() for i in range(5)]
fd_piece = [[np.abs(central("piece_mask", (i, j))).mean() for j in range(2)] for i in range(5)]
print(json.dumps({"dtype": str(example_losses(masks).dtype), "scores_token": scores["token"].tolist(),
                  "scores_piece": scores["piece"].tolist(), "fd_token": fd_token, "fd_piece": fd_piece}))
"""


def test_scores_match_central_finite_differences_in_float64(tiny):
    """float64 (a subprocess, as x64 must be set before anything runs). The loss is nonlinear in a mask
    entry, sharply so for a pruned token: its row is 0, and T5's RMS norm x / sqrt(x^2 + 1e-6) bends on a
    ~1e-3 scale there (eps = 1e-4 misses that token's derivative by 25%, 1e-6 by 2e-5). eps = 1e-7 leaves
    a relative truncation error ~2e-7 and a rounding error ~1e-16 * L / eps ~ 1e-8, well below rtol 1e-5,
    which still catches a wrong example weighting, a sign or a missing abs."""
    path = tiny[0]
    batch = {k: v.tolist() for k, v in _batch(4, seed=5).items()}
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run([sys.executable, "-c", FINITE_DIFFERENCE_SCRIPT, path, json.dumps(batch)], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["dtype"] == "float64"
    np.testing.assert_allclose(out["scores_token"], out["fd_token"], rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(out["scores_piece"], out["fd_piece"], rtol=1e-5, atol=1e-9)
    assert min(out["fd_token"][:3]) > 1e-4   # the check is not comparing zeros


# ------------------------------------------------------------------------------------------------
# Pruning: primitives
# ------------------------------------------------------------------------------------------------
def test_prune_tokens_and_pieces_take_the_lowest_survivors():
    token = np.array([1, 0, 1, 1, 1], np.float32)
    scores = np.array([0.5, 0.0, 0.2, 0.9, 0.2])
    # Token 1 is already pruned (lowest score, ignored); ties go to the lower index.
    np.testing.assert_array_equal(pruning.prune_tokens(scores, token, 2), [1, 0, 0, 1, 0])
    np.testing.assert_array_equal(pruning.prune_tokens(scores, token, 1), [1, 0, 0, 1, 1])
    piece = np.ones((3, 2), np.float32)
    piece_scores = np.array([[0.1, 0.8], [0.0, 0.3], [0.4, 0.2]])
    # Token 1 is pruned: its pieces are not candidates, however low they score.
    got = pruning.prune_pieces(piece_scores, np.array([1, 0, 1]), piece, 2)
    np.testing.assert_array_equal(got, [[0, 1], [1, 1], [1, 0]])
    with pytest.raises(ConfigError, match="cannot prune 5 tokens: 4 survive"):
        pruning.prune_tokens(scores, token, 5)
    with pytest.raises(ConfigError, match="cannot prune 5 pieces"):
        pruning.prune_pieces(piece_scores, np.array([1, 0, 1]), piece, 5)


# ------------------------------------------------------------------------------------------------
# Pruning: ratios, levels and ablations
# ------------------------------------------------------------------------------------------------
def _effective(masks):
    return np.asarray(masks[TOKEN])[:, None] * np.asarray(masks[PIECE])


def _check_schedule(steps, start, width, level, reverse=False):
    """Every ratio: exact planned count, a subset of the previous masks, and (XPrompt's order) each new
    removal is among the lowest-scored of the candidates at that step (highest when reversed)."""
    previous = start
    m, k = np.asarray(start[PIECE]).shape
    sign = -1.0 if reverse else 1.0
    for step in steps:
        token, piece = np.asarray(step.masks[TOKEN]), np.asarray(step.masks[PIECE])
        assert mask_lib.surviving_parameters(token, piece, width) == \
            pruning.planned_surviving_parameters(step.ratio, m, width, k, level)
        assert _kept(step.masks, width) == int(_effective(step.masks).sum()) * (width // k)   # by hand
        old_token, old_piece = np.asarray(previous[TOKEN]), np.asarray(previous[PIECE])
        assert (token <= old_token).all() and (piece <= old_piece).all()   # only ever lose entries
        t_scores, p_scores = sign * step.scores["token"], sign * step.scores["piece"]
        new_tokens = (old_token == 1) & (token == 0)
        if new_tokens.any() and (token == 1).any():
            assert t_scores[new_tokens].max() <= t_scores[token == 1].min()
        new_pieces = (token[:, None] == 1) & (old_piece == 1) & (piece == 0)   # pieces cut within survivors
        alive = _effective(step.masks) == 1
        if new_pieces.any():
            assert p_scores[new_pieces].max() <= p_scores[alive].min()
        if level == "token":
            assert (piece == old_piece).all()
        if level == "piece":
            assert (token == 1).all()
        previous = step.masks


@pytest.mark.parametrize("m,k,width", [(20, 16, 64), (7, 3, 6), (5, 2, 4)])
@pytest.mark.parametrize("recompute", [True, False])
def test_hierarchical_schedule_is_exact_monotone_and_uses_both_levels(m, k, width, recompute):
    start = mask_lib.ones(m, k)
    steps = pruning.ratio_schedule(pruning.random_score_fn(jax.random.PRNGKey(m)), start, recompute=recompute)
    assert [s.ratio for s in steps] == list(pruning.DEFAULT_RATIOS)
    _check_schedule(steps, start, width, "hierarchical")
    # Both levels act: whole tokens go, and surviving tokens lose some (not all) of their pieces.
    last = steps[-1].masks
    partial = (np.asarray(last[TOKEN]) == 1) & (np.asarray(last[PIECE]).sum(1) < k)
    assert (np.asarray(last[TOKEN]) == 0).any() and partial.any()
    if not recompute:  # scored once: every ratio ranks by the same scores
        assert all(s.scores is steps[0].scores for s in steps)


def test_planned_counts_for_the_papers_setting():
    """m = 20, k = 16 (T5-XL: e = 2048): 10% steps remove 32 pieces = 4096 scalars each, at every level."""
    for i, ratio in enumerate(pruning.DEFAULT_RATIOS, start=1):
        for level in pruning.LEVELS:
            assert pruning.planned_surviving_parameters(ratio, 20, 2048, 16, level) == 40960 - 4096 * i
    # Hierarchical splits the removal: at 50%, 6 whole tokens then 64 pieces of the 14 survivors.
    assert pruning.plan_for_ratio(0.5, 20, 16) == pruning.Plan(tokens=6, pieces=160)
    # Rounding is to the nearest piece, halves up: 0.25 * 5 * 2 = 2.5 -> 3 pieces.
    assert pruning.plan_for_ratio(0.25, 5, 2, "piece").pieces == 3
    assert pruning.plan_for_ratio(0.5, 20, 16, token_share=1.0).tokens == 10
    assert pruning.plan_for_ratio(0.5, 20, 16, token_share=0.0).tokens == 0


@pytest.mark.parametrize("level", ["token", "piece"])
def test_token_only_and_piece_only_hit_the_same_counts(level):
    m, k, width = 10, 4, 8
    start = mask_lib.ones(m, k)
    steps = pruning.ratio_schedule(pruning.random_score_fn(jax.random.PRNGKey(3)), start, level=level)
    _check_schedule(steps, start, width, level)
    hierarchical = pruning.ratio_schedule(pruning.random_score_fn(jax.random.PRNGKey(3)), start)
    for a, b in zip(steps, hierarchical):   # ratio * m is whole here, so every level removes as many scalars
        assert _kept(a.masks, width) == _kept(b.masks, width)


@pytest.mark.parametrize("level", pruning.LEVELS)
def test_reversed_keeps_the_lowest_scored_parts(level):
    m, k, width = 10, 4, 8
    scores = pruning.random_scores(jax.random.PRNGKey(7), mask_lib.ones(m, k))
    start = mask_lib.ones(m, k)
    steps = pruning.ratio_schedule(lambda masks: scores, start, level=level, reverse=True)
    _check_schedule(steps, start, width, level, reverse=True)
    forward = pruning.masks_for_ratio(scores, start, 0.5, level=level)
    backward = pruning.masks_for_ratio(scores, start, 0.5, level=level, reverse=True)
    assert _kept(forward, width) == _kept(backward, width)
    kept_forward, kept_backward = _effective(forward) == 1, _effective(backward) == 1
    if level == "piece":   # the kept pieces are exactly the lowest-scored half
        order = np.sort(scores["piece"].reshape(-1))
        assert np.isclose(scores["piece"][kept_backward].max(), order[kept_backward.sum() - 1])
    if level == "token":
        assert scores["token"][np.asarray(backward[TOKEN]) == 1].max() < np.median(scores["token"]) + 1e-12
    assert scores["piece"][kept_backward].mean() < scores["piece"][kept_forward].mean()


@pytest.mark.parametrize("level", pruning.LEVELS)
def test_random_masks_have_the_same_sparsity_and_split(level):
    m, k, width = 10, 4, 8
    start = mask_lib.ones(m, k)
    scores = pruning.random_scores(jax.random.PRNGKey(11), start)
    for ratio in pruning.DEFAULT_RATIOS:
        xprompt = pruning.masks_for_ratio(scores, start, ratio, level=level)
        a = pruning.random_masks(jax.random.PRNGKey(1), start, ratio, level=level)
        b = pruning.random_masks(jax.random.PRNGKey(2), start, ratio, level=level)
        for masks in (a, b):
            assert _kept(masks, width) == _kept(xprompt, width)
            assert np.asarray(masks[TOKEN]).sum() == np.asarray(xprompt[TOKEN]).sum()
        assert not np.array_equal(_effective(a), _effective(b))
    same = pruning.random_masks(jax.random.PRNGKey(1), start, 0.3)
    np.testing.assert_array_equal(_effective(same), _effective(pruning.random_masks(jax.random.PRNGKey(1), start, 0.3)))


def test_pruning_inputs_are_checked():
    start = mask_lib.ones(5, 2)
    scores = pruning.random_scores(jax.random.PRNGKey(0), start)
    for ratio in (0.0, 1.0, 1.2, -0.1):
        with pytest.raises(ConfigError, match="strictly between 0 and 1"):
            pruning.masks_for_ratio(scores, start, ratio)
    with pytest.raises(ConfigError, match="k=2 must divide the prompt width e=5"):
        mask_lib.surviving_parameters(start[TOKEN], start[PIECE], 5)
    with pytest.raises(ConfigError, match="token_mask \\(m,\\) and piece_mask \\(m, k\\)"):
        pruning.masks_for_ratio(scores, {TOKEN: np.ones(5), PIECE: np.ones((4, 2))}, 0.3)
    with pytest.raises(ConfigError, match="do not match the masks"):
        pruning.masks_for_ratio({"token": np.ones(5), "piece": np.ones((5, 3))}, start, 0.3)
    with pytest.raises(ConfigError, match="unknown pruning level"):
        pruning.masks_for_ratio(scores, start, 0.3, level="row")
    with pytest.raises(ConfigError, match="strictly increasing"):
        pruning.ratio_schedule(lambda masks: scores, start, ratios=(0.5, 0.3))
    with pytest.raises(ConfigError, match="ratios must increase"):
        pruning.masks_for_ratio(scores, pruning.masks_for_ratio(scores, start, 0.6), 0.3)
    with pytest.raises(ConfigError, match="would prune the whole"):
        pruning.masks_for_ratio(scores, start, 0.9, level="token")
    with pytest.raises(ConfigError, match="NaN"):
        pruning.masks_for_ratio({"token": np.full(5, np.nan), "piece": np.ones((5, 2))}, start, 0.3)


# ------------------------------------------------------------------------------------------------
# Rewinding, counts, the whole pipeline on the fixture
# ------------------------------------------------------------------------------------------------
def test_rewind_restores_stage_one_values_of_survivors_and_zeros_the_rest():
    stage1 = {"prompt": {"prompt": jax.random.normal(jax.random.PRNGKey(0), (5, 8))}}
    masks = pruning.masks_for_ratio(pruning.random_scores(jax.random.PRNGKey(1), mask_lib.ones(5, 4)),
                                    mask_lib.ones(5, 4), 0.45)
    rewound = np.asarray(pruning.rewind(stage1, masks)["prompt"]["prompt"])
    dense = np.asarray(mask_lib.dense_mask(masks[TOKEN], masks[PIECE], 8))
    original = np.asarray(stage1["prompt"]["prompt"])
    np.testing.assert_array_equal(rewound[dense == 1], original[dense == 1])   # bit for bit
    assert (rewound[dense == 0] == 0).all() and (dense == 0).any()
    with pytest.raises(ConfigError, match="do not fit the 5-token prompt"):
        pruning.rewind(stage1, mask_lib.ones(4, 4))


def test_summary_table_counts_what_the_masks_keep():
    """The results table XPrompt logs: one row per stage, the scalars the masks keep, the best score."""
    from xprompt_jax.xprompt.stages import format_table
    masks = _masks(token_off=[3], pieces_off=[(0, 1), (2, 0)])
    kept = _kept(masks, 4)
    assert kept == 12   # 5 tokens x 2 pieces x 2 scalars, less token 3 (4) and two pieces (2 each)
    rows = [{"stage": "prompt tuning", "ratio": 0.0, "tokens": 5, "parameters": 20, "accuracy": 0.5},
            {"stage": "xprompt hierarchical", "ratio": 0.4, "tokens": int(masks[TOKEN].sum()), "parameters": kept,
             "accuracy": 0.75},
            {"stage": "xprompt hierarchical", "ratio": 0.5, "tokens": 4, "parameters": 10, "accuracy": None}]
    table = format_table(rows, "accuracy").splitlines()
    assert table[0].split() == ["stage", "ratio", "tokens", "parameters", "accuracy"]
    assert table[2].split() == ["xprompt", "hierarchical", "40%", "4", "12", "0.75"]
    assert table[3].split()[-1] == "-" and len(table) == 4


def test_score_prune_rewind_retrain_on_the_fixture(tiny):
    """Stage 2 with real recomputed scores, then stage 3: pruned entries stay zero while training."""
    from xprompt_jax.optimizers import make_optimizer
    _, config, frozen, model, trainable = tiny
    batches = [(_batch(4, seed=6), None)]
    steps = pruning.ratio_schedule(
        lambda masks: importance.importance_scores(model, trainable, frozen, masks, batches),
        mask_lib.ones(5, 2), ratios=(0.2, 0.5, 0.7))
    _check_schedule(steps, mask_lib.ones(5, 2), config.emb_dim, "hierarchical")
    masks = steps[-1].masks
    opt = make_optimizer("adafactor", learning_rate=0.3)
    state = train_step.create_state(model, opt, jax.random.PRNGKey(0), trainable=pruning.rewind(trainable, masks),
                                  masks={k: jnp.asarray(v) for k, v in masks.items()})
    step = jax.jit(train_step.make_train_step(model, opt))
    for i in range(2):
        state, _ = step(state, frozen, _batch(4, seed=10 + i))
    prompt = np.asarray(state.trainable["prompt"]["prompt"])
    dense = np.asarray(mask_lib.dense_mask(masks[TOKEN], masks[PIECE], config.emb_dim))
    assert (prompt[dense == 0] == 0).all()
    assert np.count_nonzero(prompt) == _kept(masks, config.emb_dim) == 6


def test_a_token_with_every_piece_pruned_is_not_counted_as_surviving():
    """XPrompt's "tokens" column counts as the masks act: token 0 keeps its token mask but loses both pieces."""
    from xprompt_jax.prompts.masks import surviving_tokens
    token = np.array([1, 1, 0, 1], np.float32)
    piece = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], np.float32)
    assert surviving_tokens(token, piece) == 2                     # tokens 1 and 3
    assert surviving_tokens(np.ones(3), np.ones((3, 2))) == 3
