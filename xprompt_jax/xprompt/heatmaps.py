"""Importance heatmaps of a prompt, tokens x pieces, pruned cells greyed (the paper's figures 9 and 10).

With unpruned masks the picture is figure 9 (the original saliency map); with a ratio's masks it is
figure 10, where grey cells are the pruned tokens and pieces and the coloured rest is the winning
ticket. Drawing uses matplotlib's Agg canvas directly (no pyplot, no display, the user's backend
untouched), and the file appears atomically, so a reader never sees half a PNG.
"""
from __future__ import annotations

import textwrap
from typing import Optional, Sequence, Tuple

import numpy as np

from xprompt_jax import export
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


def color_scale(piece_scores, pruned=None) -> Tuple[float, float]:
    """(low, high) spanning the surviving cells (all cells when none survive); a single value is widened
    around itself, so a flat map shows one mid colour instead of an empty picture."""
    scores = np.asarray(piece_scores, np.float64)
    kept = scores if pruned is None else scores[~np.asarray(pruned)]
    kept = kept[np.isfinite(kept)]
    if not kept.size:
        return 0.0, 1.0
    low, high = float(kept.min()), float(kept.max())
    if high - low <= 1e-12 * max(abs(low), abs(high), 1e-30):
        pad = max(abs(low) * 0.5, 1e-12)
        low, high = low - pad, high + pad
    return low, high


def _draw(axes, piece_scores, pruned, scale, title: str, fontsize: float):
    import matplotlib
    length, pieces = piece_scores.shape
    cmap = matplotlib.colormaps[COLORMAP].with_extremes(bad=PRUNED_COLOR)
    image = axes.imshow(np.ma.masked_array(piece_scores, mask=pruned), cmap=cmap, norm=_norm(scale),
                        aspect="auto", interpolation="nearest")
    axes.set_xlabel("piece", fontsize=fontsize)
    axes.set_ylabel("prompt token", fontsize=fontsize)
    axes.set_xticks(range(0, pieces, max(1, -(-pieces // 16))))
    axes.set_yticks(range(0, length, max(1, -(-length // 40))))  # at most 40 labels: 100-token prompts stay legible
    axes.tick_params(labelsize=max(5.0, fontsize - 2))
    axes.set_title(title, fontsize=fontsize)
    return image


LOG_SPAN = 50.0  # a shared scale spanning more than this factor is drawn on a log scale


def _norm(scale):
    """Linear colours, or logarithmic when the scale spans more than ``LOG_SPAN`` (a run's ratios share one
    scale, and importance grows as the masks shrink: on a linear scale the low ratios would be one colour)."""
    from matplotlib.colors import LogNorm, Normalize
    low, high = scale
    if low > 0 and high / low > LOG_SPAN:
        return LogNorm(vmin=low, vmax=high, clip=True)
    return Normalize(vmin=low, vmax=high)


def _tick_format(low: float, high: float):
    """Tick labels with as many significant digits as the scale's span needs, and no offset text (which
    matplotlib would draw over the title: ``1e-12+1.29e-1``)."""
    from matplotlib.ticker import FuncFormatter
    span = max(high - low, 1e-300)
    digits = int(np.clip(np.ceil(np.log10(max(abs(low), abs(high), 1e-300) / span)) + 2, 3, 15))
    return FuncFormatter(lambda value, _: f"{value:.{digits}g}")


def _colorbar(figure, image, axes):
    low, high = image.get_clim()
    bar = figure.colorbar(image, ax=axes, format=_tick_format(low, high))
    bar.set_label("importance E|dL/d mask|", fontsize=8)
    bar.ax.tick_params(labelsize=7)
    return bar


def _wrap(title: str, inches: float) -> str:
    return textwrap.fill(title, max(16, int(inches * 11)))


def _figure(piece_scores, pruned, title: str, scale=None):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure  # a bare Figure on Agg: no pyplot, no display, no global backend

    length, pieces = piece_scores.shape
    width = max(4.5, min(0.35 * pieces, 10.0) + 2.5)
    height = max(3.0, min(0.3 * length, 12.0) + 1.5)
    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    image = _draw(axes, piece_scores, pruned, scale or color_scale(piece_scores, pruned), _wrap(title, width - 1.5), 9)
    _colorbar(figure, image, axes)
    return figure


def _write_png(figure, path: str) -> str:
    """The figure as a PNG at ``path``, appearing atomically."""
    return export.save_png(path, figure)


def _checked(piece_scores, token_mask, piece_mask):
    piece_scores = np.asarray(piece_scores, np.float64)
    if piece_scores.ndim != 2:
        raise ConfigError(f"piece scores must be (m, k); got {piece_scores.shape}")
    length, pieces = piece_scores.shape
    token_mask = np.ones(length) if token_mask is None else token_mask
    piece_mask = np.ones((length, pieces)) if piece_mask is None else piece_mask
    pruned = pruned_cells(token_mask, piece_mask)
    if pruned.shape != piece_scores.shape:
        raise ConfigError(f"masks {pruned.shape} do not match the piece scores {piece_scores.shape}")
    return piece_scores, pruned


def save_heatmap(path: str, piece_scores, token_mask=None, piece_mask=None,
                 title: Optional[str] = None, scale: Optional[Tuple[float, float]] = None) -> str:
    """Write ``piece_scores`` (m x k) as a PNG heatmap at ``path``; pruned cells drawn in grey.

    Masks default to all ones (nothing greyed: figure 9). The colour scale spans the surviving cells
    only, so the winning ticket's contrast is not flattened by pruned outliers, unless ``scale`` gives
    one (a run's ratios share one, so their pictures compare). Returns ``path``.
    """
    piece_scores, pruned = _checked(piece_scores, token_mask, piece_mask)
    if title is None:
        title = f"piece importance, {int((~pruned).sum())}/{pruned.size} pieces kept"
    return _write_png(_figure(piece_scores, pruned, title, scale), path)


def run_scale(entries: Sequence[Tuple[float, np.ndarray, dict]]) -> Tuple[float, float]:
    """One colour scale for every ratio of a run: the span of all their surviving cells."""
    lows, highs = zip(*(color_scale(scores, pruned_cells(masks["token_mask"], masks["piece_mask"]))
                        for _, scores, masks in entries))
    return min(lows), max(highs)


def save_overview(path: str, entries: Sequence[Tuple[float, np.ndarray, dict]]) -> str:
    """Every ratio's heatmap side by side on one colour scale (a paper's figure): ``entries`` are
    ``(ratio, piece_scores, masks)``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    scale = run_scale(entries)
    length, pieces = np.asarray(entries[0][1]).shape
    panel_w = max(2.2, min(0.2 * pieces, 5.0) + 0.8)
    height = max(3.0, min(0.22 * length, 10.0) + 1.5)
    figure = Figure(figsize=(panel_w * len(entries) + 1.2, height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, len(entries), sharey=True, squeeze=False)[0]
    image = None
    for ax, (ratio, scores, masks) in zip(axes, entries):
        scores, pruned = _checked(scores, masks["token_mask"], masks["piece_mask"])
        kept = int((~pruned).sum())
        image = _draw(ax, scores, pruned, scale, _wrap(f"{ratio:.0%} pruned: {kept}/{pruned.size} pieces", panel_w), 8)
        if ax is not axes[0]:
            ax.set_ylabel("")
    _colorbar(figure, image, list(axes))
    figure.suptitle("XPrompt importance by compression ratio (grey: pruned)", fontsize=10)
    return _write_png(figure, path)
