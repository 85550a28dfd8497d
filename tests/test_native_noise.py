"""TensorFlow's start-up lines are dropped from fd 2 while a cache is written; every other line survives.

The lines are written to file descriptor 2 itself (as TensorFlow's C++ side does), in a subprocess so
the test's own stderr is not redirected. A separate check imports TensorFlow for real, with and without
the filter, so the patterns are the lines this TensorFlow prints.
"""
import os
import subprocess
import sys
import textwrap

from xprompt_jax.data.native_noise import kept_lines

TF_NOISE = [
    b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n",
    b"I0000 00:00:1796277943.357592    1965 cudart_stub.cc:31] Could not find cuda drivers on your machine, "
    b"GPU will not be used.\n",
    b"normalizer.cc(51) LOG(INFO) precompiled_charsmap is empty. use identity normalization.\n",
]


def _stderr_of(body: str, fails: bool = False, **env) -> str:
    """The stderr of ``body`` run in a fresh Python (which exits non-zero exactly when ``fails``)."""
    code = "import os, sys\nfrom xprompt_jax.data.native_noise import filtered_native_stderr\n" + textwrap.dedent(body)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **env})
    assert (done.returncode != 0) == fails, done.stderr
    return done.stderr


def test_kept_lines_drops_exactly_the_known_lines():
    real = [b"E1203 06:00:00.1 1 cuda_executor.cc:1] failed call to cuInit: UNKNOWN ERROR\n",
            b"WARNING: absl said something else\n", b"Traceback (most recent call last):\n"]
    mixed = [real[0], TF_NOISE[0], real[1], TF_NOISE[1], TF_NOISE[2], real[2]]
    assert kept_lines(b"".join(mixed)) == b"".join(real)
    assert kept_lines(b"no newline at the end") == b"no newline at the end"


def test_noise_written_to_fd2_is_dropped_and_other_lines_come_back_in_order():
    noise = "".join(f"        os.write(2, {line!r})\n" for line in TF_NOISE)
    body = ("print('before', file=sys.stderr)\n"
            "with filtered_native_stderr():\n"
            "    os.write(2, b'native: a real warning\\n')\n"
            "    if True:\n" + noise +
            "    with filtered_native_stderr():  # nested: the outer block still filters\n"
            f"        os.write(2, {TF_NOISE[1]!r})\n"
            "        print('python: from the inner block', file=sys.stderr)\n"
            "    print('python: a logging line', file=sys.stderr)\n"
            "os.write(2, b'after\\n')\n")
    lines = _stderr_of(body).splitlines()
    assert lines == ["before", "native: a real warning", "python: from the inner block",
                     "python: a logging line", "after"]
    assert "cudart_stub" in _stderr_of(body, XPROMPT_NATIVE_STDERR="1")  # the switch that shows all


def test_a_failure_inside_the_block_still_restores_fd2_and_shows_its_traceback():
    body = f"""
    def raise_inside():
        with filtered_native_stderr():
            os.write(2, {TF_NOISE[0]!r})
            os.write(2, b"native: said before failing\\n")
            raise RuntimeError("the cache could not be written")
    try:
        raise_inside()
    except RuntimeError:
        os.write(2, b"fd 2 is the terminal again\\n")
    raise_inside()
    """
    err = _stderr_of(body, fails=True)
    assert "absl::InitializeLog" not in err
    assert err.count("native: said before failing") == 2 and "fd 2 is the terminal again" in err
    assert err.rstrip().endswith("RuntimeError: the cache could not be written")


def test_tensorflow_start_up_lines_are_the_ones_filtered():
    """Unfiltered, this TensorFlow prints its start-up lines; filtered, none remain and a line after it does."""
    body = """
    with filtered_native_stderr():
        import tensorflow as tf
        tf.constant(1)
        os.write(2, b"still here\\n")
    """
    unfiltered = _stderr_of(body, XPROMPT_NATIVE_STDERR="1")
    filtered = _stderr_of(body)
    assert "absl::InitializeLog" in unfiltered, unfiltered
    assert filtered.splitlines() == ["still here"], filtered
