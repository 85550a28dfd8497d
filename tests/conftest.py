"""Shared fixtures. Files in ../shared are read where they lie; a user's clone has no ../shared, so
tests that need it skip there, and CI (XPROMPT_REQUIRE_SHARED=1, set by .ci/run) fails instead."""
import os
import pathlib

# Eight CPU devices for the mesh tests (4x2 data x model); must precede the first JAX import.
if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()

import pytest  # noqa: E402


def pytest_configure(config):
    """One persistent XLA compilation cache for the session: many tests compile the same tiny programs."""
    import tempfile

    import jax
    cache = os.environ.get("XPROMPT_COMPILATION_CACHE") or tempfile.mkdtemp(prefix="xprompt-xla-cache-")
    os.environ["XPROMPT_COMPILATION_CACHE"] = cache  # subprocesses share it
    jax.config.update("jax_compilation_cache_dir", cache)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)

from helpers import shared_path  # noqa: E402


@pytest.fixture
def t5x_tiny_dir() -> pathlib.Path:
    return shared_path("fixtures", "t5x_t5_1_1_tiny", "checkpoint_3")


@pytest.fixture(params=["hf_t5_v1_0_tiny", "hf_t5_v1_1_tiny"])
def hf_fixture_dir(request) -> pathlib.Path:
    return shared_path("fixtures", request.param)


@pytest.fixture(scope="module")
def fixture_model():
    """(config, frozen params, PromptedT5 with a 5-token 2-piece prompt) on the real T5X tiny checkpoint."""
    from xprompt_jax.prompted import build_prompted_t5
    from xprompt_jax.prompts.kinds import make_spec
    from xprompt_jax.t5_import import load_t5_checkpoint
    config, frozen = load_t5_checkpoint(str(shared_path("fixtures", "t5x_t5_1_1_tiny", "checkpoint_3")),
                                        "t5_1_1_prompt_tuning_test")
    return config, frozen, build_prompted_t5(config, make_spec(length=5, pieces=2), frozen)


@pytest.fixture(scope="session")
def demo(tmp_path_factory):
    """``xprompt-jax demo --quick`` run once, as a user runs it: from the installed wheel (not editable), in
    another directory, on one CPU device. (work dir, rows by stage, results, stdout). test_demo checks
    its claims; test_colab starts the notebook from its pre-trained model (the reuse path a second
    Colab run takes) instead of pre-training the same model again."""
    import json
    import subprocess

    from wheel_install import installed_wheel
    work = tmp_path_factory.mktemp("demo")
    bin_dir = installed_wheel(tmp_path_factory.mktemp("wheel"))
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "PYTHONPATH")}  # one CPU, as on a laptop
    where = subprocess.run([str(bin_dir / "python"), "-c", "import xprompt_jax, tasks; print(xprompt_jax.__file__, "
                            "tasks.__file__)"], cwd=work, env=env, capture_output=True, text=True)
    assert all(path.startswith(str(bin_dir.parent)) for path in where.stdout.split()), where.stdout + where.stderr
    run = subprocess.run([str(bin_dir / "xprompt-jax"), "demo", "--work_dir", str(work), "--quick"],
                         cwd=work, env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    (work / "demo_stderr.txt").write_text(run.stderr)  # test_demo: what a new user sees besides the progress
    with open(work / "demo_results_quick.json") as f:
        results = json.load(f)
    return work, {r["stage"]: r for r in results["rows"]}, results, run.stdout


# Layers of the suite (pytest.ini declares the markers). `pytest -m "not slow"` leaves out the demo's
# wheel install, the notebook and the two-process runs (about 5 minutes); the README's command runs everything. A test file can also mark itself (pytestmark = ...).
INTEGRATION_MODULES = {"test_trainer", "test_xprompt_run", "test_demo", "test_cli", "test_launchers",
                       "test_colab", "test_multihost", "test_ensembling", "test_data_guards"}
SLOW_MODULES = {"test_demo", "test_colab", "test_multihost"}   # fresh venvs, notebooks, process groups
MULTIHOST_MODULES = {"test_multihost"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        module = item.module.__name__.rsplit(".", 1)[-1]
        for marker, modules in (("integration", INTEGRATION_MODULES), ("slow", SLOW_MODULES),
                                ("multihost", MULTIHOST_MODULES)):
            if module in modules:
                item.add_marker(getattr(pytest.mark, marker))
