"""EPT, EPT*, P-Tuning and ResPrompt: parameter counts, EPT's rank, what trains, what is exported."""
import gin
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn
from flax import traverse_util
from helpers import train as flat_train

from xprompt_jax import assembly, partitioning, train_step
from xprompt_jax.errors import ConfigError
from xprompt_jax.optimizers import make_optimizer
from xprompt_jax.prompted import (
    PromptedT5,
    build_prompted_t5,
    make_prompt_module,
)
from xprompt_jax.prompts import initializers
from xprompt_jax.prompts import masks as mask_lib
from xprompt_jax.prompts import reparameterized as rp
from xprompt_jax.prompts.kinds import PromptSpecBase, make_spec
from xprompt_jax.prompts.modules import Prompt
from xprompt_jax.run import evaluator as evaluation

WIDTHS = {"small": 512, "base": 768, "large": 1024}   # T5 1.1 d_model (docs/methods.md section 1)

SPECS = {
    "ept": make_spec(kind="ept", length=1, init="uniform", pieces=2),
    "ept_star": make_spec(kind="ept", length=3, init="uniform", pieces=2),
    "ptuning": make_spec(kind="ptuning", length=3, init="uniform", pieces=2),
    "ptuning_lstm": make_spec(kind="ptuning", ptuning_encoder="lstm", hidden=3, length=3, init="uniform", pieces=2),
    "resprompt": make_spec(kind="resprompt", length=3, init="uniform", pieces=2),
    "resprompt_separate": make_spec(kind="resprompt", resprompt_separate=True, hidden=5, length=3, init="uniform",
                                     pieces=2),
}


def _count(spec: PromptSpecBase, width: int) -> int:
    """Trainable scalars of the module ``spec`` builds, from shapes only (jax.eval_shape: no weights)."""
    module = make_prompt_module(spec, width, initializers.uniform(0.5))
    shapes = jax.eval_shape(lambda: nn.unbox(module.init(jax.random.PRNGKey(0)))["params"])
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes))


@pytest.mark.parametrize("size,expected", [("small", 1536), ("base", 2304), ("large", 3072)])
@pytest.mark.parametrize("copies", [1, 10])
def test_ept_trainable_count_is_the_papers_3e(size, expected, copies):
    # The EPT paper's table: 1.5K (small), 2.3K (base), 3K (large) for EPT and EPT* alike.
    assert _count(make_spec(kind="ept", length=copies, init="uniform"), WIDTHS[size]) == expected
    assert rp.ept_parameters(WIDTHS[size]) == expected


@pytest.mark.parametrize("size,ptuning,resprompt", [("small", 793_088, 416_656), ("base", 1_779_456, 624_784),
                                                    ("large", 3_159_040, 832_912)])
def test_baseline_counts_match_the_papers_table(size, ptuning, resprompt):
    # Table 1 reports P-Tuning 793K / 1.7M / 3.1M and ResPrompt 416K / 624K / 832K with 10 prompt tokens.
    e = WIDTHS[size]
    assert _count(make_spec(kind="ptuning", length=10, init="uniform"), e) == ptuning
    assert _count(make_spec(kind="resprompt", length=10, init="uniform"), e) == resprompt
    assert ptuning == 10 * e + 3 * e * e + 3 * e           # embeddings + 3 linear layers with biases, h = e
    assert resprompt == 10 * e + 2 * 400 * e + 400 + e + 2 * e   # embeddings + down + up + LayerNorm


