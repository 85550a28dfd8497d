"""The xprompt-jax command: the README's smoke run, gin layering and its errors."""
import pytest

from xprompt_jax.cli import main as cli


def test_smoke_on_the_t5x_fixture(t5x_tiny_dir, capsys):
    assert cli.main(["smoke", f"--checkpoint={t5x_tiny_dir}", "--gin_file=sizes/prompt_tuning_test.gin",
                     "--gin.t5_config.dtype='bfloat16'"]) == 0
    out = capsys.readouterr().out
    assert "257,856" in out and "t5_1_1: 2+2 layers, d_model 4" in out
    assert "finite=True" in out and out.rstrip().endswith("[smoke] ok")


def test_smoke_default_checkpoint_is_the_fixture(t5x_tiny_dir, capsys):
    assert cli.main(["smoke"]) == 0
    assert "[smoke] ok" in capsys.readouterr().out


def test_smoke_on_a_huggingface_folder(hf_fixture_dir, capsys):
    assert cli.main(["smoke", "--checkpoint", str(hf_fixture_dir)]) == 0
    assert "d_model 16" in capsys.readouterr().out


@pytest.mark.parametrize("argv,message", [
    (["--gin_file=sizes/nope.gin"], "gin file sizes/nope.gin not found"),
    (["--gin.t5_confg.size='tiny'"], "No configurable matching 't5_confg'"),
    (["--gin.t5_config.nonsense=3"], "unknown field(s) nonsense"),
    (["--gin_file=sizes/base.gin"], "Shape mismatch"),
])
def test_gin_errors_are_named(t5x_tiny_dir, capsys, argv, message):
    assert cli.main(["smoke", f"--checkpoint={t5x_tiny_dir}"] + argv) == 2
    assert message in capsys.readouterr().err


def test_gin_layers_compose_in_order():
    import gin

    from xprompt_jax.cli.gin_configurables import t5_config
    from xprompt_jax.cli.gin_flags import parse_gin

    gin.clear_config()
    try:
        parse_gin(["models/t5_1_0.gin", "sizes/small.gin"], ["t5_config.remat = 'full'"])
        config = t5_config()
        assert config == t5_config("t5_1_0_small").replace(remat="full")
    finally:
        gin.clear_config()
