"""Length buckets (issue 14): batches cut to the smallest bucket that holds them, with nothing but padding
removed; the same bucket on every process; resumable (also length-grouped); evaluation longest first with
predictions put back in example order; and the model's loss, gradients and rank predictions unchanged."""
import numpy as np
import pytest

from xprompt_jax.data.buckets import (
    bucket_for,
    bucket_lengths,
    eval_rows,
    grouped_epoch_order,
    restore_order,
    target_buckets,
)
from xprompt_jax.data.cache import CachedSplit, write_cached_split
from xprompt_jax.errors import DataError

WIDTH, TARGETS = 128, 3


def make_split(path, n=70, width=WIDTH, seed=0, max_token=300, target_width=TARGETS):
    """n examples of varied length; row i is recognisable: encoder_input_tokens[i, 0] == 3 + i.

    With ``target_width`` > TARGETS the targets vary too (2..target_width tokens, EOS last, 0-padded,
    weight 0 on padding), as a task's answers of different lengths do."""
    rng = np.random.RandomState(seed)
    lengths = rng.randint(2, width + 1, n)
    lengths[:3] = (width, 2, width // 2 + 1)  # the extremes and a just-past-a-power-of-two length
    inputs = np.zeros((n, width), np.int32)
    for i, length in enumerate(lengths):
        inputs[i, :length] = rng.randint(3, max_token, length)
        inputs[i, length - 1] = 1
    inputs[:, 0] = 3 + np.arange(n) if max_token > n + 3 else inputs[:, 0]
    targets = rng.randint(3, max_token, (n, target_width)).astype(np.int32)
    if target_width == TARGETS:
        targets[:, -1] = 1
        weights = np.ones_like(targets)
    else:
        target_lengths = rng.randint(2, target_width + 1, n)
        target_lengths[:2] = (2, target_width)
        weights = (np.arange(target_width) < target_lengths[:, None]).astype(np.int32)
        targets = targets * weights
        targets[np.arange(n), target_lengths - 1] = 1
    features = {"encoder_input_tokens": inputs, "decoder_target_tokens": targets,
                "decoder_input_tokens": np.pad(targets, ((0, 0), (1, 0)))[:, :-1],
                "decoder_loss_weights": weights}
    examples = [{"inputs_pretokenized": str(i), "targets_pretokenized": "x", "idx": i} for i in range(n)]
    meta = {"task": "lengths", "split": "train", "label_names": None,
            "sequence_length": {"inputs": width, "targets": target_width},
            "vocabulary": {"path": "none", "extra_ids": 100}, "truncated": {"inputs": 0, "targets": 0}}
    write_cached_split(str(path), meta=meta, features=features, examples=examples)
    return CachedSplit.open(str(path)), lengths


@pytest.fixture
def split(tmp_path):
    return make_split(tmp_path / "split")


def rows_of(batch):
    return (batch["encoder_input_tokens"][:, 0] - 3).tolist()


def take(iterator, count):
    return [next(iterator) for _ in range(count)]


BUCKETS = bucket_lengths(WIDTH, smallest=16)  # (16, 24, 32, 48, 64, 96, 128)


def test_bucket_math():
    assert bucket_lengths(512) == (32, 48, 64, 96, 128, 192, 256, 384, 512)
    assert bucket_lengths(512, between=False) == (32, 64, 128, 256, 512)
    assert bucket_lengths(100) == (32, 48, 64, 96, 100) and bucket_lengths(64) == (32, 48, 64)
    assert bucket_lengths(32) == (32,) and bucket_lengths(20) == (20,) and bucket_lengths(33) == (32, 33)
    assert bucket_lengths(64, smallest=8, between=False) == (8, 16, 32, 64)
    assert bucket_lengths(8, smallest=1) == (1, 2, 3, 4, 6, 8)
    assert target_buckets(16) == (8, 12, 16) and target_buckets(3) == (3,)
    assert [bucket_for(n, (32, 64, 100)) for n in (0, 1, 32, 33, 64, 65, 100)] == [32, 32, 32, 64, 64, 100, 100]
    with pytest.raises(ValueError, match="longer than the largest bucket 100"):
        bucket_for(101, (32, 64, 100))
    with pytest.raises(ValueError, match="strictly increasing"):
        bucket_for(3, (64, 32))
    with pytest.raises(ValueError, match="power of two"):
        bucket_lengths(512, smallest=24)


def test_input_lengths_count_up_to_the_last_token(split):
    split, lengths = split
    np.testing.assert_array_equal(split.input_lengths(), lengths)
    assert split.input_lengths() is split.input_lengths()  # counted once


def test_bucketed_batches_are_the_fixed_batches_with_padding_cut(split):
    split, lengths = split
    kwargs = dict(seed=5, num_epochs=3, drop_remainder=False)  # 70 examples, batch 8: batches span epochs
    fixed = list(split.batches(8, **kwargs))
    bucketed = list(split.batches(8, buckets=BUCKETS, **kwargs))
    assert len(fixed) == len(bucketed) == 27 and len(bucketed[-1]["encoder_input_tokens"]) == 2
    used = set()
    for a, b in zip(fixed, bucketed):
        for key in ("decoder_target_tokens", "decoder_input_tokens", "decoder_loss_weights"):
            np.testing.assert_array_equal(a[key], b[key])
        cut = b["encoder_input_tokens"].shape[1]
        longest = lengths[rows_of(a)].max()
        assert cut in BUCKETS and cut >= longest and (cut == BUCKETS[0] or BUCKETS[BUCKETS.index(cut) - 1] < longest)
        np.testing.assert_array_equal(b["encoder_input_tokens"], a["encoder_input_tokens"][:, :cut])
        assert not a["encoder_input_tokens"][:, cut:].any()  # only padding was removed
        used.add(cut)
    assert len(used) >= 2


def test_decoder_features_are_cut_to_the_target_bucket(tmp_path):
    split, _ = make_split(tmp_path / "targets", n=60, target_width=16)
    target_lengths = (split.features["decoder_loss_weights"] != 0).sum(1)
    np.testing.assert_array_equal(split.target_lengths(), target_lengths)
    kwargs = dict(seed=3, num_epochs=2, group_by_length=True, group_window=8)
    cuts = set()
    for a, b in zip(split.batches(4, **kwargs), split.batches(4, buckets=BUCKETS, **kwargs)):
        cut = b["decoder_target_tokens"].shape[1]
        longest = target_lengths[rows_of(a)].max()
        assert cut in (8, 12, 16) and cut >= longest and (cut == 8 or (8, 12, 16)[(8, 12, 16).index(cut) - 1] < longest)
        for key in ("decoder_target_tokens", "decoder_input_tokens", "decoder_loss_weights"):
            assert b[key].shape[1] == cut
            np.testing.assert_array_equal(b[key], a[key][:, :cut])
        # only padding was removed: positions of weight 0 (decoder inputs there may hold the shifted EOS;
        # the decoder is causal, so they reach no weighted position)
        assert not a["decoder_loss_weights"][:, cut:].any() and not a["decoder_target_tokens"][:, cut:].any()
        cuts.add(cut)
    assert cuts == {8, 12, 16}
    for b in split.eval_batches(8, buckets=BUCKETS):  # evaluation batches too, from their real rows
        real = target_lengths[b["example_index"][b["mask"]]]
        assert b["decoder_target_tokens"].shape[1] == bucket_for(real.max(), (8, 12, 16))


def test_without_buckets_the_stream_is_the_epoch_orders_back_to_back(split):
    split, _ = split
    stream = np.concatenate([split.epoch_order(e, seed=2) for e in range(3)])
    got = sum((rows_of(b) for b in split.batches(16, seed=2, num_epochs=3)), [])
    assert got == stream[:len(got)].tolist() and len(got) == 16 * (210 // 16)
    assert all(b["encoder_input_tokens"].shape == (16, WIDTH) for b in split.batches(16, seed=2, num_epochs=1))


@pytest.mark.parametrize("group", [False, True])
def test_every_process_picks_the_global_batch_bucket(split, group):
    split, lengths = split
    kwargs = dict(seed=1, buckets=BUCKETS, group_by_length=group, group_window=16)
    whole = take(split.batches(8, **kwargs), 30)
    parts = [take(split.batches(8, process_index=i, process_count=2, **kwargs), 30) for i in range(2)]
    differs = 0
    for step, batch in enumerate(whole):
        p0, p1 = parts[0][step], parts[1][step]
        for key in batch:
            np.testing.assert_array_equal(np.concatenate([p0[key], p1[key]]), batch[key])
        assert p0["encoder_input_tokens"].shape == p1["encoder_input_tokens"].shape
        local = [bucket_for(lengths[rows_of(p)].max(), BUCKETS) for p in (p0, p1)]
        differs += local[0] != local[1]
    assert differs > 0  # the processes' own longest inputs would have picked different buckets


@pytest.mark.parametrize("group", [False, True])
def test_resume_from_start_step_equals_the_uninterrupted_stream(split, group):
    split, _ = split
    kwargs = dict(seed=4, buckets=BUCKETS, group_by_length=group, group_window=24)
    uninterrupted = take(split.batches(8, **kwargs), 40)
    for start in (1, 9, 17, 33):
        resumed = take(split.batches(8, start_step=start, **kwargs), 40 - start)
        for a, b in zip(uninterrupted[start:], resumed):
            assert a.keys() == b.keys()
            for key in a:
                np.testing.assert_array_equal(a[key], b[key])


def test_group_by_length_covers_each_example_once_per_epoch_in_sorted_batches(tmp_path):
    split, lengths = make_split(tmp_path / "big", n=403, seed=3, max_token=1000)
    batch, window, epochs = 8, 64, 3
    grouped = list(split.batches(batch, seed=7, group_by_length=True, group_window=window, num_epochs=epochs,
                                 drop_remainder=False))
    plain = list(split.batches(batch, seed=7, num_epochs=epochs, drop_remainder=False))
    stream = np.array(sum((rows_of(b) for b in grouped), []))
    for e in range(epochs):
        assert sorted(stream[e * 403:(e + 1) * 403].tolist()) == list(range(403))
        head = (-e * 403) % batch  # completes the batch begun in the previous epoch
        full = (403 - head) // batch
        body = stream[e * 403 + head:e * 403 + head + full * batch].reshape(full, batch)
        assert (np.diff(lengths[body], axis=1) <= 0).all()  # each full batch: one sorted run of a window
    spread = lambda bs: np.mean([np.ptp(lengths[rows_of(b)]) for b in bs])  # noqa: E731
    assert spread(grouped) < 0.5 * spread(plain)
    assert stream.tolist() != sum((rows_of(b) for b in plain), [])
    again = list(split.batches(batch, seed=7, group_by_length=True, group_window=window, num_epochs=epochs,
                               drop_remainder=False))
    assert [rows_of(b) for b in again] == [rows_of(b) for b in grouped]
    other = list(split.batches(batch, seed=8, group_by_length=True, group_window=window, num_epochs=1))
    assert [rows_of(b) for b in other] != [rows_of(b) for b in grouped[:len(other)]]


def test_grouped_epoch_order_is_a_permutation_for_any_offset():
    rng = np.random.RandomState(0)
    lengths = rng.randint(1, 50, 37)
    order = rng.permutation(37)
    for offset in (0, 5, 37, 74):
        for window in (1, 8, 100):
            grouped = grouped_epoch_order(order, lengths, 8, seed=0, epoch=1, offset=offset, window=window)
            assert sorted(grouped.tolist()) == list(range(37))
            head = (-offset) % 8
            assert grouped[:head].tolist() == order[:head].tolist()


def test_eval_batches_longest_first_and_restore_order(split):
    split, lengths = split
    batches = list(split.eval_batches(16, buckets=BUCKETS))
    fixed = list(split.eval_batches(16))
    assert len(batches) == len(fixed) == 5
    cuts = [b["encoder_input_tokens"].shape[1] for b in batches]
    assert cuts == sorted(cuts, reverse=True) and cuts[-1] < WIDTH
    assert sum(c * 16 for c in cuts) < 0.8 * 5 * 16 * WIDTH  # less encoder work than the fixed length
    for b in batches:
        real = b["example_index"][b["mask"]]
        assert (b["example_index"][~b["mask"]] == -1).all()
        assert rows_of({"encoder_input_tokens": b["encoder_input_tokens"][b["mask"]]}) == real.tolist()
        full = split.features["encoder_input_tokens"][real]
        np.testing.assert_array_equal(b["encoder_input_tokens"][b["mask"]], full[:, :b["encoder_input_tokens"].shape[1]])
        assert not full[:, b["encoder_input_tokens"].shape[1]:].any()
        assert b["mask"].sum() == len(b["mask"]) or b is batches[-1]
    values = [np.stack([b["encoder_input_tokens"][:, 0], b["decoder_target_tokens"][:, 0]], 1) for b in batches]
    restored = restore_order(values, [b["example_index"] for b in batches], split.num_examples)
    np.testing.assert_array_equal(restored[:, 0], 3 + np.arange(70))
    np.testing.assert_array_equal(restored[:, 1], split.features["decoder_target_tokens"][:, 0])
    assert np.concatenate([b["example_index"] for b in batches])[:70].tolist() == eval_rows(lengths, 16)\
        .reshape(-1)[:70].tolist()
    # Two processes: each gets its contiguous slice of the same global batches, of the same cut.
    parts = [list(split.eval_batches(16, buckets=BUCKETS, process_index=i, process_count=2)) for i in range(2)]
    for b, p0, p1 in zip(batches, *parts):
        for key in b:
            np.testing.assert_array_equal(np.concatenate([p0[key], p1[key]]), b[key])


def test_eval_without_buckets_is_row_order(split):
    split, _ = split
    batches = list(split.eval_batches(16))
    assert np.concatenate([b["example_index"] for b in batches]).tolist() == list(range(70)) + [-1] * 10
    assert all(b["encoder_input_tokens"].shape == (16, WIDTH) for b in batches)


def test_restore_order_refuses_gaps_and_repeats():
    with pytest.raises(ValueError, match=r"missing \[2\]"):
        restore_order([np.array([10, 11])], [np.array([0, 1])], 3)
    with pytest.raises(ValueError, match=r"repeated \[1\]"):
        restore_order([np.array([10, 11, 12])], [np.array([0, 1, 1])], 2)
    np.testing.assert_array_equal(restore_order([np.array([5, 6]), np.array([7, 9])],
                                                [np.array([2, 0]), np.array([1, -1])], 3), [6, 7, 5])


def test_buckets_too_short_for_the_data_are_refused(split):
    split, _ = split
    with pytest.raises(DataError, match="longer than the largest bucket 64"):
        next(split.batches(8, buckets=(32, 64)))
    with pytest.raises(DataError, match="longer than the largest bucket 64"):
        next(split.eval_batches(8, buckets=(32, 64)))


# -- the model sees the same thing: loss, gradients and rank predictions do not change -------------------
@pytest.fixture(scope="module")
def prompted_tiny():
    import jax
    from helpers import shared_path

    from xprompt_jax import train_step
    from xprompt_jax.optimizers import make_optimizer
    from xprompt_jax.prompted import build_prompted_t5
    from xprompt_jax.prompts.kinds import make_spec
    from xprompt_jax.t5_import import load_t5_checkpoint
    config, frozen = load_t5_checkpoint(str(shared_path("fixtures", "t5x_t5_1_1_tiny", "checkpoint_3")),
                                        "t5_1_1_prompt_tuning_test")
    model = build_prompted_t5(config, make_spec(length=5, pieces=2), frozen)
    state = train_step.create_state(model, make_optimizer(), jax.random.PRNGKey(0))
    return model, frozen, state.trainable, state.masks


def test_bucketed_batches_give_the_same_loss_and_gradients(prompted_tiny, tmp_path):
    import jax

    from xprompt_jax import train_step
    model, frozen, trainable, masks = prompted_tiny
    split, _ = make_split(tmp_path / "tiny", n=40, width=64, max_token=120, target_width=16)
    grads_of = jax.jit(lambda t, b: train_step.loss_and_grads(model, t, frozen, masks, b, jax.random.PRNGKey(0),
                                                              1e-4, False)[:2])
    kwargs = dict(seed=0, num_epochs=1, group_by_length=True, group_window=40)  # sorted: short batches too
    cuts, target_cuts = set(), set()
    for fixed, bucketed in zip(split.batches(4, **kwargs), split.batches(4, buckets=(16, 32, 64), **kwargs)):
        cuts.add(bucketed["encoder_input_tokens"].shape[1])
        target_cuts.add(bucketed["decoder_target_tokens"].shape[1])
        loss_a, grads_a = grads_of(trainable, fixed)
        loss_b, grads_b = grads_of(trainable, bucketed)
        np.testing.assert_allclose(float(loss_b), float(loss_a), rtol=1e-5)
        for a, b in zip(jax.tree.leaves(grads_a), jax.tree.leaves(grads_b)):
            np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-4, atol=1e-6)
    assert cuts & {16, 32} and target_cuts & {8, 12}  # some batches really were shorter


def test_rank_predictions_over_a_split_do_not_change_with_buckets(prompted_tiny, tmp_path):
    import jax
    import jax.numpy as jnp

    from xprompt_jax.models.decoding import shift_right, token_log_likelihoods
    model, frozen, trainable, masks = prompted_tiny
    split, _ = make_split(tmp_path / "tiny", n=45, width=64, seed=1, max_token=120)
    labels = jnp.asarray([[5, 1], [9, 1], [17, 1]], jnp.int32)

    @jax.jit
    def scores(tokens):  # rank classification: log p(label | prompt, x) of every label
        encoded, mask = model.encode(trainable, frozen, masks, tokens)
        n, k = tokens.shape[0], labels.shape[0]
        logits = model.decode(trainable, frozen, jnp.repeat(encoded, k, 0), jnp.repeat(mask, k, 0),
                              shift_right(jnp.tile(labels, (n, 1))))
        return token_log_likelihoods(logits, jnp.tile(labels, (n, 1))).sum(-1).reshape(n, k)

    fixed = [(np.asarray(scores(b["encoder_input_tokens"])), b) for b in split.eval_batches(8)]
    fixed_scores = np.concatenate([s[b["mask"]] for s, b in fixed])
    bucketed = list(split.eval_batches(8, buckets=(16, 32, 64)))
    assert {b["encoder_input_tokens"].shape[1] for b in bucketed} >= {16, 32}
    restored = restore_order([np.asarray(scores(b["encoder_input_tokens"])) for b in bucketed],
                             [b["example_index"] for b in bucketed], split.num_examples)
    np.testing.assert_allclose(restored, fixed_scores, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(restored.argmax(-1), fixed_scores.argmax(-1))
    assert len(set(fixed_scores.argmax(-1).tolist())) > 1  # the predictions are not all one label


def test_length_buckets_setting_true_false_or_lengths(split):
    from xprompt_jax.errors import ConfigError
    from xprompt_jax.run.config import DataConfig
    from xprompt_jax.run.data import buckets_for
    split, _ = split  # cache input length 128
    assert buckets_for(DataConfig(), split) == bucket_lengths(WIDTH)
    assert buckets_for(DataConfig(length_buckets=False), split) is None
    # Given lengths (a gin list): those below the input length, then the input length, so everything fits.
    assert buckets_for(DataConfig(length_buckets=[16, 40, 64, 200]), split) == (16, 40, 64, WIDTH)
    assert DataConfig(length_buckets=[16, 40]).length_buckets == (16, 40)
    widths = {b["encoder_input_tokens"].shape[1]
              for b in split.batches(4, buckets=(16, 40, 64, WIDTH), num_epochs=2, group_by_length=True)}
    assert widths <= {16, 40, 64, WIDTH} and len(widths) >= 2
    for bad in ([64, 32], [], [0, 8], "64", [8.5], 1):
        with pytest.raises(ConfigError, match=r"LENGTH_BUCKETS \(DataConfig.length_buckets\) must be True, False"):
            DataConfig(length_buckets=bad)


def test_max_buckets_caps_the_programs_keeping_the_full_length():
    from xprompt_jax.errors import ConfigError
    from xprompt_jax.run.config import DataConfig
    from xprompt_jax.run.data import capped
    full = (32, 48, 64, 96, 128, 192, 256, 384, 512)
    assert capped(full, None) == full and capped(full, 20) == full
    assert capped(full, 3) == (32, 128, 512) and capped(full, 1) == (512,)
    assert all(len(capped(full, n)) == n and capped(full, n)[-1] == 512 for n in range(1, 10))
    with pytest.raises(ConfigError, match="max_buckets"):
        DataConfig(max_buckets=0)


def test_the_compile_log_counts_programs_and_their_times():
    import jax
    import jax.numpy as jnp

    from xprompt_jax.compile_log import CompileLog
    with CompileLog() as log:
        jax.jit(lambda x: jnp.sin(x) * 3.0 + 0.123456)(jnp.ones(7))   # a program no other test compiles
    assert len(log.durations) >= 1 and "compiled" in log.summary()
    assert CompileLog().summary().startswith("compiled no XLA program")