@pytest.mark.parametrize("spec,width", [
    (make_spec(kind="ept", length=4, rank=3, init="uniform", pieces=2), 64),
    (make_spec(kind="ptuning", length=5, hidden=7, init="uniform", pieces=2), 16),
    (make_spec(kind="ptuning", ptuning_encoder="lstm", length=5, init="uniform", pieces=2), 16),
    (make_spec(kind="ptuning", ptuning_encoder="lstm", lstm_layers=3, hidden=6, length=5, init="uniform", pieces=2),
     16),
    (make_spec(kind="resprompt", length=6, hidden=9, init="uniform", pieces=2), 16),
    (make_spec(kind="resprompt", resprompt_separate=True, length=6, hidden=9, init="uniform", pieces=2), 16),
    (make_spec(length=6, init="uniform", pieces=2), 16),
])
def test_counts_equal_the_closed_forms(spec, width):
    if spec.kind == "ept":
        expected = width + 2 * width * spec.rank
    elif spec.kind == "ptuning":
        h = spec.hidden or width
        if spec.ptuning_encoder == "mlp":
            expected = spec.length * width + (width * h + h) + (h * h + h) + (h * width + width)
        else:  # per layer and direction 4 gates x (input + recurrent weights + bias), then the 2h MLP head
            lstm = sum(2 * 4 * h * ((width if l == 0 else 2 * h) + h + 1) for l in range(spec.lstm_layers))
            expected = spec.length * width + lstm + (4 * h * h + 2 * h) + (2 * h * width + width)
        assert rp.ptuning_parameters(spec.length, width, spec.hidden, spec.ptuning_encoder, spec.lstm_layers) == expected
    elif spec.kind == "resprompt":
        mlp = 2 * width * spec.hidden + spec.hidden + width + 2 * width
        expected = spec.length * width + (spec.length if spec.resprompt_separate else 1) * mlp
        assert rp.resprompt_parameters(spec.length, width, spec.hidden, spec.resprompt_separate) == expected
    else:
        expected = spec.length * width
    assert _count(spec, width) == expected


@pytest.mark.parametrize("rank", [1, 3])
def test_ept_output_has_rank_at_most_r_and_star_repeats_it(rank):
    width, copies = 32, 4
    module = make_prompt_module(make_spec(kind="ept", length=copies, rank=rank, init="uniform", pieces=2), width,
                                initializers.uniform(0.5))
    variables = module.init(jax.random.PRNGKey(1))
    params = nn.unbox(variables)["params"]
    out = np.asarray(module.apply(variables))
    assert out.shape == (copies, width)
    np.testing.assert_array_equal(out, np.broadcast_to(out[:1], out.shape))   # EPT*: n copies of one vector
    # Whatever the input vector, the output lies in an r-dimensional subspace: the map p -> p W_down W_up.
    vectors = jax.random.uniform(jax.random.PRNGKey(2), (40, 1, width), minval=-0.5, maxval=0.5)
    outputs = jax.vmap(lambda v: module.apply({**variables, "params": {**params, "embedding": v}})[0])(vectors)
    assert np.linalg.matrix_rank(np.asarray(outputs, np.float64), tol=1e-4) == rank
    product = np.asarray(params["down"]["kernel"]) @ np.asarray(params["up"]["kernel"])
    assert np.linalg.matrix_rank(product.astype(np.float64), tol=1e-6) == rank
    np.testing.assert_allclose(out[0], np.asarray(params["embedding"])[0] @ product, rtol=1e-5, atol=1e-6)


def test_resprompt_and_ptuning_compute_their_formulas():
    width, length = 8, 3
    res = make_prompt_module(make_spec(kind="resprompt", length=length, hidden=5, init="uniform", pieces=2), width,
                             initializers.uniform(0.5))
    v = res.init(jax.random.PRNGKey(0))
    p = nn.unbox(v)["params"]
    x = np.asarray(p["embedding"], np.float64)
    h = np.maximum(x @ p["down"]["kernel"] + p["down"]["bias"], 0) @ p["up"]["kernel"] + p["up"]["bias"]
    normed = (h - h.mean(-1, keepdims=True)) / np.sqrt(h.var(-1, keepdims=True) + 1e-5)
    np.testing.assert_allclose(res.apply(v), x + normed * p["layer_norm"]["scale"] + p["layer_norm"]["bias"],
                               rtol=1e-5, atol=1e-5)
    pt = make_prompt_module(make_spec(kind="ptuning", length=length, init="uniform", pieces=2), width,
                            initializers.uniform(0.5))
    v = pt.init(jax.random.PRNGKey(0))
    p = nn.unbox(v)["params"]
    y = np.asarray(p["embedding"], np.float64)
    for i in range(3):
        y = y @ p[f"mlp_{i}"]["kernel"] + p[f"mlp_{i}"]["bias"]
        y = np.maximum(y, 0) if i < 2 else y
    np.testing.assert_allclose(pt.apply(v), y, rtol=1e-5, atol=1e-5)


