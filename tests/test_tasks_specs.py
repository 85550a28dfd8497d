"""Task specs and postprocessors, TensorFlow-free: every label round-trips, evaluation scores seqio- and
cache-shaped examples alike, unknown names are listed."""
import subprocess
import sys

import pytest

from tasks import postprocessors
from tasks.specs import TASK_SPECS, get_spec, task_names
from xprompt_jax.errors import DataError


def test_both_flavours_of_every_task_exist():
    super_glue = ["axb", "axg", "boolq", "cb", "copa", "multirc", "record", "rte", "wic", "wsc"]
    glue = ["cola", "mnli", "mnli_matched", "mnli_mismatched", "mrpc", "qnli", "qqp", "rte", "sst2", "stsb"]
    for prefix in ("", "taskless_"):
        for task in super_glue:
            assert f"{prefix}super_glue_{task}_v102" in TASK_SPECS
        for task in glue:
            assert f"{prefix}glue_{task}_v002" in TASK_SPECS
        assert f"{prefix}super_glue_wsc_v102_simple_train" in TASK_SPECS
        assert f"{prefix}super_glue_wsc_v102_simple_eval" in TASK_SPECS
    assert len(task_names("glue")) == 20 and len(task_names("super_glue")) == 24


@pytest.mark.parametrize("name", [n for n, s in TASK_SPECS.items() if s.label_names])
def test_postprocessing_inverts_every_label(name):
    spec = TASK_SPECS[name]
    example = {"idx": {"paragraph": 0, "question": 3, "answer": 9}, "targets_pretokenized": "x"}
    for class_id, label in enumerate(spec.label_names):
        for is_target in (False, True):
            out = spec.postprocess(label, example=example, is_target=is_target)
            value = out["value"] if isinstance(out, dict) else out
            assert value == class_id, (label, out)
    unknown = spec.postprocess("maybe", example=example)
    assert (unknown["value"] if isinstance(unknown, dict) else unknown) == -1


def test_label_names_are_t5s():
    assert get_spec("super_glue_cb_v102").label_names == ("entailment", "contradiction", "neutral")
    assert get_spec("super_glue_copa_v102").label_names == ("choice1", "choice2")
    assert get_spec("super_glue_rte_v102").label_names == ("entailment", "not_entailment")
    for task in ("boolq", "wic", "multirc", "wsc"):
        assert get_spec(f"super_glue_{task}_v102").label_names == ("False", "True")
    assert get_spec("glue_mnli_v002").label_names == ("entailment", "neutral", "contradiction")
    assert get_spec("glue_stsb_v002").label_names is None


def test_stsb_string_to_float():
    spec = get_spec("glue_stsb_v002")
    for text, value in (("0.0", 0.0), ("3.4", 3.4), ("5.0", 5.0)):
        assert spec.postprocess(text) == value
    assert spec.postprocess("very similar") == -1.0


def test_multirc_target_carries_its_question_from_either_example_shape():
    spec = get_spec("taskless_super_glue_multirc_v102")
    seqio_example = {"idx/paragraph": 1, "idx/question": 12, "idx/answer": 40}  # TF: flattened keys
    cache_example = {"idx": {"paragraph": 1, "question": 12, "answer": 40}}      # examples.jsonl: nested
    for example in (seqio_example, cache_example):
        assert spec.postprocess(b"True", example=example, is_target=True) == {"value": 1, "group": 12}
        assert spec.postprocess("False", example=example) == {"value": 0}


def test_record_target_is_all_answers_grouped_by_query():
    spec = get_spec("super_glue_record_v102")
    example = {"answers": [b"Venus", b"Venus Williams"], "idx/passage": 9511, "idx/query": 14718}
    assert spec.postprocess(b"Venus", example=example, is_target=True) == {
        "value": ["Venus", "Venus Williams"], "group": (9511, 14718)}
    assert spec.postprocess("Serena", example=example) == {"value": "Serena"}


def test_wsc_simple_compares_the_generated_referent_with_the_candidate():
    spec = get_spec("super_glue_wsc_v102_simple_eval")
    example = {"targets_pretokenized": b"The demonstrators", "label": 1}
    assert spec.postprocess(b"The demonstrators", example=example, is_target=True) == 1
    assert spec.postprocess("the demonstrators", example=example) == 1   # case and determiners ignored
    assert spec.postprocess("demonstrators", example=example) == 1
    assert spec.postprocess("the city councilmen", example=example) == 0
    assert spec.postprocess("demonstrators' permit", example=example) == 0  # possessive is another referent
    assert spec.postprocess("the", example=example) == -1                   # nothing left: never a match


def test_evaluate_scores_predictions_against_examples():
    spec = get_spec("taskless_super_glue_multirc_v102")
    examples = [{"targets_pretokenized": t, "idx": {"paragraph": 0, "question": q, "answer": a}}
                for a, (q, t) in enumerate([(0, "True"), (0, "False"), (1, "True")])]
    result = spec.evaluate(["True", "False", "False"], examples)
    # F1a: tp 1, fn 1 -> 2/3; exact match: question 0 right, question 1 wrong -> 50.
    assert result == {"f1": pytest.approx(200 / 3), "exact_match": pytest.approx(50.0)}


def test_unknown_task_lists_the_registered_ones():
    with pytest.raises(DataError, match="unknown task 'super_glue_rtee_v102'; registered tasks: .*super_glue_rte_v102"):
        get_spec("super_glue_rtee_v102")


def test_spec_side_imports_no_tensorflow():
    code = ("import sys, tasks.specs, tasks.postprocessors, tasks.metrics, tasks.superglue_files; "
            "bad = [m for m in ('tensorflow', 'seqio', 'tensorflow_datasets') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_as_text_reads_bytes_and_str():
    assert postprocessors.as_text(b"caf\xc3\xa9") == "café"
    assert postprocessors.as_text("café") == "café"
