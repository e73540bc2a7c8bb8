"""One rank palette and the labelled overlay drawn with it (terminal demo, browser demo, video,
``make demo``'s page).

Rank k (1-based) has one colour everywhere: overlay fill and label, colour map, table swatch.
Ranks 1-4 keep the original demo's colours (rank 1 = RGB (234, 87, 61)); from rank 5 on, where
the original faded into near-identical dark blues, each rank gets its own hue (golden-angle steps
with alternating brightness), so every rank shown has a distinct swatch.

Shapes: N ranked masks, H x W image. Colours are RGB unless a name says BGR.
"""

import colorsys
import functools

import cv2
import numpy as np

from .utils.masks import binary_mask, mask_uint8

__all__ = [
    "FIXED_RANK_COLORS",
    "LabelBox",
    "label_scale",
    "layout_labels",
    "rank_color",
    "rank_color_hex",
    "rank_table_bgr",
    "render_labelled_overlay",
]

FIXED_RANK_COLORS = ((234, 87, 61), (251, 192, 99), (100, 176, 188), (68, 102, 153))
_GOLDEN = 0.381966  # 1 - 1/phi: consecutive hues as far apart as possible
_ALPHA = 0.5
_FONT = cv2.FONT_HERSHEY_SIMPLEX


@functools.lru_cache(maxsize=None)
def rank_color(rank):
    """RGB colour (ints 0-255) of ``rank`` (1-based)."""
    if rank < 1:
        raise ValueError(f"ranks start at 1, got {rank}")
    if rank <= len(FIXED_RANK_COLORS):
        return FIXED_RANK_COLORS[rank - 1]
    k = rank - len(FIXED_RANK_COLORS)
    hue = (0.12 + k * _GOLDEN) % 1.0
    saturation = (0.55, 0.85, 0.7)[k % 3]
    value = (0.95, 0.7, 0.5, 0.82)[k % 4]
    return tuple(int(round(c * 255)) for c in colorsys.hsv_to_rgb(hue, saturation, value))


def rank_color_hex(rank):
    """CSS colour ``#rrggbb`` of ``rank``."""
    return "#%02x%02x%02x" % rank_color(rank)


def rank_table_bgr(count):
    """``count`` x 3 uint8 BGR table (row j = rank j + 1), for colour maps."""
    return np.array([rank_color(k)[::-1] for k in range(1, max(count, 1) + 1)], dtype=np.uint8)


class LabelBox:
    """Where one rank's label goes: ``x1, y1, x2, y2`` (pixels, x2/y2 exclusive), its text and
    its rank."""

    __slots__ = ("rank", "text", "x1", "y1", "x2", "y2")

    def __init__(self, rank, text, x1, y1, x2, y2):
        self.rank, self.text = rank, text
        self.x1, self.y1, self.x2, self.y2 = int(x1), int(y1), int(x2), int(y2)

    def overlaps(self, other):
        return not (
            self.x2 <= other.x1 or other.x2 <= self.x1 or self.y2 <= other.y1 or other.y2 <= self.y1
        )

    def as_list(self):
        return [self.x1, self.y1, self.x2, self.y2]


def label_scale(height, width):
    """``(font_scale, thickness)`` for an image of this size: about 1/22 of its shorter side per
    text line, never below a legible minimum."""
    scale = max(0.35, min(height, width) / 28 / 18)
    return scale, max(1, int(round(scale * 1.6)))


def _pole(mask):
    """``(x, y)`` of the pixel of ``mask`` farthest from its border (the distance transform's
    maximum), or ``None`` for an empty mask."""
    if not mask.any():
        return None
    padded = np.pad(mask_uint8(mask), 1)
    distance = cv2.distanceTransform(padded, cv2.DIST_L2, 5)[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(distance)), distance.shape)
    return int(x), int(y)


def _candidates(x, y, w, h, step_x, step_y):
    yield x, y
    for step in range(1, 12):
        for dx, dy in ((0, step), (0, -step), (step, 0), (-step, 0), (step, step), (-step, -step)):
            yield x + dx * step_x, y + dy * step_y


def _place(center, size, image_hw, placed, rank, text):
    """A label box near ``center`` inside the image and clear of the boxes ``placed`` so far."""
    (w, h), (height, width) = size, image_hw
    first = None
    for cx, cy in _candidates(*center, w, h, max(2, w // 2), h + 2):
        x1 = min(max(int(cx - w / 2), 0), max(width - w, 0))
        y1 = min(max(int(cy - h / 2), 0), max(height - h, 0))
        box = LabelBox(rank, text, x1, y1, x1 + w, y1 + h)
        first = first or box
        if not any(box.overlaps(other) for other in placed):
            return box
    return first


def layout_labels(masks, texts, height, width):
    """Label boxes of N ranked ``masks`` (index 0 = rank 1), one per non-empty mask.

    Each label is centred on the pole of the part of its object not covered by a higher rank
    (the whole mask when fully covered), then moved to the nearest free spot when it would cover
    a label placed before it (higher ranks are placed first).
    """
    scale, thickness = label_scale(height, width)
    binary = [binary_mask(m) for m in masks]
    covered = np.zeros((height, width), dtype=bool)
    placed = []
    for k, (mask, text) in enumerate(zip(binary, texts)):
        center = _pole(mask & ~covered) or _pole(mask)
        covered |= mask
        if center is None:
            continue
        (tw, th), base = cv2.getTextSize(text, _FONT, scale, thickness)
        pad = max(2, thickness + 1)
        size = (tw + 2 * pad, th + base + 2 * pad)
        placed.append(_place(center, size, (height, width), placed, k + 1, text))
    return placed


def _text_color(rgb):
    luminance = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]
    return (0, 0, 0) if luminance > 140 else (255, 255, 255)


def render_labelled_overlay(image_rgb, masks, texts):
    """The image with ranked masks blended in their rank colour (alpha 0.5, rank 1 on top),
    outlined, and labelled with ``texts`` in label boxes filled with the rank colour.

    Returns ``(H x W x 3 uint8 RGB image, [LabelBox, ...])``.
    """
    height, width = image_rgb.shape[:2]
    canvas = np.array(image_rgb, dtype=np.float32)
    binary = [binary_mask(m) for m in masks]
    for k in range(len(binary) - 1, -1, -1):
        canvas[binary[k]] = canvas[binary[k]] * (1 - _ALPHA) + np.array(rank_color(k + 1)) * _ALPHA
    out = np.ascontiguousarray(np.clip(canvas, 0, 255).astype(np.uint8))
    _, thickness = label_scale(height, width)
    for k in range(len(binary) - 1, -1, -1):
        contours, _ = cv2.findContours(
            mask_uint8(binary[k]), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
        )
        cv2.drawContours(out, contours, -1, rank_color(k + 1), max(1, thickness // 2))
    boxes = layout_labels(binary, texts, height, width)
    scale, thickness = label_scale(height, width)
    for box in boxes:
        color = rank_color(box.rank)
        cv2.rectangle(out, (box.x1, box.y1), (box.x2 - 1, box.y2 - 1), color, cv2.FILLED)
        (tw, th), base = cv2.getTextSize(box.text, _FONT, scale, thickness)
        origin = (box.x1 + (box.x2 - box.x1 - tw) // 2, box.y1 + (box.y2 - box.y1 + th) // 2)
        cv2.putText(out, box.text, origin, _FONT, scale, _text_color(color), thickness, cv2.LINE_AA)
    return out, boxes