def test_masks_apply_to_the_output_of_every_kind():
    width = 8
    for name in ("ept_star", "ptuning_lstm", "resprompt_separate"):
        spec = SPECS[name]
        module = make_prompt_module(spec, width, initializers.uniform(0.5))
        variables = module.init(jax.random.PRNGKey(0))
        token = np.ones(spec.length, np.float32)
        token[-1] = 0
        piece = np.ones((spec.length, 2), np.float32)
        piece[0, 1] = 0
        masks = {mask_lib.TOKEN_MASK: token, mask_lib.PIECE_MASK: piece}
        full = np.asarray(module.apply(variables))
        masked = np.asarray(module.apply({**variables, "masks": masks}))
        np.testing.assert_array_equal(masked, full * np.asarray(mask_lib.dense_mask(token, piece, width)), err_msg=name)


@pytest.fixture(scope="module")
def fixture_frozen():
    from helpers import shared_path

    from xprompt_jax.t5_import import load_t5_checkpoint
    return load_t5_checkpoint(str(shared_path("fixtures", "t5x_t5_1_1_tiny", "checkpoint_3")),
                              "t5_1_1_prompt_tuning_test")


def _batch(n=8, seed=0):
    rng = np.random.RandomState(seed)
    inputs = rng.randint(3, 200, (n, 10)).astype(np.int32)
    inputs[:, -1] = 1
    targets = rng.randint(3, 200, (n, 3)).astype(np.int32)
    targets[:, -1] = 1
    return {"encoder_input_tokens": inputs, "decoder_target_tokens": targets,
            "decoder_input_tokens": np.pad(targets, ((0, 0), (1, 0)))[:, :-1],
            "decoder_loss_weights": (targets > 0).astype(np.int32)}


@pytest.mark.parametrize("name", sorted(SPECS))
def test_gradients_reach_every_reparameterisation_parameter_and_nothing_else(fixture_frozen, name):
    # Any loss of the prompt the encoder sees (here a random linear one; the sharded-step test below
    # uses T5's) differentiates the trainable tree: the reparameterisation's parameters and nothing else.
    config, frozen = fixture_frozen
    model = build_prompted_t5(config, SPECS[name], frozen)
    trainable, masks = model.init(jax.random.PRNGKey(0))
    probe = jax.random.normal(jax.random.PRNGKey(1), (SPECS[name].length, config.emb_dim))
    grads = jax.jit(jax.grad(lambda t: jnp.sum(model.prompt(t, masks) * probe)))(trainable)
    assert list(grads) == ["prompt"]
    flat = traverse_util.flatten_dict(grads["prompt"], sep="/")
    assert flat.keys() == traverse_util.flatten_dict(trainable["prompt"], sep="/").keys()
    pruned = {k: jnp.zeros_like(v) for k, v in masks.items()}  # masked at the output, never per parameter:
    assert all(m is None for m in jax.tree.leaves(model.update_mask(trainable, pruned), is_leaf=lambda x: x is None))
    assert all(np.abs(np.asarray(g)).sum() > 0 for g in flat.values()), {k: float(np.abs(g).sum())
                                                                          for k, g in flat.items()}


@pytest.mark.parametrize("name", ["ept_star", "resprompt"])
def test_a_sharded_step_trains_the_network_and_leaves_the_frozen_model_bit_identical(fixture_frozen, name):
    config, frozen = fixture_frozen
    model = build_prompted_t5(config, SPECS[name], frozen)
    optimizer = make_optimizer("adamw", learning_rate=0.1, weight_decay=0.01)
    mesh = partitioning.make_mesh(4, 2)
    state = train_step.create_state(model, optimizer, jax.random.PRNGKey(0))
    step = assembly.compile_step(model, optimizer, state, mesh)
    shardings = step.shardings
    before_frozen = jax.tree.map(np.array, frozen)
    before = jax.tree.map(np.array, state.trainable)
    frozen_dev = jax.device_put(frozen, shardings.frozen)
    new_state, metrics = step(jax.device_put(state, shardings.state), frozen_dev,
                              partitioning.global_batch(_batch(), mesh))
    after = traverse_util.flatten_dict(jax.tree.map(np.asarray, new_state.trainable["prompt"]), sep="/")
    for k, old in traverse_util.flatten_dict(before["prompt"], sep="/").items():
        assert not np.array_equal(after[k], old), f"{k} did not train"
    flat_before = traverse_util.flatten_dict(before_frozen, sep="/")
    flat_after = traverse_util.flatten_dict(jax.tree.map(np.asarray, frozen_dev), sep="/")
    assert flat_before.keys() == flat_after.keys()
    for k in flat_before:
        np.testing.assert_array_equal(flat_before[k], flat_after[k], err_msg=k)
    assert np.isfinite(float(metrics["loss"]))
    # Optimiser state covers the reparameterisation only (Adam: two moments per parameter, and a count).
    n_params = sum(x.size for x in jax.tree.leaves(before))
    assert sum(x.size for x in jax.tree.leaves(new_state.opt_state)) <= 2 * n_params + 4


