import numpy as np
import pytest

from seqrank.utils.colormap import (
    COLOR_TABLE,
    DEMO_COLOR_TABLE,
    make_color_table,
    render_colormap,
    render_rank_map,
)


def _box_mask(h, w, y0, y1, x0, x1, value=1.0):
    mask = np.zeros((h, w), dtype=np.float32)
    mask[y0:y1, x0:x1] = value
    return mask


def test_color_table_values():
    assert COLOR_TABLE.shape == (124, 3) and COLOR_TABLE.dtype == np.uint8
    assert COLOR_TABLE[:4].tolist() == [
        [61, 87, 234],
        [99, 192, 251],
        [188, 176, 100],
        [153, 102, 68],
    ]
    # uint8 truncation of [119, 85, 8] * f, f = linspace(1, 0.2, 20).
    assert COLOR_TABLE[4].tolist() == [119, 85, 8]
    assert COLOR_TABLE[5].tolist() == [113, 81, 7]
    assert COLOR_TABLE[23].tolist() == [23, 17, 1]
    assert (COLOR_TABLE[23:] == COLOR_TABLE[23]).all()
    fading = COLOR_TABLE[4:24].astype(int)
    assert (np.diff(fading, axis=0) <= 0).all()


def test_demo_table_has_100_fading_entries():
    assert DEMO_COLOR_TABLE.shape == (104, 3)
    assert DEMO_COLOR_TABLE[4].tolist() == [119, 85, 8]
    assert DEMO_COLOR_TABLE[-1].tolist() == [23, 17, 1]
    assert make_color_table(3, 0).shape == (7, 3)


def test_rank_one_is_drawn_on_top():
    h, w = 150, 230
    first = _box_mask(h, w, 10, 60, 10, 60)
    second = _box_mask(h, w, 40, 100, 40, 100)
    canvas = render_colormap([first, second])
    assert canvas.shape == (h, w, 3) and canvas.dtype == np.uint8
    assert canvas[50, 50].tolist() == [61, 87, 234]  # overlap: rank 1 wins
    assert canvas[90, 90].tolist() == [99, 192, 251]
    assert canvas[140, 220].tolist() == [0, 0, 0]


def test_threshold_is_strictly_above_half():
    mask = _box_mask(20, 30, 0, 10, 0, 10, value=0.5)
    mask[0, 0] = 0.51
    canvas = render_colormap([mask])
    assert canvas[0, 0].tolist() == [61, 87, 234]
    assert canvas[5, 5].tolist() == [0, 0, 0]


def test_canvas_follows_mask_size_and_long_lists_clamp():
    masks = [_box_mask(37, 53, i % 37, i % 37 + 1, 0, 53) for i in range(130)]
    canvas = render_colormap(masks)
    assert canvas.shape == (37, 53, 3)
    # More masks than table entries reuse the last colour instead of failing.
    assert render_colormap(masks[:1] * 130)[0, 0].tolist() == [61, 87, 234]


def test_empty_and_invalid_inputs():
    assert render_colormap([]).shape == (480, 640, 3)
    empty = render_colormap([], 12, 7)
    assert empty.shape == (12, 7, 3) and not empty.any()
    with pytest.raises(ValueError):
        render_colormap([np.zeros((4, 4)), np.zeros((5, 4))])
    with pytest.raises(ValueError):
        render_colormap([np.zeros((4, 4))], 5, 5)
    with pytest.raises(ValueError):
        render_colormap([], 5)


def test_rank_map_values():
    h, w = 40, 50
    masks = [_box_mask(h, w, 0, 20, 0, 20), _box_mask(h, w, 10, 30, 10, 30)]
    rank_map = render_rank_map(masks, h, w)
    assert rank_map.dtype == np.uint8 and rank_map.shape == (h, w)
    assert rank_map[15, 15] == 255 and rank_map[25, 25] == 127 and rank_map[35, 45] == 0
    three = render_rank_map(masks + [_box_mask(h, w, 35, 40, 0, 50)], h, w)
    assert three[37, 10] == 127 and three[25, 25] == 191  # 0.75 * 255 = 191.25
    assert render_rank_map(masks[:1], h, w).max() == 255
    assert not render_rank_map([], h, w).any() and render_rank_map([], h, w).shape == (h, w)
