"""SOR annotations <-> masks: the one polygon rasteriser of the project.

The data mapper, the scoring of results files and the synthetic generator all draw GT polygons
with :func:`fill_polygons`, so a GT mask is the same pixels wherever it is used. Results-file
masks are COCO RLEs, decoded by :mod:`seqrank.evaluation.results_file`.

Shapes: N = salient objects of an image, H x W = its size, P = points of a polygon.
"""

import logging

import cv2
import numpy as np

from ..evaluation.results_file import MAX_MASK_PIXELS, MAX_RECORD_PIXELS
from .datasets import DatasetError

__all__ = [
    "check_record_size",
    "fill_polygons",
    "mask_to_polygons",
    "polygons_to_mask",
    "rasterize_annotations",
]

logger = logging.getLogger(__name__)


def rasterize_annotations(annotations, height, width, image_name=None):
    """Rasterise the salient annotations of one image, as the original mappers do.

    Every annotation with ``category_id > 0`` becomes one mask: all its polygons go into a single
    ``cv2.fillPoly`` call on int32 points (so overlapping parts of one instance cancel, and a
    polygon of one or two points becomes a dot or a line). Every salient annotation is kept, even
    when its mask is empty. Float coordinates are rounded to the nearest integer. Polygons the
    original cannot draw (an odd, zero or non-numeric coordinate list: it crashes on them) are
    skipped with a warning.

    Returns:
        ranks: list of N category ids sorted descending (ties keep their input order).
        masks: float32 array N x H x W with values in {0, 1} (0 x H x W without salient objects).
    """
    pairs = []
    for annotation in annotations:
        if annotation["category_id"] <= 0:
            continue
        polygons = _drawable_polygons(annotation["segmentation"], image_name)
        if not polygons:
            logger.warning(
                "%s: salient object with category_id %s has no drawable polygon; kept with an "
                "empty mask",
                image_name,
                annotation["category_id"],
            )
        mask = fill_polygons(polygons, height, width)
        pairs.append((annotation["category_id"], mask.astype(np.float32)))
    pairs.sort(key=lambda pair: pair[0], reverse=True)
    ranks = [int(rank) for rank, _ in pairs]
    if not pairs:
        return ranks, np.zeros((0, height, width), dtype=np.float32)
    return ranks, np.stack([mask for _, mask in pairs])


def check_record_size(
    record, max_pixels=MAX_MASK_PIXELS, max_record_pixels=MAX_RECORD_PIXELS, where=None
):
    """Refuse a record whose GT masks (one H x W mask per salient object) would exceed the limits
    (LIMITS.MAX_MASK_PIXELS per mask, LIMITS.MAX_RECORD_PIXELS together), before rasterising."""
    height, width = record["height"], record["width"]
    where = where or record.get("file_name") or record.get("image_name")
    if height < 1 or width < 1:
        raise DatasetError(f"{where}: height and width must be >= 1, got {height} x {width}")
    if height * width > max_pixels:
        raise DatasetError(
            f"{where}: the record's {height} x {width} image exceeds {max_pixels:,} pixels "
            "(LIMITS.MAX_MASK_PIXELS / --max-mask-pixels)"
        )
    salient = sum(1 for a in record["annotations"] if a["category_id"] > 0)
    if salient * height * width > max_record_pixels:
        raise DatasetError(
            f"{where}: {salient} salient objects of {height} x {width} exceed "
            f"{max_record_pixels:,} mask pixels (LIMITS.MAX_RECORD_PIXELS / --max-record-pixels)"
        )


def fill_polygons(points, height, width):
    """The one rasteriser: int32 ``P x 2`` point arrays -> H x W uint8 mask (0/1), all polygons
    in one ``cv2.fillPoly`` call (overlapping parts of one instance cancel)."""
    # The filled pixels do not depend on the dtype; uint8 fills about 5x faster than float.
    mask = np.zeros((height, width), dtype=np.uint8)
    if points:
        cv2.fillPoly(mask, points, 1)
    return mask


def polygons_to_mask(polygons, height, width):
    """Flat polygons ``[x1, y1, x2, y2, ...]`` -> H x W bool mask, as the data mapper draws them
    (float coordinates rounded; undrawable polygons skipped with a warning)."""
    return fill_polygons(_drawable_polygons(polygons, None), height, width).astype(bool)


def mask_to_polygons(mask):
    """Outer contours of a bool mask as flat integer lists ``[x1, y1, x2, y2, ...]``.

    Contours with fewer than 3 points (1-2 pixel slivers) cannot be drawn by cv2.fillPoly as an
    area and are dropped.
    """
    contours, _ = cv2.findContours(
        mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
    )
    return [[int(v) for v in c.reshape(-1)] for c in contours if len(c) >= 3]


def _drawable_polygons(segmentation, image_name):
    """Flat polygons [x0, y0, x1, y1, ...] -> list of int32 P x 2 point arrays (P >= 1)."""
    polygons = []
    for polygon in segmentation:
        try:
            coords = np.asarray(polygon, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            coords = np.full(1, np.nan)
        if coords.size % 2 or coords.size == 0 or not np.isfinite(coords).all():
            logger.warning(
                "%s: skipping a polygon with %d coordinates (need an even number >= 2, numeric)",
                image_name,
                coords.size,
            )
            continue
        # OpenCV only accepts integer points; round rather than truncate to stay centred.
        polygons.append(np.rint(coords).astype(np.int32).reshape(-1, 2))
    return polygons
