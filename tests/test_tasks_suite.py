"""MRQA, WinoGrande, Yelp polarity, SciTail and PAWS-Wiki from their official files (the real samples in
../shared/data/samples): every example's strings against T5's rules recomputed here in plain Python from
the raw files; QA scored end to end by decoding; EPT's split protocol on its own and through the tasks.
(TFDS against the files: ``test_tasks_suite_tfds.py``.)"""
import csv
import gzip
import json
import re

import numpy as np
import pytest
from helpers import shared_path

seqio = pytest.importorskip("seqio")
pytest.importorskip("tensorflow")

import tasks.glue  # noqa: E402
import tasks.suite as suite  # noqa: E402
from tasks import ept_splits, official_files  # noqa: E402
from tasks.fingerprint import source_fingerprint  # noqa: E402
from tasks.specs import TASK_SPECS, task_names  # noqa: E402

SAMPLES = ("data", "samples")
# RE2's [[:punct:]] and \s, which T5's TensorFlow regexes use (Python's \s would also match Unicode spaces).
PUNCT, SPACE = r"([!-/:-@\[-`{-~])", r"[\t\n\f\r ]+"


def pad_punctuation(text):
    return re.sub(SPACE, " ", re.sub(PUNCT, r" \1 ", text))


def glue_rule(prefix, fields):
    """T5's ``glue`` preprocessor: the task word, then ``key: value`` for the sorted keys, joined by one
    space (the texts' own spacing kept: T5 collapses nothing here)."""
    return " ".join([prefix] + [f"{k}: {fields[k]}" for k in sorted(fields)])


def register_samples(root, **settings):
    return suite.register_suite(mrqa_dir=str(root / "mrqa"), winogrande_dir=str(root / "winogrande"),
                                yelp_dir=str(root / "yelp_polarity"), scitail_dir=str(root / "scitail"),
                                paws_dir=str(root / "paws_wiki"),
                                vocab_path=str(shared_path("fixtures", "t5_sentencepiece.model")), **settings)


@pytest.fixture(scope="module", autouse=True)
def registered():
    """The suite registered on the sample folders; from TFDS again afterwards (as at import)."""
    root = shared_path(*SAMPLES)
    register_samples(root)
    yield root
    suite.register_suite(vocab_path=str(shared_path("fixtures", "t5_sentencepiece.model")))


def texts(name, split):
    task = seqio.get_mixture_or_task(name)
    return [(ex["inputs_pretokenized"].decode(), ex["targets_pretokenized"].decode(), ex)
            for ex in task.get_dataset(sequence_length=None, split=split, shuffle=False).as_numpy_iterator()]


def mrqa_raw(path):
    """(qid, question, context, answers) of every question in an MRQA file, read with json alone."""
    with gzip.open(path, "rt", encoding="utf-8") as f:
        lines = f.read().splitlines()
    assert "header" in json.loads(lines[0])
    rows = []
    for line in lines[1:]:
        paragraph = json.loads(line)
        for qa in paragraph["qas"]:
            rows.append((qa["qid"], qa["question"].strip(), paragraph["context"].strip(), qa["answers"]))
    return rows


@pytest.mark.parametrize("config,folder,split", [("squad", "train", "train"), ("squad", "dev", "validation"),
                                                 ("natural_questions", "train", "train"),
                                                 ("bio_asq", "dev", "validation"), ("drop", "dev", "validation")])
def test_mrqa_is_prompt_tunings_question_context_format_with_every_answer(registered, config, folder, split):
    file = registered / "mrqa" / folder / f"{official_files.MRQA_FILES[config]}.jsonl.gz"
    expected = [(f"question: {pad_punctuation(q)} context: {pad_punctuation(c)}", pad_punctuation(a[0]), qid,
                 [pad_punctuation(x) for x in a]) for qid, q, c, a in mrqa_raw(file)]
    got = [(i, t, ex["idx"].decode(), [a.decode() for a in ex["answers"]]) for i, t, ex in
           texts(f"mrqa_{config}_v100", split)]
    assert got == [(re.sub(SPACE, " ", i), t, q, a) for i, t, q, a in expected] and got
    assert any(" , " in i or " . " in i for i, *_ in got)  # the padding was exercised


