"""SuperGLUE seqio tasks on the official files in ../shared: counts, T5's strings (expected strings written
by hand from the .jsonl lines), TFDS-identical features, few-shot splits, bad input, re-registration."""
import importlib
import json
import os
import tempfile

import numpy as np
import pytest
from helpers import shared_path

seqio = pytest.importorskip("seqio")
tfds = pytest.importorskip("tensorflow_datasets")

import tasks.superglue as superglue  # noqa: E402
from tasks import superglue_files as files  # noqa: E402
from tasks.sources import TaskSource, output_signature  # noqa: E402
from tasks.specs import get_spec  # noqa: E402
from xprompt_jax.errors import DataError  # noqa: E402


@pytest.fixture(scope="module")
def dirs():
    return {"data_dir": str(shared_path("data", "superglue")),
            "fewglue_dir": str(shared_path("data", "fewglue")),
            "vocab_path": str(shared_path("fixtures", "t5_sentencepiece.model"))}


@pytest.fixture(autouse=True)
def tfds_temp_files_in_tmp_path(tmp_path, monkeypatch):
    """TFDS leaves an empty temporary folder per builder it constructs; keep them in pytest's tmp_path."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))


@pytest.fixture(scope="module", autouse=True)
def registered(dirs):
    superglue.register_superglue(**dirs)
    yield
    superglue.register_superglue(**dirs)


@pytest.fixture
def reregister(dirs):
    """For tests that register other folders: the shared ones are back afterwards."""
    yield
    superglue.register_superglue(**dirs)


def examples(task_name, split, **kwargs):
    ds = seqio.get_mixture_or_task(task_name).get_dataset(sequence_length=None, split=split, shuffle=False, **kwargs)
    return list(ds.as_numpy_iterator())


def text_pair(example):
    return example["inputs_pretokenized"].decode(), example["targets_pretokenized"].decode()


def source_count(task_name, split):
    ds = seqio.get_mixture_or_task(task_name).source.get_dataset(split=split, shuffle=False)
    return sum(1 for _ in ds.as_numpy_iterator())


def find(task_name, split, **idx):
    """The one example with these idx values, through the task's preprocessors (only it is tokenised)."""
    import tensorflow as tf

    task = seqio.get_mixture_or_task(task_name)

    def match(x):
        found = tf.constant(True)
        for key, value in idx.items():
            field = x["idx"][key.split("/")[1]] if "/" in key else x[key]
            found = tf.logical_and(found, tf.equal(tf.cast(field, tf.int64), value))
        return found

    ds = task.source.get_dataset(split=split, shuffle=False).filter(match)
    (example,) = [ex for ex in task.preprocess_precache(ds).as_numpy_iterator()
                  if all(int(ex[k]) == v for k, v in idx.items())]
    return example


# -- counts -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("task,count", [("cb", 56), ("copa", 100), ("rte", 277), ("wic", 638), ("wsc", 104),
                                        ("boolq", 3270)])
def test_val_split_has_the_official_count(task, count):
    assert source_count(f"super_glue_{task}_v102", "validation") == count


def test_multirc_val_is_4848_answers_in_953_questions():
    ds = seqio.get_mixture_or_task("taskless_super_glue_multirc_v102").source.get_dataset("validation", shuffle=False)
    idx = [ex["idx"] for ex in ds.as_numpy_iterator()]
    assert len(idx) == 4848
    assert len({int(i["question"]) for i in idx}) == 953
    assert len({int(i["paragraph"]) for i in idx}) == 83


def test_wsc_simple_trains_on_the_259_positive_examples_and_evaluates_all_104():
    train = examples("super_glue_wsc_v102_simple_train", "train")
    assert len(train) == 259 and all(int(ex["label"]) == 1 for ex in train)
    assert len(examples("super_glue_wsc_v102_simple_eval", "validation")) == 104


