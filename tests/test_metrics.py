"""Each metric against an independent computation: by hand (worked in the comments) or with NumPy/SciPy."""
import math

import numpy as np
import pytest
import scipy.stats

from tasks import metrics


def test_accuracy_counts_exact_matches_including_invalid_predictions():
    # 3 of 5 right; the -1 (text that is no label) is simply wrong.
    assert metrics.accuracy([0, 1, 1, 0, 1], [0, 1, -1, 1, 1]) == {"accuracy": 60.0}


def test_cb_macro_f1_by_hand():
    targets = [0, 0, 1, 1, 2, 2, 0, 1]
    predictions = [0, 1, 1, -1, 2, 0, 0, 2]
    # class 0: tp 2 (#0, #6), fp 1 (#5), fn 1 (#1)        -> F1 = 4 / 6
    # class 1: tp 1 (#2),     fp 1 (#1), fn 2 (#3, #7)    -> F1 = 2 / 5
    # class 2: tp 1 (#4),     fp 1 (#7), fn 1 (#5)        -> F1 = 2 / 4
    expected = 100 * (4 / 6 + 2 / 5 + 2 / 4) / 3
    result = metrics.mean_multiclass_f1(3)(targets, predictions)
    assert result == {"mean_3class_f1": pytest.approx(expected)}
    assert metrics.accuracy(targets, predictions) == {"accuracy": 50.0}


def test_macro_f1_of_a_class_never_seen_nor_predicted_is_zero():
    # scikit-learn's convention (T5 uses it): an undefined F1 counts as 0 in the mean.
    assert metrics.mean_multiclass_f1(3)([0, 1], [0, 1]) == {"mean_3class_f1": pytest.approx(200 / 3)}


def test_cb_macro_f1_against_numpy_confusion_matrix():
    rng = np.random.default_rng(0)
    targets = rng.integers(0, 3, 200)
    predictions = np.where(rng.random(200) < 0.1, -1, rng.integers(0, 3, 200))
    confusion = np.zeros((3, 4))  # last column: invalid predictions
    np.add.at(confusion, (targets, np.where(predictions < 0, 3, predictions)), 1)
    tp = np.diag(confusion[:, :3])
    precision = tp / confusion[:, :3].sum(axis=0)
    recall = tp / confusion.sum(axis=1)
    expected = 100 * np.mean(2 * precision * recall / (precision + recall))
    result = metrics.mean_multiclass_f1(3)(targets.tolist(), predictions.tolist())["mean_3class_f1"]
    assert result == pytest.approx(expected)


def test_f1_with_invalid_counts_invalid_as_the_wrong_class():
    targets = [1, 1, 0, 0, 1]
    predictions = [1, -1, 5, 1, 0]
    # #1 (target 1, invalid) -> predicted 0: fn;  #2 (target 0, invalid) -> predicted 1: fp
    # tp 1 (#0), fp 2 (#2, #3), fn 2 (#1, #4)  -> F1 = 2 / (2 + 2 + 2)
    assert metrics.f1_score_with_invalid(targets, predictions) == {"f1": pytest.approx(100 * 2 / 6)}


def test_multirc_f1a_and_per_question_exact_match():
    # question 7: both answers right; question 8: one of three wrong; question 9: its one answer right.
    groups = [7, 7, 8, 8, 8, 9]
    gold = [1, 0, 1, 1, 0, 0]
    pred = [1, 0, 1, 0, 0, 0]
    targets = [{"group": g, "value": v} for g, v in zip(groups, gold)]
    predictions = [{"value": v} for v in pred]
    # F1 over all answers: tp 2, fp 0, fn 1 -> 4 / 5.
    assert metrics.multirc_f1_over_all_answers(targets, predictions) == {"f1": pytest.approx(80.0)}
    # Exact match: questions 7 and 9 fully right, 8 not -> 2 / 3.
    assert metrics.multirc_exact_match(targets, predictions) == {"exact_match": pytest.approx(200 / 3)}


def test_multirc_groups_by_question_even_when_interleaved():
    targets = [{"group": 1, "value": 1}, {"group": 2, "value": 1}, {"group": 1, "value": 0}]
    predictions = [{"value": 1}, {"value": 0}, {"value": 0}]
    assert metrics.multirc_exact_match(targets, predictions) == {"exact_match": 50.0}


def test_squad_normalisation_and_max_over_gold():
    assert metrics.normalize_squad("The  Beatles!") == "beatles"
    assert metrics.normalize_squad("an apple, a day") == "apple day"
    targets = [["Barack Obama", "Obama"], ["New York City"]]
    predictions = ["obama.", "New York"]
    # #0: EM with "Obama" -> 1, F1 1.  #1: EM 0; F1: 2 common of 2 predicted and 3 gold -> 2*1*(2/3)/(5/3) = 0.8.
    assert metrics.squad(targets, predictions) == {"em": pytest.approx(50.0), "f1": pytest.approx(90.0)}


