"""T5X checkpoints (msgpack + zarr, all-inline, Orbax, run folders, gs:// specs) and every bad input."""
import gzip
import json
import shutil

import numpy as np
import pytest
from flax import serialization, traverse_util

from xprompt_jax.errors import CheckpointError
from xprompt_jax.models.config import t5_config
from xprompt_jax.models.decoding import greedy_decode
from xprompt_jax.models.t5 import T5, param_shapes
from xprompt_jax.t5_import import load_t5_checkpoint, storage

FIXTURE_CONFIG = "t5_1_1_prompt_tuning_test"


def _read_zarr_by_hand(folder):
    """Independent zarr v2 reader: metadata + gzip chunks assembled with NumPy."""
    meta = json.loads((folder / ".zarray").read_text())
    assert meta["compressor"]["id"] == "gzip" and meta["order"] == "C"
    out = np.zeros(meta["shape"], np.dtype(meta["dtype"]))
    chunks = meta["chunks"]
    grid = [-(-s // c) for s, c in zip(meta["shape"], chunks)]
    for index in np.ndindex(*grid):
        block = np.frombuffer(gzip.decompress((folder / ".".join(map(str, index))).read_bytes()),
                              np.dtype(meta["dtype"])).reshape(chunks)
        sl = tuple(slice(i * c, min((i + 1) * c, s)) for i, c, s in zip(index, chunks, meta["shape"]))
        out[sl] = block[tuple(slice(0, x.stop - x.start) for x in sl)]
    return out


def _flat(params):
    return traverse_util.flatten_dict(params, sep="/")


def test_fixture_loads_checked_and_runs(t5x_tiny_dir):
    config, params = load_t5_checkpoint(t5x_tiny_dir, FIXTURE_CONFIG)
    flat = _flat(params)
    expected = _flat(param_shapes(config))
    assert {k: v.shape for k, v in flat.items()} == {k: v.shape for k, v in expected.items()}
    np.testing.assert_array_equal(flat["token_embedder/embedding"],
                                  _read_zarr_by_hand(t5x_tiny_dir / "target.token_embedder.embedding"))
    np.testing.assert_array_equal(flat["decoder/logits_dense/kernel"],
                                  _read_zarr_by_hand(t5x_tiny_dir / "target.decoder.logits_dense.kernel"))
    state = serialization.msgpack_restore((t5x_tiny_dir / "checkpoint").read_bytes())
    np.testing.assert_array_equal(flat["encoder/relpos_bias/rel_embedding"],
                                  state["optimizer"]["target"]["encoder"]["relpos_bias"]["rel_embedding"])
    model = T5(config)
    inputs = np.array([[37, 5, 2983, 1, 0], [8, 1, 0, 0, 0]], np.int32)
    logits = model.apply({"params": params}, inputs, np.array([[0, 3], [0, 9]], np.int32))
    assert logits.shape == (2, 2, 32128) and np.isfinite(np.asarray(logits)).all()
    assert greedy_decode(model, params, inputs, 4).shape == (2, 4)


def _write_inline(src_params, folder):
    folder.mkdir()
    state = {"version": 3, "optimizer": {"target": src_params, "state": {"step": np.array(3)}}}
    (folder / "checkpoint").write_bytes(serialization.msgpack_serialize(state))


def test_all_inline_variant_and_bfloat16_cast(t5x_tiny_dir, tmp_path):
    _, params = load_t5_checkpoint(t5x_tiny_dir, FIXTURE_CONFIG)
    _write_inline(params, tmp_path / "inline")
    config, again = load_t5_checkpoint(tmp_path / "inline", FIXTURE_CONFIG)
    for key, value in _flat(params).items():
        np.testing.assert_array_equal(_flat(again)[key], value)
    config, bf16 = load_t5_checkpoint(tmp_path / "inline", FIXTURE_CONFIG, param_dtype="bfloat16")
    assert config.param_dtype == "bfloat16"
    assert all(str(v.dtype) == "bfloat16" for v in _flat(bf16).values())


def test_bfloat16_zarr_leaves_are_read_and_cast(t5x_tiny_dir, tmp_path):
    """T5X checkpoints saved from bfloat16 training keep bfloat16 zarr arrays."""
    import tensorstore as ts

    copy = tmp_path / "checkpoint_3"
    shutil.copytree(t5x_tiny_dir, copy)
    _, params = load_t5_checkpoint(t5x_tiny_dir, FIXTURE_CONFIG)
    kernel = _flat(params)["encoder/layers_0/mlp/wo/kernel"]
    folder = copy / "target.encoder.layers_0.mlp.wo.kernel"
    folder.chmod(0o755)
    shutil.rmtree(folder)
    store = ts.open({"driver": "zarr", "kvstore": {"driver": "file", "path": str(folder)},
                     "metadata": {"shape": list(kernel.shape), "chunks": list(kernel.shape), "dtype": "bfloat16"}},
                    create=True).result()
    store.write(kernel.astype("bfloat16")).result()
    _, loaded = load_t5_checkpoint(copy, FIXTURE_CONFIG)
    got = _flat(loaded)["encoder/layers_0/mlp/wo/kernel"]
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, kernel.astype("bfloat16").astype(np.float32))
    assert not np.array_equal(got, kernel)  # it really went through bfloat16


def test_orbax_variant(t5x_tiny_dir, tmp_path):
    import orbax.checkpoint as ocp

    _, params = load_t5_checkpoint(t5x_tiny_dir, FIXTURE_CONFIG)
    state = {"target": params, "state": {"step": np.array(3, np.int32),
                                         "param_states": {"embedding_v": np.ones(7, np.float32)}}}
    ocp.PyTreeCheckpointer().save(tmp_path / "checkpoint_3", state)
    config, again = load_t5_checkpoint(tmp_path / "checkpoint_3", FIXTURE_CONFIG)
    assert set(_flat(again)) == set(_flat(params))
    for key, value in _flat(params).items():
        np.testing.assert_array_equal(_flat(again)[key], value)


def test_run_folder_resolves_to_latest_step(t5x_tiny_dir, tmp_path):
    _, params = load_t5_checkpoint(t5x_tiny_dir, FIXTURE_CONFIG)
    _write_inline(params, tmp_path / "checkpoint_2")
    doubled = {k: v * 2 for k, v in _flat(params).items()}
    _write_inline(traverse_util.unflatten_dict(doubled, sep="/"), tmp_path / "checkpoint_10")
    _, latest = load_t5_checkpoint(tmp_path, FIXTURE_CONFIG)
    np.testing.assert_array_equal(_flat(latest)["token_embedder/embedding"], doubled["token_embedder/embedding"])


def test_gcs_paths_map_to_the_gcs_kvstore():
    assert storage.kvstore_spec("gs://t5-data/pretrained_models/t5x/t5_1_1_lm100k_base/checkpoint_1100000") == {
        "driver": "gcs", "bucket": "t5-data",
        "path": "pretrained_models/t5x/t5_1_1_lm100k_base/checkpoint_1100000/"}
    assert storage.kvstore_spec("/tmp/x/")["driver"] == "file"


def test_zarr_leaf_spec_is_rebased_on_the_checkpoint_folder():
    from xprompt_jax.t5_import.t5x import _absolute_spec

    leaf = {"driver": "zarr", "kvstore": {"driver": "gfile", "path": "target.encoder.layers_0.mlp.wo.kernel"},
            "metadata": {"shape": [8, 4]}}
    spec = _absolute_spec("gs://bucket/run/checkpoint_5", leaf)
    assert spec["kvstore"] == {"driver": "gcs", "bucket": "bucket",
                               "path": "run/checkpoint_5/target.encoder.layers_0.mlp.wo.kernel/"}
    old_style = {"driver": "zarr", "path": "target.x"}
    assert _absolute_spec("/ckpt", old_style)["kvstore"] == {"driver": "file", "path": "/ckpt/target.x/"}


# ----------------------------------------------------------------------------------------- bad input
def test_missing_path(tmp_path):
    with pytest.raises(CheckpointError, match="No checkpoint at .*nowhere"):
        load_t5_checkpoint(tmp_path / "nowhere", FIXTURE_CONFIG)


def test_unknown_format(tmp_path):
    (tmp_path / "weights.h5").write_bytes(b"\x89HDF")
    with pytest.raises(CheckpointError, match="not a checkpoint this project reads"):
        load_t5_checkpoint(tmp_path, FIXTURE_CONFIG)


def test_t5x_without_config_names_matching_sizes(t5x_tiny_dir):
    with pytest.raises(CheckpointError, match="stores no architecture.*t5_1_1_prompt_tuning_test"):
        load_t5_checkpoint(t5x_tiny_dir)


def test_shape_mismatch_names_parameter_and_shapes(t5x_tiny_dir):
    wrong = t5_config(FIXTURE_CONFIG).replace(mlp_dim=16)
    with pytest.raises(CheckpointError,
                       match=r"decoder/layers_0/mlp/wi_0/kernel has shape \(4, 8\), the config expects \(4, 16\)"):
        load_t5_checkpoint(t5x_tiny_dir, wrong)


def test_vocabulary_mismatch(t5x_tiny_dir):
    with pytest.raises(CheckpointError, match="Vocabulary mismatch.*32128 rows.*vocab_size is 32000"):
        load_t5_checkpoint(t5x_tiny_dir, t5_config(FIXTURE_CONFIG).replace(vocab_size=32000))


def test_wrong_variant_lists_missing_parameters(t5x_tiny_dir):
    t5_1_0 = t5_config(FIXTURE_CONFIG).replace(mlp_activations=("relu",), logits_via_embedding=True)
    with pytest.raises(CheckpointError, match="lacks parameters.*mlp/wi/kernel"):
        load_t5_checkpoint(t5x_tiny_dir, t5_1_0)


def test_truncated_msgpack(t5x_tiny_dir, tmp_path):
    copy = tmp_path / "checkpoint_3"
    shutil.copytree(t5x_tiny_dir, copy)
    (copy / "checkpoint").chmod(0o644)
    data = (copy / "checkpoint").read_bytes()
    (copy / "checkpoint").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="checkpoint is not a readable T5X msgpack checkpoint"):
        load_t5_checkpoint(copy, FIXTURE_CONFIG)


