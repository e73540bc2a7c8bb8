"""Colour-map and rank-map rendering of ranked instance masks.

Shapes: N = number of ranked masks (index 0 = most salient), H x W = image size.
Colours are BGR triples, as written by ``cv2.imwrite`` (see docs/ARCHITECTURE.md, "Data formats").
"""

import numpy as np

from .masks import binary_mask

__all__ = [
    "COLOR_TABLE",
    "DEMO_COLOR_TABLE",
    "DEFAULT_CANVAS_HW",
    "make_color_table",
    "render_colormap",
    "render_rank_map",
]

_FIXED_COLORS = [[61, 87, 234], [99, 192, 251], [188, 176, 100], [153, 102, 68]]
_FADING_BASE = [119, 85, 8]

# Used only when there is no mask to take the size from (as the original demo does).
DEFAULT_CANVAS_HW = (480, 640)


def make_color_table(num_fading=20, num_repeat=100):
    """Build a BGR colour table of shape (4 + num_fading + num_repeat) x 3, uint8.

    Entries: 4 fixed colours, then ``uint8([119, 85, 8] * f)`` for ``f = linspace(1, 0.2,
    num_fading)`` (the uint8 cast truncates), then ``num_repeat`` copies of the last entry.
    """
    factors = np.linspace(1.0, 0.2, num_fading)
    fading = (np.array(_FADING_BASE, dtype=np.float64)[None, :] * factors[:, None]).astype(np.uint8)
    table = np.concatenate([np.array(_FIXED_COLORS, dtype=np.uint8), fading], axis=0)
    repeat = np.repeat(table[-1:], num_repeat, axis=0)
    table = np.concatenate([table, repeat], axis=0)
    table.setflags(write=False)
    return table


# scripts/visualize2colormap: 4 + 20 + 100 = 124 entries.
COLOR_TABLE = make_color_table(20, 100)
# demo `myVisualize` and the web demo: 4 + 100 = 104 entries.
DEMO_COLOR_TABLE = make_color_table(100, 0)


def _binary_masks(masks, height, width):
    """Return the N masks as H x W bool arrays (``> 0.5``; boolean masks as they are, not copied)
    and the canvas size."""
    arrays = [np.asarray(m) for m in masks]
    if not arrays:
        if (height is None) != (width is None):
            raise ValueError("give both height and width, or neither")
        if height is None:
            height, width = DEFAULT_CANVAS_HW
        return [], int(height), int(width)
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1 or len(arrays[0].shape) != 2:
        raise ValueError(f"masks must all be 2-D with one shape, got shapes {sorted(shapes)}")
    mask_hw = arrays[0].shape
    if height is not None and width is not None and (int(height), int(width)) != mask_hw:
        raise ValueError(f"masks are {mask_hw[0]}x{mask_hw[1]} but canvas is {height}x{width}")
    return [binary_mask(a) for a in arrays], mask_hw[0], mask_hw[1]


def render_colormap(masks, height=None, width=None, table=COLOR_TABLE):
    """Paint ranked masks on a black canvas; returns an H x W x 3 uint8 BGR image.

    Args:
        masks: sequence of N arrays H x W (or an N x H x W array), index 0 = most salient.
            A pixel belongs to mask j where mask_j > 0.5.
        height, width: canvas size; required to differ from 480 x 640 only when ``masks`` is
            empty. When masks are given the canvas is their own size (the original script's fixed
            480 x 640 canvas, quirk 22, is not reproduced).
        table: K x 3 BGR colour table; mask j gets ``table[min(j, K - 1)]`` (the original raised
            IndexError beyond K).

    Masks are painted from j = N-1 down to 0, so the most salient object ends up on top.
    """
    binary, height, width = _binary_masks(masks, height, width)
    table = np.asarray(table, dtype=np.uint8)
    canvas = np.zeros((height, width, 3), dtype=np.uint8)
    for j in range(len(binary) - 1, -1, -1):
        canvas[binary[j]] = table[min(j, len(table) - 1)]
    return canvas


def render_rank_map(masks, height, width):
    """Grey rank map written by TEST.EVAL_SAVE; returns an H x W uint8 image.

    With N masks, mask i gets grey value ``v_i * 255`` truncated, ``v = linspace(1.0, 0.5, N)``:
    rank 1 = 255, rank N = 127 for N >= 2. Painted from i = N-1 down to 0 so rank 1 is on top;
    N = 0 gives an all-zero image.
    """
    binary, height, width = _binary_masks(masks, height, width)
    values = np.linspace(1.0, 0.5, len(binary))
    canvas = np.zeros((height, width), dtype=np.float64)
    for i in range(len(binary) - 1, -1, -1):
        canvas[binary[i]] = values[i]
    return (canvas * 255).astype(np.uint8)