# -- T5's strings, written out by hand ----------------------------------------------------------------
HAND_WRITTEN = [
    # task, split, idx, inputs with the task word (the taskless flavour drops the first word), target
    ("boolq", "validation", {"idx": 2644},
     "boolq passage: The Punisher (season 2) -- The season is set for release in 2019. "
     "question: are they going to make a punisher season 2", "True"),
    ("cb", "validation", {"idx": 14},
     "cb hypothesis: they should abolish it premise: A: Your turn. B: Okay. Uh, I don't think they should "
     "abolish it.", "contradiction"),
    ("copa", "validation", {"idx": 32},
     "copa choice1: I inhaled smoke. choice2: I lowered my voice. premise: I coughed. question: cause", "choice1"),
    ("rte", "validation", {"idx": 208},
     "rte hypothesis: Drummondville contains the girl. premise: The girl was found in Drummondville.",
     "not_entailment"),
    ("wic", "validation", {"idx": 239}, "wic sentence1: Bean curd. sentence2: Lemon curd. word: curd", "True"),
    ("wsc", "validation", {"idx": 46}, "wsc text: Jane gave * Joan * candy because # she # was hungry.", "True"),
    ("wsc_v102_simple_eval", "validation", {"idx": 46},
     "wsc: Jane gave Joan candy because *she* was hungry.", "Joan"),
    ("multirc", "validation", {"idx/answer": 2134},
     "multirc question: Did Susan's sick friend recover? answer: Yes,she recovered paragraph: Susan wanted to "
     "have a birthday party. She called all of her friends. She has five friends. Her mom said that Susan can "
     "invite them all to the party. Her first friend could not go to the party because she was sick. Her second "
     "friend was going out of town. Her third friend was not so sure if her parents would let her. The fourth "
     "friend said maybe. The fifth friend could go to the party for sure. Susan was a little sad. On the day of "
     "the party, all five friends showed up. Each friend had a present for Susan. Susan was happy and sent each "
     "friend a thank you card the next week. ", "True"),
    ("record", "fewglue_dev32", {"idx/query": 14718},
     "record query: Flying start: @placeholder seemed to be cruising towards victory when she took the first "
     "set with minimal fuss entities: Anna Schmiedlova, French Open, Garbine Muguruza, Grand Slam, Li Na, Open, "
     "Roland Garros, Serena, Serena Williams, Spanish, Venezuelan, Venus, Williams passage: Serena Williams was "
     "given the worst beating of her Grand Slam career in a sensational upset at the French Open today when she "
     "was beaten 6-2, 6-2 by 20 year-old Garbine Muguruza. The six-feet tall world No 35, of Spanish and "
     "Venezuelan heritage, took advantage of windy and cold conditions to blow away the top seed in the second "
     "round and keep the shocks coming at Roland Garros. The women’s draw has been blown wide open as, for the "
     "first time in the Open era, the top two seeds are out before the third round following Li Na’s early "
     "demise. No 1 seed Serena defeated 6-2, 6-2 by Garbine Muguruza. Venus beaten 2-6, 6-3, 6-4 by Anna "
     "Schmiedlova. Williams sisters were due to meet in third round at Roland Garros", "Venus"),
]


def _name(task, taskless):
    base = f"super_glue_{task}" if task.startswith("wsc_v102") else f"super_glue_{task}_v102"
    return ("taskless_" if taskless else "") + base


@pytest.mark.parametrize("task,split,idx,inputs,target", HAND_WRITTEN, ids=[h[0] for h in HAND_WRITTEN])
def test_known_example_formats_as_t5_writes_it(task, split, idx, inputs, target):
    assert text_pair(find(_name(task, False), split, **idx)) == (inputs, target)
    taskless = inputs.split(" ", 1)[1]  # e.g. "rte hypothesis: ..." -> "hypothesis: ..."
    assert text_pair(find(_name(task, True), split, **idx)) == (taskless, target)


def test_multirc_and_record_keep_what_scoring_needs():
    multirc = find("super_glue_multirc_v102", "validation", **{"idx/answer": 2134})
    assert (int(multirc["idx/paragraph"]), int(multirc["idx/question"])) == (36, 422)
    record = find("super_glue_record_v102", "fewglue_dev32", **{"idx/query": 14718})
    assert [a.decode() for a in record["answers"]] == ["Venus"] and int(record["idx/passage"]) == 9511


