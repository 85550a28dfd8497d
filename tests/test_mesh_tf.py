"""The original T5 release's Mesh TensorFlow checkpoints: read (with TensorFlow), converted once to an
Orbax checkpoint, and loaded from that on the TensorFlow-free path to the same logits.

The checkpoint is written here with TensorFlow's own checkpoint writer (``SaveV2``) in the release's
layout and variable names, from the real T5X fixture's weights: ``shared/embedding``,
``encoder/block_000/layer_000/SelfAttention/q``, ``.../relative_attention_bias`` in block 0 only,
``DenseReluDense/wi_0/kernel``, ``rms_norm/scale``, ``decoder/logits/kernel``, Adafactor's slots and
``global_step``, a ``checkpoint`` text file and an ``operative_config.gin``.
"""
import numpy as np
import pytest
from flax import traverse_util
from helpers import shared_path

from xprompt_jax.cli import main as cli_main
from xprompt_jax.errors import CheckpointError
from xprompt_jax.models.t5 import T5
from xprompt_jax.t5_import import load_t5_checkpoint, mesh_tf

pytestmark = pytest.mark.integration


def _mesh_tf_names(flat):
    """The fixture's T5X parameters under the Mesh TF release's names (the inverse of the importer)."""
    out = {}
    for name, value in flat.items():
        parts = name.split("/")
        if name == "token_embedder/embedding":
            out["shared/embedding"] = value
        elif parts[1] == "relpos_bias":
            out[f"{parts[0]}/block_000/layer_000/SelfAttention/relative_attention_bias"] = value
        elif parts[1].endswith("_norm"):
            out[f"{parts[0]}/final_layer_norm/scale"] = value
        elif name == "decoder/logits_dense/kernel":
            out["decoder/logits/kernel"] = value
        else:
            stack, block = parts[0], f"block_{int(parts[1].split('_')[1]):03d}"
            if parts[2] in ("attention", "self_attention", "encoder_decoder_attention"):
                layer = {"encoder_decoder_attention": "layer_001/EncDecAttention"}.get(parts[2], "layer_000/SelfAttention")
                out[f"{stack}/{block}/{layer}/{dict(query='q', key='k', value='v', out='o')[parts[3]]}"] = value
            elif parts[2] == "mlp":
                out[f"{stack}/{block}/layer_00{1 if stack == 'encoder' else 2}/DenseReluDense/{parts[3]}/kernel"] = value
            else:
                order = (["pre_attention_layer_norm", "pre_mlp_layer_norm"] if stack == "encoder" else
                         ["pre_self_attention_layer_norm", "pre_cross_attention_layer_norm", "pre_mlp_layer_norm"])
                out[f"{stack}/{block}/layer_{order.index(parts[2]):03d}/rms_norm/scale"] = value
    return out


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    tf = pytest.importorskip("tensorflow")
    config, params = load_t5_checkpoint(str(shared_path("fixtures", "t5x_t5_1_1_tiny", "checkpoint_3")),
                                        "t5_1_1_prompt_tuning_test")
    flat = traverse_util.flatten_dict(params, sep="/")
    variables = _mesh_tf_names(flat)
    variables["shared/embedding_slot_vc"] = np.ones(4, np.float32)        # Adafactor's slots: skipped
    variables["encoder/block_000/layer_000/SelfAttention/q_slot_v"] = np.ones((4, 4), np.float32)
    variables["global_step"] = np.array(1000000, np.int64)
    folder = tmp_path_factory.mktemp("t5_release")
    prefix = str(folder / "model.ckpt-1000000")
    names = sorted(variables)
    tf.raw_ops.SaveV2(prefix=prefix, tensor_names=names, shape_and_slices=[""] * len(names),
                      tensors=[tf.constant(variables[n]) for n in names])
    (folder / "checkpoint").write_text('model_checkpoint_path: "model.ckpt-1000000"\n')
    (folder / "operative_config.gin").write_text(
        "DenseReluDense.activation = ['gelu', 'linear']\nd_model = 4\nd_ff = 8\nd_kv = 2\nnum_heads = 2\n"
        "relative_attention_max_distance = 8\n")
    return folder, config, params


def test_a_release_checkpoint_reads_to_the_t5x_names_and_architecture(release):
    folder, config, params = release
    found, flat = mesh_tf.read_mesh_tf_checkpoint(str(folder))
    assert found == config                                    # heads, widths, gated GELU, untied logits
    expected = traverse_util.flatten_dict(params, sep="/")
    assert flat.keys() == expected.keys()
    for name in expected:
        np.testing.assert_array_equal(flat[name], expected[name])


def test_convert_round_trips_to_the_logits_of_a_direct_read(release, tmp_path, capsys):
    folder, config, params = release
    out = tmp_path / "converted"
    assert cli_main.main(["convert", f"--checkpoint={folder / 'model.ckpt-1000000'}", f"--out={out}"]) == 0
    printed = capsys.readouterr().out
    assert "t5_1_1_prompt_tuning_test" in printed and "--gin_file=sizes/prompt_tuning_test.gin" in printed
    loaded_config, loaded = load_t5_checkpoint(str(out), "t5_1_1_prompt_tuning_test")  # TF-free path
    _, direct = mesh_tf.read_mesh_tf_checkpoint(str(folder))
    inputs = np.array([[37, 5, 2983, 21, 8, 1, 0, 0], [13, 9, 1, 0, 0, 0, 0, 0]], np.int32)
    decoder_inputs = np.array([[0, 1176, 7], [0, 2841, 9]], np.int32)
    model = T5(loaded_config)
    ours = model.apply({"params": loaded}, inputs, decoder_inputs)
    reference = model.apply({"params": traverse_util.unflatten_dict(direct, sep="/")}, inputs, decoder_inputs)
    np.testing.assert_array_equal(np.asarray(ours), np.asarray(reference))
    np.testing.assert_array_equal(np.asarray(ours), np.asarray(model.apply({"params": params}, inputs, decoder_inputs)))


def test_the_training_path_refuses_a_release_checkpoint_and_names_the_convert_command(release, tmp_path, capsys):
    folder, _, _ = release
    with pytest.raises(CheckpointError, match="xprompt-jax convert"):
        load_t5_checkpoint(str(folder), "t5_1_1_prompt_tuning_test")
    assert cli_main.main(["convert", f"--checkpoint={folder}", f"--out={folder}"]) == 2   # never over its input
    assert "already exists" in capsys.readouterr().err


def test_an_unknown_variable_is_refused_by_name():
    with pytest.raises(CheckpointError, match="encoder/block_001/layer_000/SelfAttention/relative_attention_bias"):
        mesh_tf.translate("encoder/block_001/layer_000/SelfAttention/relative_attention_bias")
    with pytest.raises(CheckpointError, match="encoder/adapter/kernel"):
        mesh_tf.translate("encoder/adapter/kernel")
    assert mesh_tf.translate("decoder/block_003/layer_001/EncDecAttention/k") == \
        "decoder/layers_3/encoder_decoder_attention/key/kernel"
