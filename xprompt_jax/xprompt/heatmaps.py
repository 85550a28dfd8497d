"""Importance heatmaps of a prompt, tokens x pieces, pruned cells greyed (the paper's figures 9 and 10).

With unpruned masks the picture is figure 9 (the original saliency map); with a ratio's masks it is
figure 10, where grey cells are the pruned tokens and pieces and the coloured rest is the winning
ticket. Drawing uses matplotlib's Agg canvas directly (no pyplot, no display, the user's backend
untouched), and the file appears atomically, so a reader never sees half a PNG.
"""
from __future__ import annotations

import os
import tempfile
from typing import Optional

import numpy as np

from xprompt_jax.errors import ConfigError

PRUNED_COLOR = (0.75, 0.75, 0.75)   # light grey: not in the colour map below, so pruned cells stand apart
COLORMAP = "viridis"


def pruned_cells(token_mask, piece_mask) -> np.ndarray:
    """(m, k) bool: True where a piece is pruned, by its own mask or with its whole token."""
    token_mask = np.asarray(token_mask)
    piece_mask = np.asarray(piece_mask)
    if token_mask.ndim != 1 or piece_mask.ndim != 2 or piece_mask.shape[0] != token_mask.shape[0]:
        raise ConfigError(f"heatmap masks must be token (m,) and piece (m, k); got {token_mask.shape} and "
                          f"{piece_mask.shape}")
    return (token_mask[:, None] * piece_mask) == 0


def _figure(piece_scores, pruned, title: str):
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import (
        Figure,  # a bare Figure on Agg: no pyplot, no display, no global backend
    )

    length, pieces = piece_scores.shape
    figure = Figure(figsize=(max(4.0, 0.35 * pieces + 2.0), max(3.0, 0.3 * length + 1.5)), dpi=100,
                    layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    cmap = matplotlib.colormaps[COLORMAP].with_extremes(bad=PRUNED_COLOR)
    shown = np.ma.masked_array(piece_scores, mask=pruned)
    kept = piece_scores[~pruned]
    low, high = (float(kept.min()), float(kept.max())) if kept.size else (0.0, 1.0)
    image = axes.imshow(shown, cmap=cmap, vmin=low, vmax=high if high > low else low + 1e-12,
                        aspect="auto", interpolation="nearest")
    axes.set_xlabel("piece")
    axes.set_ylabel("prompt token")
    axes.set_xticks(range(pieces))
    axes.set_yticks(range(length))
    axes.tick_params(labelsize=7)
    axes.set_title(title, fontsize=9)
    figure.colorbar(image, ax=axes, label="importance E|dL/d mask|")
    return figure


def save_heatmap(path: str, piece_scores, token_mask=None, piece_mask=None,
                 title: Optional[str] = None) -> str:
    """Write ``piece_scores`` (m x k) as a PNG heatmap at ``path``; pruned cells drawn in grey.

    Masks default to all ones (nothing greyed: figure 9). The colour scale spans the surviving cells
    only, so the winning ticket's contrast is not flattened by pruned outliers. Returns ``path``.
    """
    piece_scores = np.asarray(piece_scores, np.float64)
    if piece_scores.ndim != 2:
        raise ConfigError(f"piece scores must be (m, k); got {piece_scores.shape}")
    length, pieces = piece_scores.shape
    token_mask = np.ones(length) if token_mask is None else token_mask
    piece_mask = np.ones((length, pieces)) if piece_mask is None else piece_mask
    pruned = pruned_cells(token_mask, piece_mask)
    if pruned.shape != piece_scores.shape:
        raise ConfigError(f"masks {pruned.shape} do not match the piece scores {piece_scores.shape}")
    if title is None:
        title = f"piece importance, {int((~pruned).sum())}/{pruned.size} pieces kept"
    figure = _figure(piece_scores, pruned, title)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    handle, temp = tempfile.mkstemp(prefix=".heatmap-", suffix=".png", dir=folder)
    try:
        with os.fdopen(handle, "wb") as out:
            figure.savefig(out, format="png")
        os.chmod(temp, 0o644)  # mkstemp makes it private; a figure is for everyone to read
        os.replace(temp, path)
    except BaseException:
        if os.path.exists(temp):
            os.remove(temp)
        raise
    return path