def test_wsc_simple_marks_the_pronoun_t5_writes_out_by_hand():
    # span2_index of this line points at "use", not "it"; T5 substitutes the text it meant.
    ex = find("taskless_super_glue_wsc_v102_simple_eval", "validation", idx=42)
    assert text_pair(ex) == (
        "When they had eventually calmed down a bit , and had gotten home, Mr. Farley put the magic pebble in an "
        "iron safe . Some day they might want to use *it* , but really for now, what more could they wish for?",
        "safe")


def diagnostics_dir(tmp_path):
    (tmp_path / "AX-b").mkdir()
    (tmp_path / "AX-b" / "AX-b.jsonl").write_text(
        '{"sentence1": "The cat sat on the mat.", "sentence2": "A cat sat.", "label": "entailment", "idx": 0}\n')
    (tmp_path / "AX-g").mkdir()
    (tmp_path / "AX-g" / "AX-g.jsonl").write_text(
        '{"premise": "The nurse said she was tired.", "hypothesis": "The nurse was tired.", "idx": 0, '
        '"label": "not_entailment", "pair_id": 7}\n')
    return tmp_path


@pytest.mark.parametrize("taskless", [False, True])
def test_diagnostics_are_cast_as_rte(tmp_path, dirs, taskless):
    root = diagnostics_dir(tmp_path)
    features = superglue.output_features(dirs["vocab_path"])
    expected = {"axb": ("rte hypothesis: A cat sat. premise: The cat sat on the mat.", "entailment"),
                "axg": ("rte hypothesis: The nurse was tired. premise: The nurse said she was tired.",
                        "not_entailment")}
    for task, (inputs, target) in expected.items():
        spec = get_spec(_name(task, taskless))
        made = superglue.make_task(spec, TaskSource(spec, data_dir=str(root)), features)
        assert made.splits == ("test",)
        (ex,) = list(made.get_dataset(sequence_length=None, split="test", shuffle=False).as_numpy_iterator())
        assert text_pair(ex) == ((inputs.split(" ", 1)[1] if taskless else inputs), target)


# -- local files give TFDS's features -----------------------------------------------------------------
def _plain(value):
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return _plain(value.item()) if value.ndim == 0 else [_plain(v) for v in value.tolist()]
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    return value


CONFIGS = {"BoolQ": "boolq", "CB": "cb", "COPA": "copa", "MultiRC": "multirc", "RTE": "rte", "WiC": "wic",
           "WSC": "wsc.fixed", "ReCoRD": "record"}
FILES = ([("superglue", t, "val.jsonl") for t in CONFIGS if t != "ReCoRD"] + [("superglue", "WSC", "train.jsonl")]
         + [("fewglue", t, f) for t in CONFIGS for f in ("train.jsonl", "dev32.jsonl")])


@pytest.mark.parametrize("folder,task,file", FILES, ids=["/".join(f) for f in FILES])
def test_local_examples_equal_what_the_tfds_builder_makes_of_the_same_file(folder, task, file, tmp_path):
    config = CONFIGS[task]
    path = str(shared_path("data", folder, task, file))
    builder = tfds.text.super_glue.SuperGlue(config=config, data_dir=str(tmp_path))
    expected = [_plain(builder.info.features.encode_example(ex))
                for _, ex in builder._generate_examples(path, "validation")]
    assert [_plain(ex) for ex in files.load_examples(config, path)] == expected
    assert output_signature(config) == builder.info.features.get_tensor_spec()


