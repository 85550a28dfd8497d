"""Leaderboard files from predictions on the official SuperGLUE test files (../shared/data/superglue).

The rows are what ``predict`` writes for each test example (its ``idx`` as the cache records it, a label
index under rank classification); the files must carry every test example's ``idx`` in order, labels in
the format the benchmark's reference toolkit (jiant) submits, and MultiRC's paragraph/question/answer
nesting exactly as the test file nests them.
"""
import json

import pytest
from helpers import shared_path

from xprompt_jax.commands.submission import glue_tsv, superglue_lines, write_submission
from xprompt_jax.errors import DataError


def _test_file(task):
    with open(shared_path("data", "superglue", task, "test.jsonl")) as f:
        return [json.loads(line) for line in f]


@pytest.mark.parametrize("task,labels", [("BoolQ", ["false", "true"]), ("WiC", ["false", "true"]),
                                         ("WSC", ["False", "True"]), ("COPA", [0, 1]),
                                         ("CB", ["entailment", "contradiction", "neutral"]),
                                         ("RTE", ["entailment", "not_entailment"])])
def test_superglue_label_tasks_carry_every_test_idx_in_order(task, labels):
    examples = _test_file(task)
    rows = [{"index": i, "idx": ex["idx"], "label": i % len(labels), "prediction": "x"} for i, ex in enumerate(examples)]
    lines = superglue_lines(task, rows, None)
    assert [line["idx"] for line in lines] == [ex["idx"] for ex in examples]
    assert [line["label"] for line in lines] == [labels[i % len(labels)] for i in range(len(examples))]
    assert all(set(line) == {"idx", "label"} for line in lines)


def test_multirc_lines_nest_answers_as_the_test_file_does():
    examples = _test_file("MultiRC")
    rows = []
    for paragraph in examples:
        for question in paragraph["passage"]["questions"]:
            for answer in question["answers"]:
                rows.append({"idx": {"paragraph": paragraph["idx"], "question": question["idx"], "answer": answer["idx"]},
                             "label": answer["idx"] % 2})
    lines = superglue_lines("MultiRC", rows, ["False", "True"])
    assert len(lines) == len(examples)
    for line, paragraph in zip(lines, examples):
        assert line["idx"] == paragraph["idx"]
        assert [q["idx"] for q in line["passage"]["questions"]] == [q["idx"] for q in paragraph["passage"]["questions"]]
        for ours, theirs in zip(line["passage"]["questions"], paragraph["passage"]["questions"]):
            assert [a["idx"] for a in ours["answers"]] == [a["idx"] for a in theirs["answers"]]
            assert all(a["label"] == a["idx"] % 2 for a in ours["answers"])


def test_label_text_is_mapped_and_a_free_text_answer_is_refused():
    rows = [{"index": 0, "idx": 7, "prediction": "not_entailment"}, {"index": 1, "idx": 8, "prediction": "entailment"}]
    assert superglue_lines("RTE", rows, ["entailment", "not_entailment"]) == [
        {"idx": 7, "label": "not_entailment"}, {"idx": 8, "label": "entailment"}]
    with pytest.raises(DataError, match="EVAL_MODE='rank'"):
        superglue_lines("RTE", [{"index": 0, "idx": 1, "prediction": "maybe"}], ["entailment", "not_entailment"])
    assert superglue_lines("ReCoRD", [{"idx": {"passage": 3, "query": 9}, "prediction": "Obama"}], None) == [
        {"idx": 9, "label": "Obama"}]


def test_glue_tsv_has_the_servers_header_and_rows(tmp_path):
    rows = [{"idx": i, "label": i % 2} for i in range(3)]
    assert glue_tsv("sst2", rows, ["negative", "positive"]) == "index\tprediction\n0\t0\n1\t1\n2\t0\n"
    mnli = glue_tsv("mnli_matched", [{"idx": 0, "label": 2}], ["entailment", "neutral", "contradiction"])
    assert mnli.splitlines()[1] == "0\tcontradiction"
    assert glue_tsv("stsb", [{"idx": 4, "prediction": "3.8"}], None).splitlines()[1] == "4\t3.8"

    class Spec:
        benchmark, config, local_name, label_names, name = "glue", "mnli_mismatched", None, None, "glue_mnli_mismatched"
    path = write_submission(str(tmp_path), Spec, [{"idx": 0, "label": 1}])
    assert path.endswith("MNLI-mm.tsv") and open(path).read() == "index\tprediction\n0\tneutral\n"
