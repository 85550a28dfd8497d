"""Full fine-tuning on the one trainer: every T5 weight trains, its optimiser state sharded like it."""
import gin
import jax
import numpy as np
import optax
import pytest
from flax import traverse_util

from xprompt_jax import assembly, partitioning, train_step
from xprompt_jax.optimizers import make_optimizer
from xprompt_jax.prompted import PromptedT5


@pytest.fixture(scope="module")
def fixture_model():
    from helpers import shared_path

    from xprompt_jax.t5_import import load_t5_checkpoint
    return load_t5_checkpoint(str(shared_path("fixtures", "t5x_t5_1_1_tiny", "checkpoint_3")),
                              "t5_1_1_prompt_tuning_test")


def _batch(n=8):
    rng = np.random.RandomState(0)
    inputs = rng.randint(3, 200, (n, 10)).astype(np.int32)
    inputs[:, -1] = 1
    targets = rng.randint(3, 200, (n, 3)).astype(np.int32)
    return {"encoder_input_tokens": inputs, "decoder_target_tokens": targets,
            "decoder_input_tokens": np.pad(targets, ((0, 0), (1, 0)))[:, :-1],
            "decoder_loss_weights": np.ones_like(targets)}


@pytest.mark.parametrize("name", ["adamw", "adafactor"])
def test_full_finetuning_changes_the_weights_and_shards_optimizer_state_like_them(fixture_model, name):
    config, params = fixture_model
    model = PromptedT5(config, None)                 # no prompt: what train(trains="model") builds
    optimizer = make_optimizer(name, learning_rate=1e-2)
    mesh = partitioning.make_mesh(4, 2)
    state = train_step.create_state(model, optimizer, jax.random.PRNGKey(0), trainable={"t5": params})
    step = assembly.compile_step(model, optimizer, state, mesh)
    shardings = step.shardings
    assert shardings.frozen == {}                    # nothing stays frozen
    before = traverse_util.flatten_dict(jax.tree.map(np.array, params), sep="/")
    state, metrics = step(jax.device_put(state, shardings.state), {}, partitioning.global_batch(_batch(), mesh))
    assert np.isfinite(float(metrics["loss"])) and "prompt_norm" not in metrics

    after = traverse_util.flatten_dict(jax.tree.map(np.asarray, state.trainable["t5"]), sep="/")
    assert after.keys() == before.keys()
    changed = [k for k in before if not np.array_equal(before[k], after[k])]
    assert len(changed) == len(before), sorted(set(before) - set(changed))

    # The weights are laid out by T5's logical axes on the 4x2 mesh (some split over 'model') ...
    weight_specs = traverse_util.flatten_dict(jax.tree.map(lambda x: x.sharding.spec, state.trainable["t5"]),
                                              sep="/")
    assert weight_specs["encoder/layers_0/mlp/wi_0/kernel"] == jax.sharding.PartitionSpec(None, "model")
    assert all(x.sharding.mesh.shape == {"data": 4, "model": 2} for x in jax.tree.leaves(state.trainable))
    # ... and every per-parameter optimiser leaf (Adam's mu and nu, Adafactor's v) has its weight's sharding.
    # (Adafactor's unused factored statistics are (1,)-shaped placeholders: replicated, and not counted.)
    same = optax.tree_map_params(
        optimizer, lambda leaf, p: (leaf.sharding.is_equivalent_to(p.sharding, leaf.ndim) if leaf.shape == p.shape
                                    else None),
        state.opt_state, state.trainable, transform_non_params=lambda _: None)
    flags = [f for f in jax.tree.leaves(same) if f is not None]
    n_weights = len(before)
    assert len(flags) == (2 if name == "adamw" else 1) * n_weights and all(flags)


def test_full_finetune_gin_run():
    from xprompt_jax.cli import gin_configurables as configured
    from xprompt_jax.cli.gin_flags import parse_gin
    gin.clear_config()
    try:
        parse_gin(["models/t5_1_1.gin", "sizes/base.gin", "runs/full_finetune.gin"], ["MODEL_DIR = '/tmp/x'"])
        assert gin.query_parameter("xprompt_jax.train.trains") == "model"
        assert configured.DataConfig().batch_size == 16
        assert configured.Optimizer().name == "adamw"
        assert configured.LearningRate().learning_rate == 1e-5
    finally:
        gin.clear_config()