@pytest.mark.parametrize("name", ["ptuning_lstm", "resprompt"])
def test_the_materialised_prompt_scores_exactly_as_the_network(fixture_frozen, name):
    config, frozen = fixture_frozen
    model = build_prompted_t5(config, SPECS[name], frozen)
    trainable, masks = model.init(jax.random.PRNGKey(5))
    exported = np.asarray(model.prompt(trainable, masks))   # what the trainer writes to export/prompt.npy
    alone = PromptedT5(config, Prompt(length=exported.shape[0], width=config.emb_dim, pieces=1,
                                      init_fn=initializers.from_array(exported)))
    alone_trainable, alone_masks = alone.init(jax.random.PRNGKey(0))
    inputs, labels = _batch()["encoder_input_tokens"], np.array([[10, 11, 1], [12, 1, 0]], np.int32)
    score = lambda m, t, k: np.asarray(jax.jit(lambda t, k: evaluation.rank_scores(m, t, frozen, k, inputs, labels))(
        t, k))  # noqa: E731
    # Evaluation scores the network through its materialised prompt (the export's own call) ...
    network = score(model, *model.for_evaluation(trainable, masks))
    np.testing.assert_array_equal(network, score(alone, alone_trainable, alone_masks))
    # ... because inside one jitted graph XLA fuses e.g. LayerNorm differently: equal only to float noise.
    np.testing.assert_allclose(score(model, trainable, masks), network, rtol=1e-5, atol=1e-5)


def test_trained_network_and_its_export_evaluate_identically(tmp_path):
    """The run exports the materialised prompt; ``evaluate`` on that file alone gives the network's metrics."""
    from helpers import shared_path, write_label_task

    from xprompt_jax.commands.evaluate import evaluate
    from xprompt_jax.models.config import t5_config
    from xprompt_jax.optimizers import LearningRate, Optimizer
    from xprompt_jax.run.checkpoints import BestCheckpoint
    from xprompt_jax.run.config import DataConfig, EvalConfig, FrozenModel
    from xprompt_jax.run.evaluator import Evaluator
    from xprompt_jax.run.frozen_model import load_frozen
    from xprompt_jax.vocabulary import load_vocabulary
    vocab = shared_path("fixtures", "t5_sentencepiece.model")
    checkpoint = str(shared_path("fixtures", "t5x_t5_1_1_tiny", "checkpoint_3"))
    train_cache = write_label_task(tmp_path / "train", vocab, n=32)
    eval_cache = write_label_task(tmp_path / "eval", vocab, n=20, seed=1)
    spec = make_spec(kind="ept", length=3, init="uniform", pieces=2)
    config = t5_config("t5_1_1_prompt_tuning_test")
    run = tmp_path / "run"
    result = flat_train(model_dir=str(run), checkpoint=checkpoint, train_cache=train_cache, eval_cache=eval_cache,
                           batch_size=8, train_steps=4, eval_period=2, checkpoint_period=4, log_period=2,
                        model_config=config, prompt_spec=spec, optimizer=Optimizer("adamw", weight_decay=0.01),
                        learning_rate=LearningRate(0.3))
    assert result["trainable_parameters"] == 3 * 4                    # 3e on the 4-wide fixture
    exported = np.load(run / "export" / "prompt.npy")
    assert exported.shape == (3, 4)
    np.testing.assert_array_equal(exported, np.broadcast_to(exported[:1], exported.shape))

    # The trained network itself (best checkpoint), scored on the eval split ...
    _, frozen = load_frozen(FrozenModel(checkpoint, config))
    model = build_prompted_t5(config, spec, frozen)
    params, _ = BestCheckpoint(str(run), "accuracy").restore()
    from xprompt_jax.data.cache import CachedSplit
    split = CachedSplit.open(eval_cache)
    evaluator = Evaluator(model, split, load_vocabulary(str(vocab)), 8, "rank")
    network_texts = evaluator.predictions_text(params["trainable"], frozen, params["masks"])
    network_metrics = evaluator(params["trainable"], frozen, params["masks"])
    np.testing.assert_array_equal(np.asarray(model.prompt(params["trainable"], params["masks"])), exported)
    # ... and the exported file alone, through `xprompt-jax evaluate`'s entry point.
    alone = evaluate(str(run), data=DataConfig(eval_cache=eval_cache, batch_size=8),
                     model=FrozenModel(checkpoint, config), evaluation=EvalConfig(mode="rank"))
    assert alone == network_metrics
    assert network_metrics["accuracy"] == result["best"]["accuracy"]
    alone_model = PromptedT5(config, Prompt(length=3, width=4, pieces=1, init_fn=initializers.from_array(exported)))
    alone_trainable, alone_masks = alone_model.init(jax.random.PRNGKey(0))
    alone_texts = Evaluator(alone_model, split, load_vocabulary(str(vocab)), 8, "rank").predictions_text(
        alone_trainable, frozen, alone_masks)
    assert alone_texts == network_texts


