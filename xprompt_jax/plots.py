"""Figures a researcher can drop into a paper: a labelled matrix heatmap (PNG, Agg canvas, no pyplot state)."""
from __future__ import annotations

import textwrap
from typing import Optional, Sequence

import numpy as np

from xprompt_jax import export


def matrix_heatmap(path: str, values, row_labels: Sequence[str], column_labels: Sequence[str], title: str,
                   fmt: str = "{:.2f}") -> str:
    """``values`` (rows x columns; None cells blank) as an annotated heatmap at ``path``, written atomically."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    grid = np.array([[np.nan if v is None else float(v) for v in row] for row in values], np.float64)
    rows, columns = grid.shape
    figure = Figure(figsize=(max(4.0, 1.1 * columns + 3.0), max(3.0, 0.6 * rows + 2.0)), dpi=120,
                    layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    image = axes.imshow(np.ma.masked_invalid(grid), cmap="viridis", aspect="auto")
    axes.set_xticks(range(columns), [_short(c) for c in column_labels], rotation=40, ha="right", fontsize=8)
    axes.set_yticks(range(rows), [_short(r) for r in row_labels], fontsize=8)
    finite = grid[np.isfinite(grid)]
    middle: Optional[float] = float(finite.mean()) if finite.size else None
    for i in range(rows):
        for j in range(columns):
            if np.isfinite(grid[i, j]):
                axes.text(j, i, fmt.format(grid[i, j]), ha="center", va="center", fontsize=8,
                          color="black" if middle is not None and grid[i, j] > middle else "white")
    axes.set_title("\n".join(textwrap.wrap(title, 50)), fontsize=9)
    figure.colorbar(image, ax=axes)
    return export.save_png(path, figure)


def _short(label: str) -> str:
    return label[len("taskless_"):] if label.startswith("taskless_") else label
