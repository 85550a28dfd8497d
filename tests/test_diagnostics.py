"""The EPT paper's prompt diagnostics: per-token norms and mean pairwise cosine similarity, in the step."""
import jax
import numpy as np
import pytest

from xprompt_jax import assembly, diagnostics, partitioning, train_step
from xprompt_jax.optimizers import make_optimizer
from xprompt_jax.prompted import build_prompted_t5
from xprompt_jax.prompts import masks as mask_lib
from xprompt_jax.prompts.kinds import make_spec


def _numpy_mean_cosine(prompt):
    """The plain definition: cosine of every pair i < j of non-zero rows, averaged."""
    prompt = np.asarray(prompt, np.float64)
    rows = [i for i in range(len(prompt)) if np.linalg.norm(prompt[i]) > 0]
    values = [prompt[i] @ prompt[j] / (np.linalg.norm(prompt[i]) * np.linalg.norm(prompt[j]))
              for a, i in enumerate(rows) for j in rows[a + 1:]]
    return float(np.mean(values)) if values else 0.0


def test_cosine_similarity_and_norms_equal_numpy():
    prompt = np.random.RandomState(0).normal(size=(7, 16)).astype(np.float32) + 0.3
    metrics = jax.jit(diagnostics.prompt_metrics)(prompt)
    np.testing.assert_allclose(float(metrics["prompt_cosine_similarity"]), _numpy_mean_cosine(prompt), rtol=1e-5)
    norms = np.linalg.norm(prompt.astype(np.float64), axis=1)
    np.testing.assert_allclose(float(metrics["prompt_token_norm_mean"]), norms.mean(), rtol=1e-5)
    np.testing.assert_allclose(float(metrics["prompt_token_norm_max"]), norms.max(), rtol=1e-5)
    np.testing.assert_allclose(float(metrics["prompt_token_norm_min"]), norms.min(), rtol=1e-5)
    np.testing.assert_allclose([float(metrics[f"prompt_token_norm/{i}"]) for i in range(7)], norms, rtol=1e-5)


def test_pruned_rows_are_left_out_and_edge_cases():
    prompt = np.random.RandomState(1).normal(size=(5, 8)).astype(np.float32)
    prompt[[1, 3]] = 0
    metrics = diagnostics.prompt_metrics(prompt)
    np.testing.assert_allclose(float(metrics["prompt_cosine_similarity"]), _numpy_mean_cosine(prompt), rtol=1e-5)
    alive = np.linalg.norm(prompt[[0, 2, 4]], axis=1)
    np.testing.assert_allclose(float(metrics["prompt_token_norm_mean"]), alive.mean(), rtol=1e-5)
    np.testing.assert_allclose(float(metrics["prompt_token_norm_min"]), alive.min(), rtol=1e-5)
    # EPT*: n copies of one vector are perfectly similar; EPT (one token) has no pair to compare.
    copies = np.tile(prompt[:1], (10, 1))
    np.testing.assert_allclose(float(diagnostics.prompt_metrics(copies)["prompt_cosine_similarity"]), 1.0, rtol=1e-6)
    single = diagnostics.prompt_metrics(prompt[:1])
    assert "prompt_cosine_similarity" not in single and "prompt_token_norm/0" in single
    assert "prompt_token_norm/00" in diagnostics.prompt_metrics(np.ones((20, 4), np.float32))
    assert not any("/" in k for k in diagnostics.prompt_metrics(np.ones((21, 4), np.float32)))
    zero = diagnostics.prompt_metrics(np.zeros((3, 4), np.float32))
    assert float(zero["prompt_token_norm_min"]) == 0 and float(zero["prompt_cosine_similarity"]) == 0
    with pytest.raises(ValueError, match="one \\(length, width\\) prompt"):
        diagnostics.prompt_metrics(np.ones((2, 3, 4), np.float32))


def test_the_train_step_reports_them_on_the_materialised_prompt():
    from helpers import shared_path

    from xprompt_jax.t5_import import load_t5_checkpoint
    config, frozen = load_t5_checkpoint(str(shared_path("fixtures", "t5x_t5_1_1_tiny", "checkpoint_3")),
                                        "t5_1_1_prompt_tuning_test")
    model = build_prompted_t5(config, make_spec(kind="resprompt", length=4, hidden=6, init="uniform", pieces=2),
                              frozen)
    optimizer = make_optimizer("adamw", learning_rate=0.1)
    masks = mask_lib.ones(4, 2)
    masks["token_mask"] = np.array([1, 1, 0, 1], np.float32)   # a pruned token is left out of the scalars
    state = train_step.create_state(model, optimizer, jax.random.PRNGKey(0), masks=masks)
    mesh = partitioning.make_mesh(1, 1, devices=jax.devices()[:1])
    step = assembly.compile_step(model, optimizer, state, mesh)
    shardings = step.shardings
    rng = np.random.RandomState(0)
    inputs = rng.randint(3, 200, (4, 8)).astype(np.int32)
    targets = rng.randint(3, 200, (4, 2)).astype(np.int32)
    batch = {"encoder_input_tokens": inputs, "decoder_target_tokens": targets,
             "decoder_input_tokens": np.pad(targets, ((0, 0), (1, 0)))[:, :-1],
             "decoder_loss_weights": np.ones_like(targets)}
    state, metrics = step(jax.device_put(state, shardings.state), jax.device_put(frozen, shardings.frozen), batch)
    prompt = np.asarray(model.prompt(state.trainable, state.masks))
    assert (prompt[2] == 0).all()
    np.testing.assert_allclose(float(metrics["prompt_cosine_similarity"]), _numpy_mean_cosine(prompt), rtol=1e-5)
    norms = np.linalg.norm(prompt.astype(np.float64), axis=1)
    np.testing.assert_allclose(float(metrics["prompt_token_norm_mean"]), norms[[0, 1, 3]].mean(), rtol=1e-5)
    np.testing.assert_allclose([float(metrics[f"prompt_token_norm/{i}"]) for i in range(4)], norms, rtol=1e-5,
                               atol=1e-6)
