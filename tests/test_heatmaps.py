"""Importance heatmaps: a real PNG, written atomically, with pruned cells in grey where they belong."""
import os

import numpy as np
import pytest

from xprompt_jax.errors import ConfigError
from xprompt_jax.xprompt import heatmaps

matplotlib = pytest.importorskip("matplotlib")
from matplotlib import image as mpimg  # noqa: E402

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _scores(m=4, k=4):
    """Scores whose extremes sit at (1, 1) and (2, 2), so greying a corner leaves the colour scale alone."""
    scores = np.full((m, k), 0.5) + 0.01 * np.arange(m * k).reshape(m, k)
    scores[1, 1], scores[2, 2] = 0.0, 1.0
    return scores


def _draw(tmp_path, name, pruned=(), pruned_tokens=()):
    token, piece = np.ones(4), np.ones((4, 4))
    for cell in pruned:
        piece[cell] = 0
    token[list(pruned_tokens)] = 0
    path = heatmaps.save_heatmap(str(tmp_path / name), _scores(), token, piece, title="fixed")
    return mpimg.imread(path)[..., :3]


def _is_grey(rgb):
    return np.all(np.abs(rgb - np.array(heatmaps.PRUNED_COLOR)) < 1.5 / 255, axis=-1)


def test_heatmap_is_a_png_written_atomically(tmp_path):
    path = heatmaps.save_heatmap(str(tmp_path / "sub" / "original.png"), _scores())
    assert os.path.getsize(path) > 0
    with open(path, "rb") as f:
        assert f.read(8) == PNG_SIGNATURE
    assert os.listdir(tmp_path / "sub") == ["original.png"]  # the temporary file was renamed, none left


def test_pruned_cells_turn_grey_in_proportion_to_their_number(tmp_path):
    """Greying one cell, then five (one piece and a whole token through the token mask), adds grey area
    five times as large; nothing else in the picture changes colour."""
    none = _draw(tmp_path, "none.png")
    one = _draw(tmp_path, "one.png", pruned=[(0, 3)])
    five = _draw(tmp_path, "five.png", pruned=[(0, 3)], pruned_tokens=[3])
    changed = np.any(none != one, axis=-1)
    assert changed.sum() > 100
    assert _is_grey(one[changed]).mean() > 0.95  # the rest: anti-aliased cell edges
    added_one = _is_grey(one).sum() - _is_grey(none).sum()
    added_five = _is_grey(five).sum() - _is_grey(none).sum()
    assert added_one > 0.95 * changed.sum()
    assert 4.5 < added_five / added_one < 5.5


def test_grey_cell_sits_where_the_pruned_piece_is(tmp_path):
    none = _draw(tmp_path, "none.png")
    centres = {}
    for cell in [(0, 0), (0, 3), (3, 0)]:
        rows, cols = np.nonzero(np.any(none != _draw(tmp_path, f"{cell}.png", pruned=[cell]), axis=-1))
        centres[cell] = rows.mean(), cols.mean()
    assert centres[(0, 0)][1] < centres[(0, 3)][1]    # piece index grows to the right
    assert abs(centres[(0, 0)][0] - centres[(0, 3)][0]) < 2
    assert centres[(0, 0)][0] < centres[(3, 0)][0]    # token index grows downwards
    assert abs(centres[(0, 0)][1] - centres[(3, 0)][1]) < 2


def test_heatmap_rejects_mismatched_masks(tmp_path):
    with pytest.raises(ConfigError, match="do not match"):
        heatmaps.save_heatmap(str(tmp_path / "x.png"), np.ones((4, 4)), np.ones(4), np.ones((4, 2)))
    with pytest.raises(ConfigError, match=r"must be \(m, k\)"):
        heatmaps.save_heatmap(str(tmp_path / "x.png"), np.ones(4))


def _count_color(rgb, color, tolerance=2.5 / 255):
    return int(np.all(np.abs(rgb - np.asarray(color)[:3]) < tolerance, axis=-1).sum())


def test_a_flat_map_is_drawn_in_one_mid_colour_not_left_empty(tmp_path):
    path = heatmaps.save_heatmap(str(tmp_path / "flat.png"), np.full((5, 2), 0.3))
    rgb = mpimg.imread(path)[..., :3]
    mid = matplotlib.colormaps[heatmaps.COLORMAP](0.5)
    assert _count_color(rgb, mid) > 0.2 * rgb.shape[0] * rgb.shape[1]   # the cells, not a blank axes


def test_a_runs_ratios_share_one_colour_scale_and_an_overview_shows_them_side_by_side(tmp_path):
    scores = _scores()
    light = {"token_mask": np.ones(4), "piece_mask": np.ones((4, 4))}
    heavy = {"token_mask": np.array([1, 1, 0, 1.0]), "piece_mask": np.ones((4, 4))}  # prunes the 1.0 cell
    entries = [(0.3, scores, light), (0.6, scores * 0.5, heavy)]
    low, high = heatmaps.run_scale(entries)
    assert (low, high) == (0.0, float(scores[~heatmaps.pruned_cells(**light)].max()))
    # The same score gets the same colour in both ratios' pictures (one scale), unlike per-ratio scales.
    a = heatmaps.save_heatmap(str(tmp_path / "a.png"), scores, **light, scale=(low, high), title="a")
    b = heatmaps.save_heatmap(str(tmp_path / "b.png"), scores, **light, scale=(0.0, 2.0), title="b")
    assert not np.array_equal(mpimg.imread(a), mpimg.imread(b))
    single = mpimg.imread(heatmaps.save_heatmap(str(tmp_path / "one.png"), scores))
    overview = mpimg.imread(heatmaps.save_overview(str(tmp_path / "all.png"), entries))
    assert overview.shape[1] > single.shape[1]
    assert _count_color(overview[..., :3], heatmaps.PRUNED_COLOR) > 0   # the heavy ratio's pruned token


@pytest.mark.parametrize("shape", [(5, 2), (20, 16), (100, 16)])
def test_small_and_large_prompts_get_a_legible_figure(tmp_path, shape):
    """No title clipped (wrapped to the figure), at most 40 token labels, a bounded height."""
    from xprompt_jax.xprompt.heatmaps import _figure
    figure = _figure(np.random.RandomState(0).rand(*shape), np.zeros(shape, bool),
                     "importance at ratio 50% (grey: pruned)")
    figure.canvas.draw()
    axes = figure.axes[0]
    title = axes.title.get_window_extent()
    assert title.x0 >= 0 and title.x1 <= figure.bbox.width
    assert len(axes.get_yticks()) <= 40 and figure.get_size_inches()[1] <= 13.5
