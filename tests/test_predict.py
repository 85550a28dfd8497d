"""``xprompt-jax predict``: a saved prompt's predictions on a split without labels, one JSON line per
example in example order, equal to what evaluation predicts on the same examples with labels."""
import json

import numpy as np
import pytest
from helpers import shared_path, write_label_task

from xprompt_jax import assembly
from xprompt_jax.cli import main as cli_main
from xprompt_jax.data.cache import CachedSplit, write_cached_split
from xprompt_jax.models.config import t5_config
from xprompt_jax.run.config import DataConfig, EvalConfig, FrozenModel

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("predict")
    vocab = shared_path("fixtures", "t5_sentencepiece.model")
    labelled = write_label_task(root / "validation", vocab, n=12, seed=3, varied_lengths=True)
    opened = CachedSplit.open(labelled)
    examples = [dict(ex, label=-1, targets_pretokenized="<unk>") for ex in opened.examples]
    meta = {k: v for k, v in opened.meta.items() if k not in ("features", "num_examples", "format_version")}
    unlabelled = write_cached_split(str(root / "test"), meta=dict(meta, split="test"), examples=examples,
                                    features={k: np.asarray(v) for k, v in opened.features.items()})
    prompt = root / "prompt.npy"
    np.save(prompt, np.random.RandomState(0).normal(size=(4, 4)).astype(np.float32))
    return dict(labelled=labelled, unlabelled=unlabelled, prompt=str(prompt), root=root,
                checkpoint=str(shared_path("fixtures", "t5x_t5_1_1_tiny", "checkpoint_3")))


def _predict(world, out, mode):
    return cli_main.main(["predict", "--gin_file=sizes/prompt_tuning_test.gin", "--gin_file=runs/predict.gin",
                          f"--gin.PROMPT_SOURCE='{world['prompt']}'", f"--gin.OUTPUT_FILE='{out}'",
                          f"--gin.CHECKPOINT='{world['checkpoint']}'", f"--gin.EVAL_CACHE='{world['unlabelled']}'",
                          "--gin.BATCH_SIZE=4", f"--gin.EVAL_MODE='{mode}'"])


@pytest.mark.parametrize("mode", ["rank", "decode"])
def test_predictions_on_an_unlabelled_split_are_in_order_and_equal_evaluations(world, mode):
    out = world["root"] / f"{mode}.jsonl"
    assert _predict(world, out, mode) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    split = CachedSplit.open(world["unlabelled"])
    assert [r["index"] for r in rows] == list(range(12))
    assert [r["idx"] for r in rows] == [ex["idx"] for ex in split.examples]
    assert [r["inputs"] for r in rows] == [ex["inputs_pretokenized"] for ex in split.examples]
    # The same prompt evaluated on the labelled copy predicts the same, example by example.
    data = DataConfig(eval_cache=world["labelled"], batch_size=4)
    labelled, vocabulary = assembly.open_eval_data(data)
    config, frozen = assembly.open_model(FrozenModel(world["checkpoint"], t5_config("t5_1_1_prompt_tuning_test")))
    model, trainable, masks = assembly.prompted_from_saved(config, assembly.read_saved_prompt(world["prompt"]))
    evaluator = assembly.evaluator_for(model, labelled, vocabulary, data, EvalConfig(mode=mode))
    assert [r["prediction"] for r in rows] == evaluator.predictions_text(trainable, frozen, masks)
    if mode == "rank":
        assert all(r["prediction"] == ("yes", "no")[r["label"]] and r["score"] <= 0 for r in rows)
    else:
        assert all("score" not in r for r in rows)


def test_scoring_an_unlabelled_split_points_to_predict(world, capsys):
    code = cli_main.main(["evaluate", "--gin_file=sizes/prompt_tuning_test.gin", "--gin_file=runs/eval.gin",
                          f"--gin.PROMPT_SOURCE='{world['prompt']}'", f"--gin.CHECKPOINT='{world['checkpoint']}'",
                          f"--gin.EVAL_CACHE='{world['unlabelled']}'", "--gin.BATCH_SIZE=4"])
    err = capsys.readouterr().err
    assert code == 2 and "xprompt-jax predict" in err and "has no labels" in err


def test_a_submission_file_needs_a_benchmark_task_and_is_refused_before_any_work(world, tmp_path, capsys):
    out = tmp_path / "p.jsonl"
    code = cli_main.main(["predict", "--gin_file=sizes/prompt_tuning_test.gin", "--gin_file=runs/predict.gin",
                          f"--gin.PROMPT_SOURCE='{world['prompt']}'", f"--gin.OUTPUT_FILE='{out}'",
                          f"--gin.CHECKPOINT='{world['checkpoint']}'", f"--gin.EVAL_CACHE='{world['unlabelled']}'",
                          f"--gin.SUBMISSION_DIR='{tmp_path / 'submit'}'"])
    assert code == 2 and "SUBMISSION_DIR" in capsys.readouterr().err
    assert not out.exists() and not (tmp_path / "submit").exists()


