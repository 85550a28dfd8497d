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

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED = pathlib.Path(os.environ.get("XPROMPT_SHARED", REPO.parent / "shared"))


def shared_path(*parts: str) -> pathlib.Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        message = f"{path} not found: the ../shared folder beside the checkout holds the fixtures"
        if os.environ.get("XPROMPT_REQUIRE_SHARED") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture
def t5x_tiny_dir() -> pathlib.Path:
    return shared_path("fixtures", "t5x_t5_1_1_tiny", "checkpoint_3")


@pytest.fixture(params=["hf_t5_v1_0_tiny", "hf_t5_v1_1_tiny"])
def hf_fixture_dir(request) -> pathlib.Path:
    return shared_path("fixtures", request.param)