def test_bad_sizes_are_refused_before_training(fixture_frozen, tmp_path):
    config, frozen = fixture_frozen   # 4 wide
    with pytest.raises(ConfigError, match=r"1 <= r < e = 4"):
        build_prompted_t5(config, make_spec(kind="ept", rank=4, length=1, init="uniform", pieces=2), frozen)
    with pytest.raises(ConfigError, match=r"r >= 1"):
        make_spec(kind="ept", rank=0, length=1)
    with pytest.raises(ConfigError, match=r"EPT\* needs at least one copy"):
        make_spec(kind="ept", length=0)
    with pytest.raises(ConfigError, match="unknown PromptSpec.kind"):
        make_spec(kind="lora")
    with pytest.raises(ConfigError, match="unknown P-Tuning encoder"):
        make_spec(kind="ptuning", ptuning_encoder="gru")
    with pytest.raises(ConfigError, match="bottleneck"):
        make_spec(kind="resprompt", hidden=0)
    # Through the trainer: refused after the data is opened and before any state is built or compiled.
    from helpers import shared_path, write_label_task

    cache = write_label_task(tmp_path / "train", shared_path("fixtures", "t5_sentencepiece.model"), n=8)
    with pytest.raises(ConfigError, match=r"1 <= r < e = 4"):
        flat_train(model_dir=str(tmp_path / "run"), train_cache=cache, eval_split=None, batch_size=8,
                      train_steps=1, frozen_model=(config, frozen),
                      prompt_spec=make_spec(kind="ept", rank=7, length=1, init="uniform", pieces=2))
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.parametrize("run,expected", [
    ("runs/ept.gin", dict(kind="ept", length=1, rank=1, init="uniform", init_scale=0.5)),
    ("runs/ept_star.gin", dict(kind="ept", length=10, rank=1, init="uniform")),
    ("runs/ptuning.gin", dict(kind="ptuning", length=10, ptuning_encoder="mlp", hidden=None)),
    ("runs/resprompt.gin", dict(kind="resprompt", length=10, hidden=400, resprompt_separate=False)),
])
def test_run_files_carry_the_papers_defaults(run, expected):
    from xprompt_jax.cli import gin_configurables as configured
    from xprompt_jax.cli.gin_flags import parse_gin
    gin.clear_config()
    try:
        parse_gin(["models/t5_1_1.gin", "sizes/base.gin", run], ["MODEL_DIR = '/tmp/x'"])
        spec = configured.PromptSpec()
        assert {k: getattr(spec, k) for k in expected} == expected
        data = configured.DataConfig()
        assert data.batch_size == 16 and data.input_length == 256
        optimizer = configured.Optimizer()
        assert optimizer.name == "adamw" and optimizer.weight_decay == 0.01
        assert configured.LearningRate().learning_rate == 0.3
        assert optimizer.build(configured.LearningRate().build()) is not None
        if run == "runs/ptuning.gin":
            parse_gin([], ["PTUNING_ENCODER = 'lstm'"])
            assert configured.PromptSpec().ptuning_encoder == "lstm"
    finally:
        gin.clear_config()


def test_run_config_holds_only_the_fields_a_kind_reads():
    plain = make_spec(length=4)
    assert set(plain.to_dict()) == {"length", "init", "init_scale", "population_size", "init_file", "pieces",
                                    "combine"}   # as before reparameterised kinds: older runs still resume
    for spec in [plain, *SPECS.values()]:
        assert make_spec(**spec.to_dict()) == spec
    assert {"kind", "rank"} <= set(SPECS["ept"].to_dict()) and "hidden" not in SPECS["ept"].to_dict()