# -- few-shot -----------------------------------------------------------------------------------------
def test_few_shot_subsets_are_fixed_nested_and_shared_by_both_flavours():
    ids = {k: [int(ex["idx"]) for ex in examples("super_glue_rte_v102", f"train_k{k}")] for k in (4, 16, 32)}
    assert {k: len(v) for k, v in ids.items()} == {4: 4, 16: 16, 32: 32}
    assert set(ids[4]) <= set(ids[16]) <= set(ids[32])
    assert ids[16] == sorted(ids[16])  # kept in file order
    assert [int(ex["idx"]) for ex in examples("taskless_super_glue_rte_v102", "train_k16")] == ids[16]
    assert [int(ex["idx"]) for ex in examples("super_glue_rte_v102", "train_k16")] == ids[16]


def test_multirc_few_shot_takes_whole_paragraphs(dirs):
    rows = examples("super_glue_multirc_v102", "train_k4")
    paragraphs = {int(ex["idx/paragraph"]) for ex in rows}
    assert len(paragraphs) == 4
    with open(os.path.join(dirs["data_dir"], "MultiRC", "train.jsonl")) as f:
        lines = [json.loads(line) for line in f]
    answers = sum(len(q["answers"]) for row in lines if row["idx"] in paragraphs for q in row["passage"]["questions"])
    assert len(rows) == answers


def test_wsc_simple_few_shot_draws_among_positive_examples():
    rows = examples("super_glue_wsc_v102_simple_train", "train_k16")
    assert len(rows) == 16 and all(int(ex["label"]) == 1 for ex in rows)


def test_fewglue_files_are_named_splits():
    assert len(examples("super_glue_rte_v102", "fewglue_train")) == 32
    assert len(examples("super_glue_cb_v102", "fewglue_dev32")) == 32
    assert len(examples("taskless_super_glue_wsc_v102_simple_eval", "fewglue_dev32")) == 32


# -- bad input ----------------------------------------------------------------------------------------
def _rte_task(root, dirs, **kwargs):
    spec = get_spec("super_glue_rte_v102")
    return superglue.make_task(spec, TaskSource(spec, data_dir=str(root), **kwargs),
                               superglue.output_features(dirs["vocab_path"]))


def test_malformed_line_names_file_and_line(tmp_path, dirs):
    (tmp_path / "RTE").mkdir()
    path = tmp_path / "RTE" / "val.jsonl"
    path.write_text('{"premise": "a", "hypothesis": "b", "label": "entailment", "idx": 0}\n{"premise": "a",\n')
    with pytest.raises(DataError, match=rf"{path}, line 2: not valid JSON"):
        _rte_task(tmp_path, dirs).get_dataset(sequence_length=None, split="validation", shuffle=False)


def test_line_that_is_no_example_names_file_line_and_field(tmp_path, dirs):
    (tmp_path / "RTE").mkdir()
    path = tmp_path / "RTE" / "val.jsonl"
    path.write_text('{"hypothesis": "b", "label": "entailment", "idx": 0}\n')
    with pytest.raises(DataError, match=rf"{path}, line 1: not an official rte example \(missing field 'premise'\)"):
        _rte_task(tmp_path, dirs).get_dataset(sequence_length=None, split="validation", shuffle=False)
    path.write_text('{"premise": "a", "hypothesis": "b", "label": "maybe", "idx": 0}\n')
    with pytest.raises(DataError, match=r"line 1: .*label 'maybe' is none of"):
        _rte_task(tmp_path, dirs).get_dataset(sequence_length=None, split="validation", shuffle=False)


def test_missing_split_file_says_which_and_where(dirs):
    with pytest.raises(DataError, match=r"split 'train' needs .*BoolQ/train.jsonl, which is missing from the "
                                        r"SuperGLUE folder"):
        examples("super_glue_boolq_v102", "train")


def test_unknown_split_lists_the_splits():
    with pytest.raises(DataError, match=r"has no split 'dev'; its splits: train, validation, test, train_k4"):
        examples("super_glue_rte_v102", "dev")


def test_fewglue_split_without_a_fewglue_folder_says_how_to_name_one(dirs):
    task = _rte_task(dirs["data_dir"], dirs)
    with pytest.raises(DataError, match="FewGLUE splits need a FewGLUE folder: set XPROMPT_FEWGLUE_DIR"):
        task.get_dataset(sequence_length=None, split="fewglue_train", shuffle=False)