def test_mrqa_out_of_domain_sets_offer_only_validation_and_in_domain_sets_train_too():
    assert set(task_names("mrqa")) == {f"mrqa_{c}_v100" for c in official_files.MRQA_FILES}
    for config in official_files.MRQA_OUT_OF_DOMAIN:
        spec = TASK_SPECS[f"mrqa_{config}_v100"]
        assert spec.splits == ("validation",) and spec.source_split("validation") == "test"
    assert TASK_SPECS["mrqa_squad_v100"].splits == ("train", "validation")
    assert "ept_validation" in seqio.get_mixture_or_task("mrqa_squad_v100").splits


def _jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def test_winogrande_options_and_sentence_with_option_names_as_targets(registered):
    for split, file in (("train", "train_xl.jsonl"), ("validation", "dev.jsonl"), ("test", "test.jsonl")):
        rows = _jsonl(registered / "winogrande" / file)
        got = [(i, t) for i, t, _ in texts("winogrande_v120", split)]
        expected = [(glue_rule("winogrande", {k: r[k] for k in ("option1", "option2", "sentence")}),
                     {"1": "option1", "2": "option2"}.get(r.get("answer") or "", "<unk>")) for r in rows]
        assert got == expected and got
    assert {t for _, t, _ in texts("winogrande_v120", "validation")} <= {"option1", "option2"}


def test_yelp_csv_label_1_is_negative_and_text_is_what_tfds_makes_of_the_line(registered):
    """TFDS's yelp builder takes ``line[5:-2].strip()`` as the text: CSV's doubled quotes and the escaped
    newlines stay as written. The local path gives the same, so the two paths' examples agree."""
    for split in ("train", "test"):
        with open(registered / "yelp_polarity" / f"{split}.csv", newline="", encoding="utf-8") as f:
            labels = [row[0] for row in csv.reader(f)]
        with open(registered / "yelp_polarity" / f"{split}.csv", encoding="utf-8") as f:
            lines = f.readlines()
        got = [(i, t) for i, t, _ in texts("taskless_yelp_polarity_v020", split)]
        assert got == [(glue_rule("", {"text": line[5:-2].strip()})[1:], ["negative", "positive"][int(label) - 1])
                       for label, line in zip(labels, lines)]
    assert any("\\n" in i for i, _ in got) and any('\\""' in i for i, _ in got)


def test_scitail_tsv_and_paws_tsv(registered):
    for split, file in (("train", "train"), ("validation", "dev"), ("test", "test")):
        with open(registered / "scitail" / "tsv_format" / f"scitail_1.0_{file}.tsv", encoding="utf-8") as f:
            rows = [line.rstrip("\n").split("\t") for line in f if line.strip()]
        assert [(i, t) for i, t, _ in texts("scitail_v100", split)] == [
            (glue_rule("scitail", {"premise": p, "hypothesis": h}), label) for p, h, label in rows]
        with open(registered / "paws_wiki" / f"{file}.tsv", encoding="utf-8") as f:
            rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
        assert [(i, t) for i, t, _ in texts("taskless_paws_wiki_v110", split)] == [
            (glue_rule("", {"sentence1": r["sentence1"], "sentence2": r["sentence2"]})[1:],
             ["different_meaning", "paraphrase"][int(r["label"])]) for r in rows]


# ------------------------------------------------------------------------------------------------------
# QA scored by decoding, through the cache the training hosts read
# ------------------------------------------------------------------------------------------------------
def test_mrqa_cache_keeps_every_answer_and_is_scored_by_squad_after_greedy_decoding(tmp_path, fixture_model):
    import jax

    from xprompt_jax.data.cache import CachedSplit
    from xprompt_jax.data.write_cache import write_cache
    from xprompt_jax.run.evaluator import Evaluator
    from xprompt_jax.vocabulary import load_vocabulary

    write_cache("mrqa_bio_asq_v100", "validation", str(tmp_path / "c"), {"inputs": 128, "targets": 16})
    split = CachedSplit.open(str(tmp_path / "c"))
    assert split.meta["label_names"] is None and all(ex["answers"] for ex in split.examples)
    _, frozen, model = fixture_model
    evaluator = Evaluator(model, split, load_vocabulary(str(shared_path("fixtures", "t5_sentencepiece.model"))), 4)
    assert evaluator.mode == "decode" and evaluator.max_decode_length == 16
    trainable, masks = model.init(jax.random.PRNGKey(0))
    scores = evaluator(trainable, frozen, masks)
    assert set(scores) == {"em", "f1"} and 0.0 <= scores["em"] <= scores["f1"] <= 100.0
    # The gold answers as unpadded raw text (what a model would generate) score 100: padding is undone by
    # SQuAD's normalisation; a wrong answer scores 0.
    raw = mrqa_raw(shared_path(*SAMPLES, "mrqa", "dev", "BioASQ.jsonl.gz"))
    assert evaluator.info.score([a[0] for *_, a in raw], split.examples) == {"em": 100.0, "f1": 100.0}
    assert evaluator.info.score(["zebra"] * len(raw), split.examples)["f1"] == 0.0


