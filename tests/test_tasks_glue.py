"""GLUE tasks: T5's strings on constructed examples (no GLUE files exist here), shaped as TFDS's glue
builder declares them; and every spec's field order is T5's rule applied to the TFDS features."""
import tempfile

import pytest
from helpers import shared_path

seqio = pytest.importorskip("seqio")
tf = pytest.importorskip("tensorflow")
tfds = pytest.importorskip("tensorflow_datasets")

import tasks.glue as glue  # noqa: E402
from tasks.specs import TASK_SPECS  # noqa: E402


@pytest.fixture(autouse=True)
def tfds_temp_files_in_tmp_path(tmp_path, monkeypatch):
    """TFDS leaves an empty temporary folder per builder it constructs; keep them in pytest's tmp_path."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))


@pytest.fixture(scope="module", autouse=True)
def registered():
    glue.register_glue(vocab_path=str(shared_path("fixtures", "t5_sentencepiece.model")))


def tfds_spec(benchmark, config, tmp_path):
    builder_cls = tfds.text.glue.Glue if benchmark == "glue" else tfds.text.super_glue.SuperGlue
    return builder_cls(config=config, data_dir=str(tmp_path)).info.features.get_tensor_spec()


def formatted(task_name, fields, tmp_path):
    """Runs one TFDS-shaped example through the registered task's preprocessors."""
    task = seqio.get_mixture_or_task(task_name)
    spec = tfds_spec("glue", TASK_SPECS[task_name].config, tmp_path)
    assert set(fields) == set(spec), "the example must have exactly TFDS's fields"
    example = {k: tf.constant(v, dtype=spec[k].dtype) for k, v in fields.items()}
    (out,) = list(task.preprocess_precache(tf.data.Dataset.from_tensors(example)).as_numpy_iterator())
    return out["inputs_pretokenized"].decode(), out["targets_pretokenized"].decode()


CASES = [
    ("cola", {"sentence": "The book was read by John.", "label": 1, "idx": 3},
     "cola sentence: The book was read by John.", "acceptable"),
    ("sst2", {"sentence": "a gripping , funny film", "label": 1, "idx": 0},
     "sst2 sentence: a gripping , funny film", "positive"),
    ("mrpc", {"sentence1": "He left.", "sentence2": "He went away.", "label": 1, "idx": 0},
     "mrpc sentence1: He left. sentence2: He went away.", "equivalent"),
    ("qqp", {"question1": "How do I learn Python?", "question2": "What is Python?", "label": 0, "idx": 0},
     "qqp question1: How do I learn Python? question2: What is Python?", "not_duplicate"),
    ("mnli", {"premise": "A man is sleeping.", "hypothesis": "Nobody is sleeping.", "label": 2, "idx": 0},
     "mnli hypothesis: Nobody is sleeping. premise: A man is sleeping.", "contradiction"),
    ("mnli_matched", {"premise": "A man is sleeping.", "hypothesis": "A man rests.", "label": 0, "idx": 0},
     "mnli hypothesis: A man rests. premise: A man is sleeping.", "entailment"),
    ("mnli_mismatched", {"premise": "It rained.", "hypothesis": "The ground is wet.", "label": 1, "idx": 0},
     "mnli hypothesis: The ground is wet. premise: It rained.", "neutral"),
    ("qnli", {"question": "Where is Paris?", "sentence": "Paris is in France.", "label": 0, "idx": 0},
     "qnli question: Where is Paris? sentence: Paris is in France.", "entailment"),
    ("rte", {"sentence1": "A cat sat.", "sentence2": "An animal sat.", "label": 1, "idx": 0},
     "rte sentence1: A cat sat. sentence2: An animal sat.", "not_entailment"),
    ("rte", {"sentence1": "A cat sat.", "sentence2": "An animal sat.", "label": -1, "idx": 0},  # test split
     "rte sentence1: A cat sat. sentence2: An animal sat.", "<unk>"),
]


@pytest.mark.parametrize("taskless", [False, True])
@pytest.mark.parametrize("task,fields,inputs,target", CASES, ids=[c[0] for c in CASES])
def test_glue_formats_as_t5(task, fields, inputs, target, taskless, tmp_path):
    name = f"{'taskless_' if taskless else ''}glue_{task}_v002"
    expected_inputs = inputs.split(" ", 1)[1] if taskless else inputs
    assert formatted(name, fields, tmp_path) == (expected_inputs, target)
    assert TASK_SPECS[name].postprocess(target) == fields["label"]  # "<unk>" -> -1, as an unlabelled example


# T5 writes round(score * 5) / 5 with one decimal; TensorFlow rounds halves to even (2.5 -> 12.5 -> 12).
@pytest.mark.parametrize("score,target", [(3.72, "3.8"), (2.5, "2.4"), (4.91, "5.0"), (0.04, "0.0"), (1.0, "1.0")])
@pytest.mark.parametrize("taskless", [False, True])
def test_stsb_target_is_the_score_rounded_to_a_fifth(score, target, taskless, tmp_path):
    fields = {"sentence1": "A man is playing a guitar.", "sentence2": "A man plays the guitar.", "label": score,
              "idx": 0}
    inputs = "stsb sentence1: A man is playing a guitar. sentence2: A man plays the guitar."
    name = f"{'taskless_' if taskless else ''}glue_stsb_v002"
    assert formatted(name, fields, tmp_path) == (inputs.split(" ", 1)[1] if taskless else inputs, target)
    assert TASK_SPECS[name].postprocess(target) == float(target)


GLUE_FORMAT_SPECS = sorted(n for n, s in TASK_SPECS.items() if s.text_format in ("glue", "stsb") and not s.taskless)


@pytest.mark.parametrize("name", GLUE_FORMAT_SPECS)
def test_field_order_is_t5s_rule_on_the_tfds_features(name, tmp_path):
    spec = TASK_SPECS[name]
    builder = tfds.builder(spec.tfds_name, data_dir=str(tmp_path))  # GLUE, SuperGLUE and the EPT suite's "Others"
    fields = set(builder.info.features.get_tensor_spec()) - {"label", "idx"}
    if spec.rekey:
        fields = {spec.rekey.get(f, f) for f in fields}
    # T5 names MultiRC's order and WiC's fields (leaving out WiC's word offsets); otherwise every text
    # field, sorted.
    explicit = {"multirc": ("question", "answer", "paragraph"), "wic": ("sentence1", "sentence2", "word")}
    assert set(spec.feature_names) <= fields
    assert spec.feature_names == explicit.get(spec.config, tuple(sorted(fields)))


def test_glue_reads_tfds_2_0_0_and_has_both_mnli_validation_sets():
    task = seqio.get_mixture_or_task("glue_mnli_v002")
    assert "glue/mnli:2.0.0" in repr(task.source)
    assert {"validation_matched", "validation_mismatched"} <= set(task.splits)
    assert seqio.get_mixture_or_task("taskless_glue_mnli_matched_v002").splits == ("validation", "test")
