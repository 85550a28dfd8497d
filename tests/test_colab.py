"""launch/colab.ipynb, executed cell by cell in a Jupyter kernel (nbclient) in its shortened CPU mode.

``XPROMPT_NOTEBOOK_QUICK=1`` (read by the parameters cell) shortens the demo as ``xprompt-jax demo --quick``
does and skips the real-checkpoint run, which needs Cloud Storage. Every code cell must run without an
error, the demo's table must be in the outputs, and the heatmaps must be shown inline as images.
"""
import json
import re
import shutil

import pytest
from helpers import REPO

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOK = REPO / "launch" / "colab.ipynb"


def _text(output) -> str:
    if output.get("output_type") == "stream":
        return output.get("text", "")
    data = output.get("data", {})
    return data.get("text/markdown", "") + data.get("text/plain", "")


def test_notebook_is_valid_and_ships_without_outputs():
    nb = nbformat.read(str(NOTEBOOK), as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code)
    assert "parameters" in code[0].metadata.get("tags", [])
    source = "\n".join(c.source for c in code)
    for needed in ("git", "clone", "pip", "detect_accelerator", "run_demo", "gs://", "taskless_super_glue_rte_v102",
                   "heatmap.png", "xprompt_jax(ARGS)"):
        assert needed in source, needed


def test_notebook_runs_in_quick_cpu_mode(tmp_path, monkeypatch, demo):
    # The demo's pre-trained frozen model and data caches, as a second Colab run finds them (the
    # pre-training itself is test_demo's: the same run_demo code from the CLI).
    for part in ("pretrain", "data"):
        shutil.copytree(demo[0] / part, tmp_path / "demo" / part)
    monkeypatch.setenv("XPROMPT_NOTEBOOK_QUICK", "1")
    monkeypatch.setenv("XPROMPT_NOTEBOOK_WORK_DIR", str(tmp_path / "demo"))
    monkeypatch.setenv("XPROMPT_REPO_DIR", str(REPO))
    monkeypatch.setenv("PYTHONPATH", str(REPO))      # installed already: the install cell finds it
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    monkeypatch.delenv("XLA_FLAGS", raising=False)   # one CPU device, as a CPU Colab runtime has
    nb = nbformat.read(str(NOTEBOOK), as_version=4)
    client = nbclient.NotebookClient(nb, timeout=900, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()   # raises CellExecutionError, naming the cell, if any cell fails

    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count is not None for c in code)
    assert not [o for c in code for o in c.outputs if o.output_type == "error"]
    text = "\n".join(_text(o) for c in code for o in c.outputs)
    assert "accelerator: cpu" in text
    assert re.search(r"JAX \S+ on cpu: 1 device", text)
    # The demo's table, rendered as Markdown.
    markdown = [o["data"]["text/markdown"] for c in code for o in c.outputs if "text/markdown" in o.get("data", {})]
    assert any("| prompt tuning | 0% | 10 | 640 |" in m for m in markdown), markdown
    assert any(m.startswith("| stage | pruned | prompt tokens | trainable parameters | accuracy (%) |") for m in markdown)
    # The heatmaps, inline as PNG images.
    images = [o for c in code for o in c.outputs if "image/png" in o.get("data", {})]
    assert len(images) == 2
    assert "QUICK: the real-checkpoint run is skipped" in text
    assert "pre-trained demo T5 found at" in text  # the reuse path, not a second pre-training
    results = json.loads((tmp_path / "demo" / "demo_results_quick.json").read_text())
    assert results["quick"] is True
