"""Rendering of ranked results shared by the terminal demo (demo/demo.py) and the browser demo.

A *result* is the dict returned by :class:`seqrank.predictor.SeqRankPredictor`: ``masks`` (N arrays
H x W, ``bool`` from the predictor, any {0, 1} maps accepted), ``bboxes`` (N boxes ``[x1, y1, x2,
y2]`` in pixels), ``scores`` (objectness) and ``saliency``, all in predicted rank order (index 0 =
rank 1). H x W is the image size. Boolean masks are drawn as they are, never copied
(:mod:`seqrank.utils.masks`).
"""

import math

import cv2
import numpy as np

from ..evaluation.results_file import encode_mask
from ..rank_render import rank_color_hex, rank_table_bgr, render_labelled_overlay
from .colormap import render_colormap

__all__ = [
    "encode_png",
    "overlay_label",
    "rank_color_hex",
    "ranked_objects",
    "render_overlay",
    "render_rank_colormap",
]


def overlay_label(rank, score):
    """Text drawn on an object in the overlay, as the original demo: ``"<rank> <score>%"``."""
    return f"{rank} {score * 100:.0f}%"


def render_overlay(image_rgb, result, with_labels=False):
    """Draw the ranked masks in their rank colours over the image, labelled ``"<rank> <score>%"``
    at each object's pole (:mod:`seqrank.rank_render`).

    Args:
        image_rgb: H x W x 3 uint8 RGB image.
        result: predictor result for that image.
        with_labels: also return the label boxes.

    Returns:
        H x W x 3 uint8 RGB image (and the list of :class:`~seqrank.rank_render.LabelBox`).
    """
    texts = [overlay_label(k + 1, float(s)) for k, s in enumerate(result["scores"])]
    image, boxes = render_labelled_overlay(image_rgb, result["masks"], texts)
    return (image, boxes) if with_labels else image


def render_rank_colormap(result, height, width):
    """The rank colour map (the rank palette, rank 1 on top); H x W x 3 uint8 **BGR**."""
    return render_colormap(
        result["masks"], height, width, table=rank_table_bgr(len(result["masks"]))
    )


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
