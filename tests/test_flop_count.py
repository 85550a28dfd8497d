"""``benchmarks/train_step.py``'s FLOP count (what "% of the matmul ceiling" divides by) equals XLA's own
``cost_analysis()`` of the compiled train step within 2%, for T5 1.0 and 1.1 shapes with one to three
decoder layers: cross-attention keys and values over the encoder positions, two backward products per
attention product, and only the backward work that reaches the prompt."""
import sys

import jax
import numpy as np
import pytest
from helpers import REPO

from xprompt_jax import assembly, partitioning, train_step
from xprompt_jax.models.config import T5Config
from xprompt_jax.optimizers import make_optimizer
from xprompt_jax.prompts.kinds import make_spec

sys.path.insert(0, str(REPO / "benchmarks"))
from train_step import model_flops_per_example  # noqa: E402

SHAPES = [
    (T5Config(vocab_size=4096, emb_dim=256, num_heads=4, head_dim=64, mlp_dim=1024, num_encoder_layers=2,
              num_decoder_layers=2), 4, 64, 8, 16),
    (T5Config(vocab_size=2048, emb_dim=256, num_heads=4, head_dim=32, mlp_dim=768, num_encoder_layers=3,
              num_decoder_layers=1, mlp_activations=("relu",), logits_via_embedding=True, scale_logits=True),
     3, 96, 12, 8),
    (T5Config(vocab_size=4096, emb_dim=384, num_heads=6, head_dim=64, mlp_dim=1024, num_encoder_layers=2,
              num_decoder_layers=3), 2, 48, 24, 12),
]


@pytest.mark.parametrize("config,batch,inputs,targets,prompt", SHAPES)
def test_flop_count_equals_xlas_cost_analysis(config, batch, inputs, targets, prompt):
    mesh = partitioning.make_mesh(1, 1, devices=jax.devices()[:1])
    frozen = assembly.random_frozen(config, mesh)
    model = assembly.prompted_model(config, make_spec(length=prompt, init="uniform", pieces=1), frozen)
    optimizer = make_optimizer("adafactor", learning_rate=0.3)
    state = train_step.create_state(model, optimizer, jax.random.PRNGKey(0))
    step = assembly.compile_step(model, optimizer, state, mesh, z_loss=0.0)
    rng = np.random.RandomState(0)
    labels = rng.randint(3, 300, (batch, targets)).astype(np.int32)
    batch_arrays = partitioning.global_batch({
        "encoder_input_tokens": rng.randint(3, 300, (batch, inputs)).astype(np.int32),
        "decoder_target_tokens": labels, "decoder_input_tokens": np.pad(labels, ((0, 0), (1, 0)))[:, :-1],
        "decoder_loss_weights": np.ones_like(labels)}, mesh)
    cost = step.lower(step.place_state(state), frozen, batch_arrays).compile().cost_analysis()
    xla = (cost[0] if isinstance(cost, list) else cost)["flops"]
    ours = model_flops_per_example(config, inputs + prompt, targets) * batch
    assert abs(ours / xla - 1) < 0.02, (ours, xla)