# ------------------------------------------------------------------------------------------------------
# EPT's split protocol
# ------------------------------------------------------------------------------------------------------
def test_ept_plan_follows_the_papers_size_thresholds():
    assert ept_splits.plan(9_999) == ("halve", 0)
    assert ept_splits.plan(10_000) == ("carve", 1_000) and ept_splits.plan(99_999) == ("carve", 1_000)
    assert ept_splits.plan(100_000) == ("carve", 10_000)


def _keys(n, seed, repeats=1):
    return [ept_splits.example_key({"text": f"example {i // repeats}"}, ("text",), seed) for i in range(n)]


@pytest.mark.parametrize("num_train", [500, 20_000, 150_000])
def test_ept_splits_partition_their_source_and_follow_the_seed(num_train):
    heldout = _keys(300, seed=0, repeats=3)  # units of three identical texts stay together
    train = _keys(min(num_train, 12_000), seed=0)
    how, count = ept_splits.plan(num_train)
    masks = {}
    for split in ept_splits.SPLITS:
        role = ept_splits.source_role(split, num_train)
        keys = train if role == "train" else heldout
        got_role, masks[split] = ept_splits.carve(split, num_train, keys)
        assert got_role == role and len(masks[split]) == len(keys)
    if how == "halve":
        assert all(masks["ept_train"])
        val, test = np.array(masks["ept_validation"]), np.array(masks["ept_test"])
        assert not (val & test).any() and (val | test).all() and val.sum() == 150
    else:
        val, rest = np.array(masks["ept_validation"]), np.array(masks["ept_train"])
        assert not (val & rest).any() and (val | rest).all() and val.sum() == min(count, len(train))
        assert all(masks["ept_test"])
    units = np.array(ept_splits.carve("ept_validation", 500, heldout)[1]).reshape(-1, 3)
    assert (units.all(1) | ~units.any(1)).all()  # no unit split across validation and test
    again = ept_splits.carve("ept_validation", num_train, heldout if how == "halve" else train)[1]
    assert again == masks["ept_validation"]
    other = _keys(300, seed=1, repeats=3) if how == "halve" else _keys(len(train), seed=1)
    assert ept_splits.carve("ept_validation", num_train, other)[1] != masks["ept_validation"]


def test_small_task_ept_splits_halve_validation_and_record_the_seed(registered):
    def inputs(split):
        return sorted(i for i, _, _ in texts("winogrande_v120", split))

    assert inputs("ept_train") == inputs("train")
    val, test = inputs("ept_validation"), inputs("ept_test")
    assert sorted(val + test) == inputs("validation") and len(val) == len(inputs("validation")) // 2
    fingerprint = source_fingerprint("winogrande_v120", "ept_validation", {"inputs": 8, "targets": 4})
    assert fingerprint["ept"] == {"seed": ept_splits.DEFAULT_SEED, "protocol": ept_splits.PROTOCOL_VERSION}
    assert "ept" not in source_fingerprint("winogrande_v120", "validation", {"inputs": 8, "targets": 4})
    dev = _jsonl(registered / "winogrande" / "dev.jsonl")
    fields = ("option1", "option2", "sentence")
    seed = next(s for s in range(1, 50) if ept_splits.carve("ept_validation", 10, [
        ept_splits.example_key(r, fields, s) for r in dev])[1] != ept_splits.carve("ept_validation", 10, [
            ept_splits.example_key(r, fields, 0) for r in dev])[1])
    register_samples(registered, ept_seed=seed)
    try:
        assert source_fingerprint("winogrande_v120", "ept_validation", {"inputs": 8, "targets": 4})["ept"]["seed"] == seed
        assert sorted(i for i, _, _ in texts("winogrande_v120", "ept_validation")) != val  # another carving
    finally:
        register_samples(registered)


def test_missing_suite_folder_names_the_setting():
    from tasks.errors import TaskDataError
    with pytest.raises(TaskDataError, match="winogrande folder /nonexistent.*does not exist"):
        suite.register_suite(winogrande_dir="/nonexistent")
    assert tasks.glue  # GLUE registered beside the suite (imported above)
