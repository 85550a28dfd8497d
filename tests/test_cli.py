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


# ------------------------------------------------------------------------------------------------
# The first hour (issue 28): help that teaches, advice that works
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("command,run_file,macro,default", [
    ("train", "runs/prompt_tune.gin", "BATCH_SIZE", "32"),
    ("xprompt", "runs/xprompt.gin", "BATCH_SIZE", "16"),      # the run file's own value over its include's
    ("evaluate", "runs/eval.gin", "PROMPT_SOURCE", "(required)"),
    ("ensemble", "runs/ensemble.gin", "PROMPT_SOURCES", "(required)"),
])
def test_command_help_shows_an_example_the_layering_and_the_run_files_macros(capsys, command, run_file, macro,
                                                                               default):
    import re
    with pytest.raises(SystemExit):
        cli.main([command, "--help"])
    out = capsys.readouterr().out
    assert f"xprompt-jax {command} --gin_file=" in out and f"--gin_file={run_file}" in out   # a working example
    assert "--gin_file=models/" in out and "--gin_file=sizes/" in out and "--gin_file=runs/" in out
    assert re.search(rf"^\s+{macro}\s+{re.escape(default)}$", out, re.M), out
    from xprompt_jax.cli.help import run_file_macros
    assert all(name in out for name in run_file_macros(run_file))  # read from the gin file itself


def test_top_level_help_has_no_markup(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    assert "``" not in out and "xprompt-jax: prompt tuning" in out


def test_a_gin_command_without_a_run_file_says_which_to_add(capsys):
    assert cli.main(["train"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--gin_file=runs/prompt_tune.gin" in err and "runs/xprompt.gin" in err
    assert cli.main(["train", "--gin_file=sizes/tiny.gin", "--gin.MODEL_DIR='/tmp/run'"]) == 2
    err = capsys.readouterr().err.strip()
    assert "no run file is loaded" in err and "--gin_file=runs/prompt_tune.gin" in err


def test_smoke_on_a_t5x_folder_without_a_size_uses_the_one_that_matches(t5x_tiny_dir, capsys):
    assert cli.main(["smoke", f"--checkpoint={t5x_tiny_dir}"]) == 0
    out = capsys.readouterr().out
    assert "its shapes match only t5_1_1_prompt_tuning_test: using it" in out and "[smoke] ok" in out


def test_the_data_cache_folder_comes_from_the_environment_as_the_other_paths_do(monkeypatch, tmp_path):
    from xprompt_jax.data.task_cache import DEFAULT_DATA_CACHE, resolve_cache_dir
    monkeypatch.delenv("XPROMPT_DATA_CACHE", raising=False)
    monkeypatch.delenv("XPROMPT_DATA_CACHE_DIR", raising=False)
    assert resolve_cache_dir(None) == DEFAULT_DATA_CACHE
    monkeypatch.setenv("XPROMPT_DATA_CACHE_DIR", str(tmp_path))
    assert resolve_cache_dir(None) == str(tmp_path)
    assert resolve_cache_dir("/elsewhere") == "/elsewhere"   # the DATA_CACHE_DIR macro wins


def test_prompt_settings_are_checked_before_any_data_cache_is_written(t5x_tiny_dir, tmp_path, capsys):
    """EPT's rank must be below the model width (4): refused before the task's cache is written."""
    from helpers import train

    from xprompt_jax.errors import ConfigError
    from xprompt_jax.models.config import t5_config
    from xprompt_jax.prompts.kinds import make_spec
    with pytest.raises(ConfigError, match="r < e = 4"):
        train(model_dir=str(tmp_path / "run"), task="demo_max_no_keyword", data_cache_dir=str(tmp_path / "cache"),
              checkpoint=str(t5x_tiny_dir), model_config=t5_config("t5_1_1_prompt_tuning_test"),
              prompt_spec=make_spec(kind="ept", rank=7, length=1, init="uniform"), train_steps=1)
    assert not (tmp_path / "cache").exists()


def test_a_macro_of_a_gin_file_not_loaded_names_the_files_that_read_it(capsys):
    """--gin.PROMPT_LENGTH without a prompts/ file: the files that read it, not a guess at a near name."""
    assert cli.main(["train", "--gin_file=sizes/tiny.gin", "--gin_file=runs/prompt_tune.gin",
                     "--gin.MODEL_DIR='/tmp/run'", "--gin.PROMPT_LENGTH=4"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "prompts/sampled_vocabulary.gin" in err and "--gin_file" in err
    assert "did you mean" not in err


@pytest.mark.parametrize("folder", ["hf_byt5_tiny", "hf_mt5_tiny", "hf_ul2_style_tiny"])
def test_smoke_runs_every_family_within_its_vocabulary(folder, capsys):
    """ByT5 embeds 384 rows: smoke's sample ids are folded into the model's vocabulary, and a non-finite
    forward pass would be an error, not 'ok'."""
    from helpers import shared_path
    assert cli.main(["smoke", f"--checkpoint={shared_path('fixtures', folder)}"]) == 0
    out = capsys.readouterr().out
    assert "finite=True" in out and "nan" not in out and out.rstrip().endswith("[smoke] ok")