def test_truncated_zarr_chunk(t5x_tiny_dir, tmp_path):
    copy = tmp_path / "checkpoint_3"
    shutil.copytree(t5x_tiny_dir, copy)
    chunk = copy / "target.token_embedder.embedding" / "3.0"
    chunk.chmod(0o644)
    chunk.write_bytes(chunk.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="token_embedder/embedding .*target.token_embedder.embedding"):
        load_t5_checkpoint(copy, FIXTURE_CONFIG)


def test_truncated_safetensors_and_bad_config_json(hf_fixture_dir, tmp_path):
    copy = tmp_path / "hf"
    shutil.copytree(hf_fixture_dir, copy)
    weights = copy / "model.safetensors"
    weights.chmod(0o644)
    weights.write_bytes(weights.read_bytes()[:5000])
    with pytest.raises(CheckpointError, match="model.safetensors is not a readable safetensors file"):
        load_t5_checkpoint(copy)
    (copy / "config.json").chmod(0o644)
    (copy / "config.json").write_text('{"d_model": 16,')
    with pytest.raises(CheckpointError, match="config.json is not valid JSON"):
        load_t5_checkpoint(copy)


def test_hf_folder_without_weights(hf_fixture_dir, tmp_path):
    (tmp_path / "config.json").write_text((hf_fixture_dir / "config.json").read_text())
    with pytest.raises(CheckpointError, match="has config.json but no weights"):
        load_t5_checkpoint(tmp_path)
