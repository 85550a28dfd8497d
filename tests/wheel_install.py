"""The package as a user gets it from ``pip install xprompt-jax``: a wheel, installed non-editable.

``installed_wheel(tmp)`` builds the wheel of this checkout and installs it, without its dependencies,
into a fresh virtual environment whose dependencies come from the test environment (a ``.pth`` file
pointing at its site-packages: folders named there are plain import paths, so the editable install's
finder in them never runs). What the wheel lacks, a gin file or the demo vocabulary, is then missing
for real, as it would be for a user.
"""
import os
import pathlib
import site
import subprocess
import sys

from helpers import REPO


def _run(*args, **kwargs):
    done = subprocess.run(list(args), capture_output=True, text=True, **kwargs)
    assert done.returncode == 0, f"{args}: {done.stdout[-2000:]}{done.stderr[-3000:]}"
    return done


def installed_wheel(tmp: pathlib.Path) -> pathlib.Path:
    """The ``bin/`` folder of a fresh venv that holds this checkout's wheel (and nothing else of it)."""
    wheels = tmp / "wheels"
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels),
         str(REPO))
    wheel = next(wheels.glob("xprompt_jax-*.whl"))
    venv = tmp / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", str(venv))
    python = venv / "bin" / "python"
    _run(sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", "-q", str(wheel))
    target = _run(str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").stdout.strip()
    deps = [p for p in site.getsitepackages() if os.path.isdir(p)]
    pathlib.Path(target, "test_environment_deps.pth").write_text("\n".join(deps) + "\n")
    return venv / "bin"
