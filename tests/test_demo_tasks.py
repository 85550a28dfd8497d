"""The built-in demo family: correct answers, determinism, its vocabulary and its seqio registration."""
import random

import numpy as np
import pytest

from tasks import demo_family
from tasks.demo_vocab import VOCAB_PATH, build_model_proto
from xprompt_jax.vocabulary import Vocabulary


@pytest.mark.parametrize("task,expected", [
    ("copy", "3 1 4 1 5"), ("reverse", "5 1 4 1 3"), ("sort", "1 1 3 4 5"), ("first", "3"), ("last", "5"),
    ("max", "5"), ("min", "1"), ("count", "5")])
def test_each_operation_on_a_hand_worked_example(task, expected):
    assert " ".join(map(str, demo_family.OPERATIONS[task]([3, 1, 4, 1, 5]))) == expected


def test_examples_are_deterministic_and_splits_differ():
    a = demo_family.generate(["max"], "train", 50)
    assert a == demo_family.generate(["max"], "train", 50)
    assert a != demo_family.generate(["max"], "validation", 50)
    for ex in a:
        words = ex["inputs"].split()
        assert words[0] == "max:" and ex["targets"] == str(max(int(w) for w in words[1:]))
        assert demo_family.MIN_LENGTH <= len(words) - 1 <= demo_family.MAX_LENGTH
    plain = demo_family.generate(["max"], "train", 5, keyword=False)
    assert all(":" not in ex["inputs"] for ex in plain)
    with pytest.raises(ValueError, match="the demo tasks are"):
        demo_family.make_example("median", random.Random(0))


def test_shipped_vocabulary_is_the_built_one_with_one_piece_per_word():
    with open(VOCAB_PATH, "rb") as f:
        assert f.read() == build_model_proto()
    vocab = Vocabulary(VOCAB_PATH)
    ids = [vocab.encode(word, add_eos=False) for word in demo_family.WORDS]
    assert all(len(i) == 1 for i in ids) and len({i[0] for i in ids}) == len(demo_family.WORDS)
    assert min(i[0] for i in ids) == 3  # 0 pad, 1 EOS, 2 unknown, as in T5
    assert vocab.decode(vocab.encode("sort: 9 0 2")) == "sort: 9 0 2"


def test_seqio_registration_tokenises_with_the_demo_vocabulary():
    seqio = pytest.importorskip("seqio")
    import tasks.demo  # noqa: F401
    task = seqio.get_mixture_or_task("demo_max_no_keyword")
    first = next(task.get_dataset({"inputs": 12, "targets": 4}, split="validation", shuffle=False).as_numpy_iterator())
    expected = demo_family.generate(["max"], "validation", 1, keyword=False)[0]
    vocab = Vocabulary(VOCAB_PATH)
    assert first["inputs_pretokenized"].decode() == expected["inputs"]
    np.testing.assert_array_equal(first["inputs"], vocab.encode(expected["inputs"]))
    np.testing.assert_array_equal(first["targets"], vocab.encode(expected["targets"]))
    assert "demo_pretrain" in seqio.TaskRegistry.names()
    assert tasks.demo.LABEL_NAMES["demo_max_no_keyword"] == list("0123456789")
