"""Zero-shot transfer's pieces: the label mapping QQP <-> MRPC (prompt-tuning's glue_transfer.py), how each
prompt-task pair is scored, and the cosine rule for prompts of different lengths (the command itself runs on
the demo tasks in test_demo)."""
import numpy as np
import pytest

from xprompt_jax.commands.transfer import _matrices, format_table, how_scored, label_map, mean_token_cosine

QQP, MRPC, RTE = "taskless_glue_qqp_v002", "taskless_glue_mrpc_v002", "taskless_glue_rte_v002"


def test_paraphrase_labels_map_both_ways_and_nothing_else_maps():
    assert label_map(QQP, MRPC) == {"duplicate": "equivalent", "not_duplicate": "not_equivalent"}
    assert label_map("glue_mrpc_v002", "glue_qqp_v002") == {"equivalent": "duplicate", "not_equivalent": "not_duplicate"}
    assert label_map(RTE, MRPC) is None
    mapping = label_map(QQP, MRPC)
    assert how_scored(["not_duplicate", "duplicate"], ["not_equivalent", "equivalent"], mapping) == "mapped"
    assert how_scored(["entailment", "not_entailment"], ["not_equivalent", "equivalent"], None) == "rank"
    assert how_scored(["0", "1"], None, None) == "decode"


def test_cosine_of_mean_tokens_handles_prompts_of_different_lengths():
    rng = np.random.RandomState(0)
    a, b = rng.normal(size=(5, 8)), rng.normal(size=(3, 8))
    cosine = mean_token_cosine([a, b, 2.0 * a])
    ma, mb = a.mean(0), b.mean(0)
    assert cosine[0, 1] == pytest.approx(ma @ mb / np.linalg.norm(ma) / np.linalg.norm(mb))
    assert cosine[0, 2] == pytest.approx(1.0) and np.allclose(np.diag(cosine), 1.0)


def test_relative_scores_divide_by_the_targets_own_prompt():
    results = {"t1": {"t1": {"metrics": {"accuracy": 80.0}, "how": "rank"}, "t2": {"metrics": {"accuracy": 40.0}, "how": "rank"}},
               "t2": {"t1": {"metrics": {"accuracy": 30.0}, "how": "rank"}, "t2": {"metrics": {"accuracy": 60.0}, "how": "rank"}}}
    record = _matrices(["t1", "t2"], ["t1", "t2"], results, "accuracy", [np.ones((2, 4)), np.ones((3, 4))])
    assert record["scores"] == [[80.0, 30.0], [40.0, 60.0]]
    assert record["relative"] == [[1.0, 0.5], [0.5, 1.0]]


def test_several_prompts_of_one_task_give_its_mean_and_stddev_on_every_target():
    """Lester et al.'s Table 1: SQuAD prompts of three seeds (``task#tag``) on an out-of-domain set."""
    scores = {"sq#0": (90.0, 60.0), "sq#1": (92.0, 66.0), "sq#2": (94.0, 63.0)}
    results = {t: {p: {"metrics": {"f1": s[j], "em": 0.0}, "how": "decode"} for p, s in scores.items()}
               for j, t in enumerate(["sq", "ood"])}
    record = _matrices(list(scores), ["sq", "ood"], results, "f1", [np.ones((2, 4))] * 3)
    assert record["by_task"]["sq"]["ood"] == {"mean": pytest.approx(63.0), "std": pytest.approx(3.0), "n": 3}
    assert record["relative"][0] == [pytest.approx(90.0 / 92.0), None]  # own: the mean of the task's prompts
    assert "sq (3 prompts): sq 92.0 ± 2.0, ood 63.0 ± 3.0" in format_table(record)
