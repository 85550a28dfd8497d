"""The NumPy cache: TF-free reading, batching/sharding/resume as specified, atomic writes, clear errors, and a
bit-for-bit round trip of a real task split against seqio's own pipeline."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from helpers import shared_path

from xprompt_jax.data.cache import CachedSplit, write_cached_split
from xprompt_jax.errors import DataError

N, LI, LT = 10, 4, 3


def make_toy(path, n=N, **kwargs):
    """n examples whose row i is recognisable: encoder_input_tokens[i, 0] == 100 + i."""
    rows = np.arange(n, dtype=np.int32)[:, None]
    features = {"encoder_input_tokens": np.concatenate([100 + rows, np.ones((n, LI - 1), np.int32)], axis=1),
                "decoder_target_tokens": np.tile(rows, (1, LT)),
                "decoder_input_tokens": np.tile(rows, (1, LT)),
                "decoder_loss_weights": np.ones((n, LT), np.int32)}
    examples = [{"inputs_pretokenized": f"text {i}", "targets_pretokenized": "True", "idx": i} for i in range(n)]
    meta = {"task": "toy", "split": "validation", "sequence_length": {"inputs": LI, "targets": LT},
            "vocabulary": {"path": "none", "extra_ids": 100}, "label_names": ["False", "True"],
            "truncated": {"inputs": 0, "targets": 0}}
    write_cached_split(str(path), meta=meta, features=features, examples=examples, **kwargs)
    return CachedSplit.open(str(path))


def ids(batch):
    return (batch["encoder_input_tokens"][:, 0] - 100).tolist()


def take(iterator, count):
    return [next(iterator) for _ in range(count)]


@pytest.fixture
def toy(tmp_path):
    return make_toy(tmp_path / "toy")


def test_open_reads_meta_features_and_examples(toy):
    assert toy.num_examples == N and toy.meta["task"] == "toy" and toy.meta["format_version"] == 1
    assert toy.sequence_length == {"inputs": LI, "targets": LT} and toy.meta["label_names"] == ["False", "True"]
    assert toy.meta["features"]["encoder_input_tokens"] == {"dtype": "int32", "shape": [N, LI]}
    assert set(toy.features) == {"encoder_input_tokens", "decoder_target_tokens", "decoder_input_tokens",
                                 "decoder_loss_weights"}
    assert all(a.dtype == np.int32 for a in toy.features.values())
    assert toy.examples[3] == {"inputs_pretokenized": "text 3", "targets_pretokenized": "True", "idx": 3}


def test_each_epoch_is_a_permutation_fixed_by_seed_and_epoch(toy):
    batches = list(toy.batches(5, seed=3, num_epochs=2))
    assert len(batches) == 4 and all(b["encoder_input_tokens"].shape == (5, LI) for b in batches)
    epoch0, epoch1 = ids(batches[0]) + ids(batches[1]), ids(batches[2]) + ids(batches[3])
    assert epoch0 == np.random.default_rng([3, 0]).permutation(N).tolist()
    assert epoch1 == np.random.default_rng([3, 1]).permutation(N).tolist()
    assert sorted(epoch0) == sorted(epoch1) == list(range(N)) and epoch0 != epoch1
    assert [ids(b) for b in toy.batches(5, seed=3, num_epochs=2)] == [ids(b) for b in batches]
    assert [ids(b) for b in toy.batches(5, seed=4, num_epochs=2)] != [ids(b) for b in batches]


def test_batches_run_on_across_epochs_and_forever_by_default(toy):
    # 10 examples, batches of 4: batch 2 holds the last 2 of epoch 0 and the first 2 of epoch 1.
    stream = sum((np.random.default_rng([0, e]).permutation(N).tolist() for e in range(3)), [])
    got = take(toy.batches(4), 7)  # 28 examples: into a third epoch, no end in sight
    assert [ids(b) for b in got] == [stream[4 * s:4 * s + 4] for s in range(7)]


def test_a_batch_larger_than_the_split_still_works(toy):
    (first,) = take(toy.batches(32, seed=1), 1)  # a k=16 few-shot split fed to a batch of 32 is the use
    assert sorted(ids(first)[:N]) == list(range(N)) and len(ids(first)) == 32


def test_start_step_resumes_exactly(toy):
    full = [ids(b) for b in take(toy.batches(4, seed=7), 9)]
    resumed = [ids(b) for b in take(toy.batches(4, seed=7, start_step=5), 4)]
    assert resumed == full[5:9]


@pytest.mark.parametrize("processes", [2, 4])
def test_processes_get_contiguous_slices_of_the_global_batch(toy, processes):
    global_batches = take(toy.batches(8, seed=2, start_step=1), 3)
    per_process = [take(toy.batches(8, seed=2, start_step=1, process_index=p, process_count=processes), 3)
                   for p in range(processes)]
    for step, global_batch in enumerate(global_batches):
        for name, array in global_batch.items():
            parts = [per_process[p][step][name] for p in range(processes)]
            assert all(part.shape[0] == 8 // processes for part in parts)
            np.testing.assert_array_equal(np.concatenate(parts), array)


def test_finite_epochs_and_remainder(toy):
    assert [len(ids(b)) for b in toy.batches(4, num_epochs=1)] == [4, 4]
    assert [len(ids(b)) for b in toy.batches(4, num_epochs=1, drop_remainder=False)] == [4, 4, 2]
    assert toy.num_batches(4, num_epochs=3) == 7 and toy.num_batches(4, num_epochs=None) is None
    in_order = [ids(b) for b in toy.batches(5, shuffle=False, num_epochs=1)]
    assert in_order == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]


def test_eval_batches_are_in_order_padded_and_masked(toy):
    batches = list(toy.eval_batches(4))
    assert len(batches) == 3
    assert [b["example_index"].tolist() for b in batches] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, -1, -1]]
    assert batches[2]["mask"].tolist() == [True, True, False, False]
    assert ids(batches[2]) == [8, 9, 9, 9]  # padding repeats the last real example
    shards = [list(toy.eval_batches(4, process_index=p, process_count=2)) for p in range(2)]
    assert [s[2]["example_index"].tolist() for s in shards] == [[8, 9], [-1, -1]]


def test_batch_arguments_are_checked(toy):
    with pytest.raises(ValueError, match="does not split evenly over 3 processes"):
        next(toy.batches(4, process_count=3))
    with pytest.raises(ValueError, match="process_index 2 is not in"):
        next(toy.batches(4, process_index=2, process_count=2))


# -- writing ------------------------------------------------------------------------------------------
def test_existing_cache_is_kept_unless_overwrite(tmp_path):
    make_toy(tmp_path / "c")
    with pytest.raises(DataError, match="already exists; pass overwrite=True"):
        make_toy(tmp_path / "c", n=3)
    assert make_toy(tmp_path / "c", n=3, overwrite=True).num_examples == 3
    assert os.listdir(tmp_path) == ["c"]


def test_a_failed_write_leaves_nothing_behind(tmp_path):
    features = {"encoder_input_tokens": np.array([object()], dtype=object)}  # np.save refuses pickles
    with pytest.raises(ValueError):
        write_cached_split(str(tmp_path / "c"), meta={}, features=features, examples=[{}])
    assert os.listdir(tmp_path) == []


# -- opening errors -----------------------------------------------------------------------------------
def test_missing_folder_says_how_to_create_it(tmp_path):
    with pytest.raises(DataError, match=rf"no cache folder at {tmp_path}/nothing; create it with "
                                        r"`python -m xprompt_jax.data.write_cache"):
        CachedSplit.open(str(tmp_path / "nothing"))


def test_missing_files_are_named(toy):
    os.remove(os.path.join(toy.path, "decoder_loss_weights.npy"))
    with pytest.raises(DataError, match=r"decoder_loss_weights.npy is missing from the cache .*write_cache"):
        CachedSplit.open(toy.path)
    os.remove(os.path.join(toy.path, "meta.json"))
    with pytest.raises(DataError, match=r"is not a cache: meta.json is missing"):
        CachedSplit.open(toy.path)


def test_wrong_version_or_shape_is_refused(toy):
    meta_path = os.path.join(toy.path, "meta.json")
    meta = json.load(open(meta_path))
    json.dump({**meta, "format_version": 99}, open(meta_path, "w"))
    with pytest.raises(DataError, match="format_version 99; this code reads 1"):
        CachedSplit.open(toy.path)
    meta["features"]["encoder_input_tokens"]["shape"] = [N, LI + 1]
    json.dump(meta, open(meta_path, "w"))
    with pytest.raises(DataError, match=r"encoder_input_tokens.npy holds int32 \[10, 4\], but meta.json says"):
        CachedSplit.open(toy.path)


def test_reading_imports_no_tensorflow(toy):
    code = (f"import sys; from xprompt_jax.data.cache import CachedSplit; c = CachedSplit.open({toy.path!r}); "
            "next(c.batches(4)); c.examples; "
            "bad = [m for m in ('tensorflow', 'seqio', 'tensorflow_datasets') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


# -- a real task split, through seqio -----------------------------------------------------------------
@pytest.fixture(scope="module")
def dirs():
    return {"data_dir": str(shared_path("data", "superglue")),
            "fewglue_dir": str(shared_path("data", "fewglue")),
            "vocab_path": str(shared_path("fixtures", "t5_sentencepiece.model"))}


@pytest.fixture(scope="module")
def registered(dirs):
    pytest.importorskip("seqio")
    import tasks.superglue

    tasks.superglue.register_superglue(**dirs)
    yield
    tasks.superglue.register_superglue(**dirs)


def test_rte_cache_equals_seqios_pipeline_bit_for_bit(registered, tmp_path):
    import seqio

    from xprompt_jax.data.write_cache import write_cache

    lengths = {"inputs": 128, "targets": 8}
    cache = write_cache("taskless_super_glue_rte_v102", "validation", str(tmp_path / "rte"), lengths)
    task = seqio.get_mixture_or_task("taskless_super_glue_rte_v102")
    ds = task.get_dataset(sequence_length=lengths, split="validation", shuffle=False)
    reference = list(seqio.EncDecFeatureConverter(pack=False)(ds, lengths).as_numpy_iterator())
    reopened = CachedSplit.open(str(tmp_path / "rte"))
    assert reopened.num_examples == len(reference) == 277
    for name, array in reopened.features.items():
        expected = np.stack([r[name] for r in reference])
        assert array.dtype == expected.dtype == np.int32
        np.testing.assert_array_equal(array, expected)
    texts = [ex for ex in task.get_dataset(sequence_length=None, split="validation", shuffle=False).as_numpy_iterator()]
    assert [e["inputs_pretokenized"] for e in reopened.examples] == [t["inputs_pretokenized"].decode() for t in texts]
    assert [e["idx"] for e in reopened.examples] == [int(t["idx"]) for t in texts]
    # Truncation: counted against the untrimmed pipeline; a cut input still ends in EOS (id 1).
    long_inputs = [i for i, t in enumerate(texts) if len(t["inputs"]) > 128]
    assert cache.meta["truncated"] == {"inputs": len(long_inputs), "targets": 0} and long_inputs
    assert (reopened.features["encoder_input_tokens"][long_inputs, -1] == 1).all()
    assert reopened.meta["vocabulary"] == {"path": os.path.abspath(registered_vocab()), "extra_ids": 100}
    assert reopened.meta["label_names"] == ["entailment", "not_entailment"]


def registered_vocab():
    return str(shared_path("fixtures", "t5_sentencepiece.model"))


@pytest.mark.parametrize("task,split,metric", [
    ("taskless_super_glue_multirc_v102", "fewglue_dev32", "exact_match"),
    ("taskless_super_glue_record_v102", "fewglue_dev32", "em"),
    ("taskless_super_glue_wsc_v102_simple_eval", "validation", "accuracy"),
])
def test_cached_examples_carry_what_tf_free_scoring_needs(registered, tmp_path, task, split, metric):
    from tasks.specs import get_spec
    from xprompt_jax.data.write_cache import write_cache

    cache = write_cache(task, split, str(tmp_path / "c"), {"inputs": 64, "targets": 8}, num_examples=24)
    examples = CachedSplit.open(str(tmp_path / "c")).examples
    assert len(examples) == 24
    spec = get_spec(task)
    perfect = spec.evaluate([ex["targets_pretokenized"] for ex in examples], examples)
    if task.endswith("simple_eval"):
        # Generating the candidate is right exactly where the candidate is the referent (label 1).
        assert perfect[metric] == pytest.approx(100 * np.mean([ex["label"] == 1 for ex in examples]))
    else:
        assert perfect[metric] == 100.0
        assert spec.evaluate(["nonsense"] * len(examples), examples)[metric] < 100.0
    if "multirc" in task:
        assert set(examples[0]["idx"]) == {"paragraph", "question", "answer"}
    assert cache.meta["split"] == split


def test_cli_writes_a_cache_and_explains_bad_names(registered, tmp_path, dirs, capsys):
    from xprompt_jax.data.write_cache import main

    out = tmp_path / "cb"
    args = ["--task", "super_glue_cb_v102", "--split", "validation", "--out", str(out), "--inputs_length", "64",
            "--targets_length", "4", "--data_dir", dirs["data_dir"], "--vocab_path", dirs["vocab_path"]]
    assert main(args) == 0
    assert "wrote 56 examples of super_glue_cb_v102:validation" in capsys.readouterr().out
    assert CachedSplit.open(str(out)).num_examples == 56
    assert main(args) == 2 and "already exists" in capsys.readouterr().err
    assert main(["--task", "super_glue_cbb_v102"] + args[2:] + ["--overwrite"]) == 2
    assert "unknown task 'super_glue_cbb_v102'; registered tasks: " in capsys.readouterr().err


def test_tasks_outside_the_specs_take_label_names_from_their_module(tmp_path):
    pytest.importorskip("seqio")
    from xprompt_jax.data.write_cache import write_cache

    cache = write_cache("demo_max", "validation", str(tmp_path / "demo"), {"inputs": 16, "targets": 4},
                        num_examples=8)
    assert cache.meta["label_names"] == [str(d) for d in range(10)] and cache.num_examples == 8


def test_the_byte_vocabulary_is_seqios_on_both_sides():
    """XPROMPT_VOCAB_PATH=byte (or vocab_path='byte') gives the tasks seqio.ByteVocabulary; the TF-free side
    (evaluation, label ids, decoding) encodes exactly as it does."""
    import seqio

    from tasks.superglue import get_vocabulary
    from xprompt_jax.vocabulary import load_vocabulary
    ours, theirs = load_vocabulary("byte"), get_vocabulary("byte")
    assert isinstance(theirs, seqio.ByteVocabulary)
    for text in ("entailment", "café ☕", ""):
        assert ours.encode(text, add_eos=False) == list(theirs.encode(text))
        assert ours.decode(ours.encode(text)) == theirs.decode(theirs.encode(text))


def test_a_cache_is_never_read_with_another_vocabulary(tmp_path):
    """A cache records the vocabulary it was written with; naming another one (by content, not by path)
    is refused, while the same model under another path (a local copy of a bucket's) is fine."""
    import shutil

    from helpers import shared_path, write_label_task

    from tasks.demo_vocab import VOCAB_PATH
    from xprompt_jax.data.task_cache import split_vocabulary
    from xprompt_jax.errors import ConfigError
    t5_vocab = str(shared_path("fixtures", "t5_sentencepiece.model"))
    split = CachedSplit.open(write_label_task(tmp_path / "cache", t5_vocab, n=4))
    copy = shutil.copy(t5_vocab, tmp_path / "copy.model")
    assert split_vocabulary(split, str(copy)).piece_count == split_vocabulary(split).piece_count
    with pytest.raises(ConfigError, match="was written with the vocabulary .*t5_sentencepiece.model"):
        split_vocabulary(split, VOCAB_PATH)
    with pytest.raises(ConfigError, match="its token ids mean other words"):
        split_vocabulary(split, "byte")