def test_record_scores_each_query_once():
    # T5 repeats a query per gold answer; only its first copy counts.
    group = (5, 17)
    targets = [{"value": ["Venus", "Venus Williams"], "group": group}] * 2 + [
        {"value": ["Paris"], "group": (5, 18)}]
    predictions = [{"value": "venus"}, {"value": "something else"}, {"value": "London"}]
    assert metrics.record(targets, predictions) == {"em": pytest.approx(50.0), "f1": pytest.approx(50.0)}


def test_matthews_binary_equals_pearson_of_the_labels():
    rng = np.random.default_rng(1)
    targets = rng.integers(0, 2, 300)
    predictions = np.where(rng.random(300) < 0.7, targets, 1 - targets)
    expected = 100 * np.corrcoef(targets, predictions)[0, 1]
    result = metrics.matthews_corrcoef(targets.tolist(), predictions.tolist())["matthews_corrcoef"]
    assert result == pytest.approx(expected)


def test_matthews_with_an_invalid_prediction_by_hand():
    targets = [1, 1, 0, 0]
    predictions = [1, -1, 0, 1]
    # Classes -1, 0, 1: t = (0, 2, 2), p = (1, 1, 2), c = 2 correct of s = 4.
    # cov_tp = 2*4 - (0*1 + 2*1 + 2*2) = 2; cov_pp = 16 - (1 + 1 + 4) = 10; cov_tt = 16 - (4 + 4) = 8
    expected = 100 * 2 / math.sqrt(10 * 8)
    assert metrics.matthews_corrcoef(targets, predictions)["matthews_corrcoef"] == pytest.approx(expected)


def test_matthews_is_zero_when_undefined():
    assert metrics.matthews_corrcoef([1, 1, 1], [1, 1, 1]) == {"matthews_corrcoef": 0.0}


def test_stsb_correlations_against_numpy_and_scipy():
    rng = np.random.default_rng(2)
    targets = rng.uniform(0, 5, 50)
    predictions = targets + rng.normal(0, 1, 50)
    assert metrics.pearson_corrcoef(targets.tolist(), predictions.tolist())["pearson_corrcoef"] == pytest.approx(
        100 * np.corrcoef(targets, predictions)[0, 1])
    # Spearman = Pearson of the ranks (no ties among continuous draws).
    ranks_t = np.argsort(np.argsort(targets))
    ranks_p = np.argsort(np.argsort(predictions))
    assert metrics.spearman_corrcoef(targets.tolist(), predictions.tolist())["spearman_corrcoef"] == pytest.approx(
        100 * np.corrcoef(ranks_t, ranks_p)[0, 1])
    assert metrics.spearman_corrcoef([1.0, 2.0, 3.0], [3.0, 2.0, 1.0])["spearman_corrcoef"] == pytest.approx(
        100 * scipy.stats.spearmanr([1, 2, 3], [3, 2, 1])[0])


def test_lengths_must_agree():
    with pytest.raises(ValueError, match="2 targets but 1 predictions"):
        metrics.accuracy([0, 1], [0])


def _official_squad_v11(dataset_answers, predictions):
    """SQuAD v1.1's evaluate-v1.1.py, written out from its published definition: normalize_answer (lower,
    punctuation removed, then articles, then whitespace), exact match and token F1 maxed over the gold
    answers, averaged, times 100."""
    import collections
    import re
    import string

    def normalize_answer(s):
        s = s.lower()
        s = "".join(ch for ch in s if ch not in set(string.punctuation))
        s = re.sub(r"\b(a|an|the)\b", " ", s)
        return " ".join(s.split())

    def f1_score(prediction, ground_truth):
        p, g = normalize_answer(prediction).split(), normalize_answer(ground_truth).split()
        common = collections.Counter(p) & collections.Counter(g)
        num_same = sum(common.values())
        if num_same == 0:
            return 0
        precision, recall = 1.0 * num_same / len(p), 1.0 * num_same / len(g)
        return (2 * precision * recall) / (precision + recall)

    def exact_match_score(prediction, ground_truth):
        return normalize_answer(prediction) == normalize_answer(ground_truth)

    em = f1 = 0.0
    for answers, prediction in zip(dataset_answers, predictions):
        em += max(exact_match_score(prediction, a) for a in answers)
        f1 += max(f1_score(prediction, a) for a in answers)
    return {"em": 100.0 * em / len(predictions), "f1": 100.0 * f1 / len(predictions)}


def test_squad_metric_equals_the_official_v11_evaluation():
    """Cases that exercise every normalisation step: articles as words and inside words, punctuation inside
    tokens, case, runs of whitespace, repeated tokens, empty and all-article answers, unicode."""
    answers = [["The Theater"], ["U.S. Army", "the army"], ["  New   York  "], ["a an the"], ["Denver Broncos"],
               ["Broncos Broncos Denver"], ["Café Müller"], ["1,000"], ["the the cat"], ["Obama", "Barack Obama"]]
    predictions = ["theater", "US army!", "new york", "", "Denver  broncos.", "Broncos", "café müller", "1000",
                   "cat the", "barack"]
    ours = metrics.squad(answers, predictions)
    official = _official_squad_v11(answers, predictions)
    assert ours["em"] == pytest.approx(official["em"]) and ours["f1"] == pytest.approx(official["f1"])
    assert 0 < official["em"] < 100 and 0 < official["f1"] < 100
