"""Prompt ensembling: N prompts in one batch equal N separate evaluations followed by a vote."""
import json

import jax
import numpy as np
import pytest

from xprompt_jax import assembly, ensembling, export
from xprompt_jax.commands import ensemble as ensemble_command
from xprompt_jax.data.cache import CachedSplit
from xprompt_jax.errors import ConfigError
from xprompt_jax.models.config import t5_config
from xprompt_jax.prompted import PromptedT5
from xprompt_jax.prompts import initializers
from xprompt_jax.prompts.modules import Prompt
from xprompt_jax.run.config import DataConfig, EvalConfig, FrozenModel
from xprompt_jax.run.evaluator import Evaluator
from xprompt_jax.vocabulary import load_vocabulary


def test_majority_vote_and_its_ties():
    assert ensembling.majority_vote([["a", "b", "a"], ["b", "a", "c"], ["c", "c", "c"], ["x", "y", "y", "x"]]) == \
        ["a", "b", "c", "x"]   # ties go to the earliest prompt's prediction among the tied ones
    assert ensembling.majority_vote([[2, 1, 1, 2, 0]]) == [2]


def _write_digit_task(path, n=21, seed=1):
    """Four-label rank classification over demo-vocabulary digits (a random 64-wide demo T5 tells the
    prompts apart, unlike the 4-wide fixture, which predicts one label whatever the prompt)."""
    from tasks.demo_vocab import VOCAB_PATH
    from xprompt_jax.data.cache import write_cached_split
    labels = ["1", "2", "3", "4"]
    ids = load_vocabulary(VOCAB_PATH).encode_padded(labels)
    rng = np.random.RandomState(seed)
    inputs = rng.randint(3, 20, (n, 8)).astype(np.int32)
    inputs[:, -1] = 1
    classes = rng.randint(0, 4, n)
    targets = ids[classes].astype(np.int32)
    features = {"encoder_input_tokens": inputs, "decoder_target_tokens": targets,
                "decoder_input_tokens": np.pad(targets, ((0, 0), (1, 0)))[:, :-1],
                "decoder_loss_weights": (targets > 0).astype(np.int32)}
    examples = [{"inputs_pretokenized": str(row), "targets_pretokenized": labels[c], "idx": i}
                for i, (row, c) in enumerate(zip(inputs, classes))]
    meta = {"task": "test_digits", "split": "validation", "label_names": labels,
            "sequence_length": {"inputs": 8, "targets": int(targets.shape[1])},
            "vocabulary": {"path": VOCAB_PATH, "extra_ids": 0}}
    return write_cached_split(str(path), meta=meta, features=features, examples=examples), VOCAB_PATH


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("ensemble")
    cache, vocab = _write_digit_task(root / "eval")
    config = t5_config("t5_1_1_demo")
    _, frozen = assembly.open_model(FrozenModel(None, config), seed=0)   # random weights, as ensemble(checkpoint=None) loads
    rng = np.random.RandomState(0)
    prompts = [rng.uniform(-0.5, 0.5, (3, 64)).astype(np.float32) for _ in range(5)]
    files = [export.save_npy(str(root / f"run{i}" / "export" / "prompt.npy"), p) for i, p in enumerate(prompts)]
    return dict(root=root, vocab=vocab, checkpoint=None, cache=cache, config=config, frozen=frozen,
                prompts=prompts, runs=[str(root / f"run{i}") for i in range(5)], files=files)


def test_one_batch_equals_separate_evaluations_then_a_vote(setup):
    config, frozen = setup["config"], setup["frozen"]
    split = CachedSplit.open(setup["cache"])
    vocabulary = load_vocabulary(str(setup["vocab"]))
    separate = []
    for p in setup["prompts"]:
        model, trainable, masks = assembly.prompted_from_saved(config, assembly.SavedPrompt(p, "a prompt"))
        separate.append(Evaluator(model, split, vocabulary, 8, "rank").predictions_text(trainable, frozen,
                                                                                              masks))
    assert len({tuple(s) for s in separate}) > 1          # the prompts disagree somewhere: the vote matters
    ensemble = ensembling.PromptEnsemble(config, np.stack(setup["prompts"]))
    trainable, _ = ensemble.init()
    evaluator = ensembling.EnsembleEvaluator(ensemble, split, vocabulary, 8, "rank")   # 8 examples x 5 prompts
    per_prompt = evaluator.per_prompt_texts(trainable, frozen)
    assert per_prompt == [list(row) for row in zip(*separate)]
    voted = evaluator.predictions_text(trainable, frozen)
    assert voted == ensembling.majority_vote(list(zip(*separate)))
    result = evaluator.evaluate(trainable, frozen)
    info = evaluator.info
    assert result["ensemble"] == info.score(voted, split.examples)
    assert result["prompts"] == [info.score(s, split.examples) for s in separate]