def test_raw_text_inputs_predict_as_the_tasks_own_cache(world, tmp_path):
    """INPUT_FILE: the first RTE test lines in their official format (formatted by RTE's preprocessors), and
    the same examples as {"inputs": text} lines, predict exactly what the seqio-written cache of those
    examples predicts."""
    import tasks.superglue
    from xprompt_jax.data.write_cache import write_cache
    vocab = shared_path("fixtures", "t5_sentencepiece.model")
    tasks.superglue.register_superglue(data_dir=str(shared_path("data", "superglue")), vocab_path=str(vocab))
    task = "taskless_super_glue_rte_v102"
    cache = write_cache(task, "test", str(tmp_path / "rte_test"), {"inputs": 64, "targets": 8}, num_examples=6)
    with open(shared_path("data", "superglue", "RTE", "test.jsonl")) as f:
        raw = [next(f) for _ in range(6)]
    (tmp_path / "raw.jsonl").write_text("".join(raw))
    (tmp_path / "text.jsonl").write_text("".join(json.dumps({"inputs": ex["inputs_pretokenized"]}) + "\n"
                                                 for ex in cache.examples))
    common = ["predict", "--gin_file=sizes/prompt_tuning_test.gin", "--gin_file=runs/predict.gin",
              f"--gin.PROMPT_SOURCE='{world['prompt']}'", f"--gin.CHECKPOINT='{world['checkpoint']}'",
              "--gin.INPUT_LENGTH=64", "--gin.TARGET_LENGTH=8", "--gin.EVAL_MODE='rank'", "--gin.BATCH_SIZE=4",
              f"--gin.TASK='{task}'", f"--gin.xprompt_jax.DataConfig.vocabulary_path='{vocab}'"]
    outputs = {}
    for name, extra in (("cache", [f"--gin.EVAL_CACHE='{cache.path}'"]),
                        ("raw", [f"--gin.INPUT_FILE='{tmp_path / 'raw.jsonl'}'"]),
                        ("text", [f"--gin.INPUT_FILE='{tmp_path / 'text.jsonl'}'"])):
        out = tmp_path / f"{name}.jsonl"
        assert cli_main.main(common + extra + [f"--gin.OUTPUT_FILE='{out}'"]) == 0
        outputs[name] = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["inputs"] for r in outputs["raw"]] == [ex["inputs_pretokenized"] for ex in cache.examples]
    assert [r["idx"] for r in outputs["raw"]] == [ex["idx"] for ex in cache.examples]
    for name in ("raw", "text"):
        assert [r["prediction"] for r in outputs[name]] == [r["prediction"] for r in outputs["cache"]]
        np.testing.assert_allclose([r["score"] for r in outputs[name]], [r["score"] for r in outputs["cache"]],
                                   rtol=1e-5)


def test_bad_input_lines_are_named(world, tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"inputs": "a b c"}\n{"inputs": "d e"\n')
    code = cli_main.main(["predict", "--gin_file=sizes/prompt_tuning_test.gin", "--gin_file=runs/predict.gin",
                          f"--gin.PROMPT_SOURCE='{world['prompt']}'", f"--gin.OUTPUT_FILE='{tmp_path / 'o.jsonl'}'",
                          f"--gin.CHECKPOINT='{world['checkpoint']}'", f"--gin.INPUT_FILE='{bad}'",
                          f"--gin.xprompt_jax.DataConfig.vocabulary_path='{shared_path('fixtures', 't5_sentencepiece.model')}'"])
    assert code == 2 and f"{bad} line 2 is not JSON" in capsys.readouterr().err
    assert not (tmp_path / "o.jsonl").exists()


def test_beam_search_is_a_decoding_mode_and_one_beam_is_greedy(world, tmp_path):
    outputs = {}
    for name, extra in (("greedy", ["--gin.EVAL_MODE='decode'"]),
                        ("beam1", ["--gin.EVAL_MODE='beam'", "--gin.xprompt_jax.EvalConfig.beam_size=1",
                                   "--gin.xprompt_jax.EvalConfig.beam_alpha=0.0"]),
                        ("beam4", ["--gin.EVAL_MODE='beam'"])):
        out = tmp_path / f"{name}.jsonl"
        assert cli_main.main(["predict", "--gin_file=sizes/prompt_tuning_test.gin", "--gin_file=runs/predict.gin",
                              f"--gin.PROMPT_SOURCE='{world['prompt']}'", f"--gin.OUTPUT_FILE='{out}'",
                              f"--gin.CHECKPOINT='{world['checkpoint']}'",
                              f"--gin.EVAL_CACHE='{world['unlabelled']}'", "--gin.BATCH_SIZE=4", *extra]) == 0
        outputs[name] = [json.loads(line)["prediction"] for line in out.read_text().splitlines()]
    assert outputs["beam1"] == outputs["greedy"] and len(outputs["beam4"]) == 12