def test_missing_folder_passed_as_argument_fails_at_registration(tmp_path, reregister):
    with pytest.raises(DataError, match=rf"SuperGLUE folder {tmp_path}/absent \(passed as an argument\) does not exist"):
        superglue.register_superglue(data_dir=str(tmp_path / "absent"))


def test_missing_folder_from_the_environment_says_so_when_read(tmp_path, monkeypatch, reregister):
    monkeypatch.setenv("XPROMPT_SUPERGLUE_DIR", str(tmp_path / "absent"))
    superglue.register_superglue()
    with pytest.raises(DataError, match=rf"SuperGLUE folder {tmp_path}/absent \(from \$XPROMPT_SUPERGLUE_DIR\) "
                                        r"does not exist: set XPROMPT_SUPERGLUE_DIR or pass data_dir="):
        examples("super_glue_cb_v102", "validation")


# -- registration -------------------------------------------------------------------------------------
def test_registration_is_idempotent_and_follows_the_latest_folder(tmp_path, dirs, reregister):
    (tmp_path / "RTE").mkdir()
    (tmp_path / "RTE" / "val.jsonl").write_text(
        '{"premise": "p", "hypothesis": "h", "label": "entailment", "idx": 5}\n')
    superglue.register_superglue(data_dir=str(tmp_path), vocab_path=dirs["vocab_path"])
    assert text_pair(examples("super_glue_rte_v102", "validation")[0]) == ("rte hypothesis: h premise: p", "entailment")
    superglue.register_superglue(**dirs)
    assert len(examples("super_glue_rte_v102", "validation")) == 277
    importlib.reload(superglue)  # importing again registers again, without complaint


def test_default_is_tfds_and_the_public_vocabulary(monkeypatch, reregister):
    for env in ("XPROMPT_SUPERGLUE_DIR", "XPROMPT_FEWGLUE_DIR", "XPROMPT_VOCAB_PATH"):
        monkeypatch.delenv(env, raising=False)
    superglue.register_superglue()
    task = seqio.get_mixture_or_task("taskless_super_glue_rte_v102")
    assert "super_glue/rte:1.0.2" in repr(task.source)
    vocabulary = task.output_features["targets"].vocabulary
    assert vocabulary.sentencepiece_model_file == "gs://t5-data/vocabs/cc_all.32000/sentencepiece.model"
    assert vocabulary.extra_ids == 100
    assert "fewglue_train" not in task.splits and "train_k16" in task.splits


# -- postprocessing inverts formatting on the real files ----------------------------------------------
@pytest.mark.parametrize("task", ["boolq", "cb", "copa", "multirc", "rte", "wic", "wsc", "wsc_v102_simple_eval"])
def test_postprocessed_target_is_the_source_label_for_every_validation_example(task):
    """T5's text step, then the postprocessor on its target text: back to the label, for every example."""
    from tasks.preprocessors import text_preprocessors

    name = _name(task, taskless=True)
    spec, source = get_spec(name), seqio.get_mixture_or_task(name).source
    labels = [int(ex["label"]) for ex in source.get_dataset("validation", shuffle=False).as_numpy_iterator()]
    ds = source.get_dataset("validation", shuffle=False)
    for step in text_preprocessors(spec):
        ds = step(ds)
    recovered = []
    for ex in ds.as_numpy_iterator():
        out = spec.postprocess(ex["targets"], example={**ex, "targets_pretokenized": ex["targets"]}, is_target=True)
        recovered.append(out["value"] if isinstance(out, dict) else out)
    assert recovered == labels and len(set(labels)) == len(spec.label_names or (0, 1))


def test_seqio_accepts_the_metric_functions_as_prediction_metrics():
    for task in ("cb", "multirc", "record", "wsc_v102_simple_eval"):
        registered_task = seqio.get_mixture_or_task(_name(task, taskless=False))
        assert len(registered_task.predict_metric_fns) == len(get_spec(registered_task.name).metric_fns)