def test_rows_are_examples_times_prompts(setup):
    config, frozen = setup["config"], setup["frozen"]
    prompts = np.stack(setup["prompts"][:3])
    ensemble = ensembling.PromptEnsemble(config, prompts)
    trainable, _ = ensemble.init()
    tokens = np.array([[7, 5, 18, 1, 0], [13, 9, 1, 0, 0]], np.int32)
    encoded, _ = ensemble.encode(trainable, frozen, {}, np.repeat(tokens, 3, axis=0))
    for k in range(3):
        single = PromptedT5(config, Prompt(length=3, width=64, pieces=1,
                                           init_fn=initializers.from_array(prompts[k])))
        t, m = single.init(jax.random.PRNGKey(0))
        alone, _ = single.encode(t, frozen, m, tokens)
        np.testing.assert_allclose(np.asarray(encoded)[k::3], np.asarray(alone), rtol=1e-5, atol=1e-6)
    decoded = jax.jit(lambda t, x: ensembling.ensemble_greedy_tokens(ensemble, t, frozen, x, 3))(trainable, tokens)
    assert decoded.shape == (2, 3, 3)


def test_ensemble_entry_from_run_folders_and_the_cli(setup, tmp_path):
    out = tmp_path / "ensemble.json"
    result = ensemble_command.ensemble(setup["runs"][:3], data=DataConfig(eval_cache=setup["cache"], batch_size=8),
                                 model=FrozenModel(setup["checkpoint"], setup["config"]),
                                 evaluation=EvalConfig(mode="rank"), output_file=str(out))
    assert len(result["prompts"]) == 3 and "accuracy" in result["ensemble"]
    assert json.load(open(out))["ensemble"] == result["ensemble"]
    from xprompt_jax.cli.main import main
    sources = repr(setup["files"][:3])
    code = main(["ensemble", "--gin_file=sizes/demo.gin", "--gin_file=runs/ensemble.gin",
                 f"--gin.PROMPT_SOURCES={sources}",
                 f"--gin.EVAL_CACHE='{setup['cache']}'", "--gin.BATCH_SIZE=8", "--gin.EVAL_MODE='rank'",
                 f"--gin.OUTPUT_FILE='{tmp_path / 'cli.json'}'"])
    assert code == 0
    assert json.load(open(tmp_path / "cli.json"))["ensemble"] == result["ensemble"]


def test_mismatched_prompts_are_refused_before_anything_is_loaded(setup, tmp_path, capsys):
    longer = export.save_npy(str(tmp_path / "longer.npy"), np.zeros((5, 64), np.float32))
    wider = export.save_npy(str(tmp_path / "wider.npy"), np.zeros((3, 8), np.float32))
    for odd, what in [(longer, "5 tokens x 64 wide"), (wider, "3 tokens x 8 wide")]:
        # A checkpoint that does not exist: the prompts are checked first.
        with pytest.raises(ConfigError, match="differ in length or width.*" + what):
            ensemble_command.ensemble([setup["files"][0], odd], data=DataConfig(eval_cache="/nonexistent"),
                                model=FrozenModel("/nonexistent", setup["config"]))
    with pytest.raises(ConfigError, match="8 wide but the model is 64 wide"):
        ensemble_command.ensemble([wider, wider], data=DataConfig(eval_cache="/nonexistent"),
                            model=FrozenModel(None, setup["config"]))
    with pytest.raises(ConfigError, match="must be a list"):
        ensemble_command.load_prompts(setup["files"][0])
    with pytest.raises(ConfigError, match="no prompts"):
        ensemble_command.load_prompts([])
    from xprompt_jax.cli.main import main
    code = main(["ensemble", "--gin_file=sizes/demo.gin", "--gin_file=runs/ensemble.gin",
                 f"--gin.PROMPT_SOURCES={[setup['files'][0], longer]!r}", "--gin.CHECKPOINT='/nonexistent'"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: the ensemble's prompts differ") and "\n" not in err
    code = main(["ensemble", "--gin_file=sizes/demo.gin", "--gin_file=runs/ensemble.gin"])
    assert code == 2 and "PROMPT_SOURCES" in capsys.readouterr().err
