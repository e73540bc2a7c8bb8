"""Rendering of ranked results shared by the terminal demo (demo/demo.py) and the browser demo.

A *result* is the dict returned by :class:`seqrank.predictor.SeqRankPredictor`: ``masks`` (N arrays
H x W, values 0/1), ``bboxes`` (N boxes ``[x1, y1, x2, y2]`` in pixels), ``scores`` (objectness)
and ``saliency``, all in predicted rank order (index 0 = rank 1). H x W is the image size.
"""

import math

import cv2
import numpy as np
from detectron2.utils.colormap import colormap
from detectron2.utils.visualizer import ColorMode, Visualizer

from ..evaluation.results_file import encode_mask
from .colormap import DEMO_COLOR_TABLE, render_colormap

__all__ = [
    "encode_png",
    "overlay_label",
    "rank_color_hex",
    "ranked_objects",
    "render_overlay",
    "render_rank_colormap",
]

# detectron2's instance palette: distinct, and deterministic (the original drew random colours).
_OVERLAY_PALETTE = colormap(rgb=True, maximum=1)


def overlay_label(rank, score):
    """Text drawn on an object in the overlay, as the original demo: ``"<rank> <score>%"``."""
    return f"{rank} {score * 100:.0f}%"


def render_overlay(image_rgb, result):
    """Draw the ranked masks, labelled with their rank, over the image.

    Args:
        image_rgb: H x W x 3 uint8 RGB image.
        result: predictor result for that image.

    Returns:
        H x W x 3 uint8 RGB image (detectron2 ``Visualizer``, ``ColorMode.IMAGE``, alpha 0.5).
    """
    masks = [(np.asarray(m) > 0.5).astype(np.uint8) for m in result["masks"]]
    visualizer = Visualizer(image_rgb, None, instance_mode=ColorMode.IMAGE)
    if not masks:
        return visualizer.output.get_image()
    labels = [overlay_label(k + 1, s) for k, s in enumerate(result["scores"])]
    colors = [_OVERLAY_PALETTE[k % len(_OVERLAY_PALETTE)] for k in range(len(masks))]
    drawn = visualizer.overlay_instances(masks=masks, labels=labels, assigned_colors=colors)
    return drawn.get_image()


def render_rank_colormap(result, height, width):
    """The demo colour map (104-entry table, rank 1 on top); H x W x 3 uint8 **BGR**."""
    return render_colormap(result["masks"], height, width, table=DEMO_COLOR_TABLE)


def rank_color_hex(rank):
    """CSS colour (``#rrggbb``) of ``rank`` (1-based) in the demo colour map."""
    blue, green, red = DEMO_COLOR_TABLE[min(rank - 1, len(DEMO_COLOR_TABLE) - 1)]
    return f"#{red:02x}{green:02x}{blue:02x}"


def _finite_or_none(value):
    value = float(value)
    return value if math.isfinite(value) else None


def ranked_objects(result):
    """JSON-ready list of the ranked objects of ``result``.

    Each entry: ``rank`` (1-based), ``bbox`` ``[x1, y1, x2, y2]`` (pixels, not clamped to the
    image), ``objectness``, ``saliency``, ``mask`` (COCO RLE with ``counts`` as str) and ``color``
    (the rank's colour in the colour map). Non-finite numbers become ``None``.
    """
    objects = []
    for k, mask in enumerate(result["masks"]):
        rle = encode_mask(mask)
        objects.append(
            {
                "rank": k + 1,
                "bbox": [_finite_or_none(v) for v in result["bboxes"][k]],
                "objectness": _finite_or_none(result["scores"][k]),
                "saliency": _finite_or_none(result["saliency"][k]),
                "mask": {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode()},
                "color": rank_color_hex(k + 1),
            }
        )
    return objects


def encode_png(image_bgr):
    """PNG bytes of an H x W x 3 (BGR) or H x W uint8 image."""
    ok, buffer = cv2.imencode(".png", np.ascontiguousarray(image_bgr))
    if not ok:
        raise ValueError(f"PNG encoding failed for an image of shape {np.shape(image_bgr)}")
    return buffer.tobytes()
