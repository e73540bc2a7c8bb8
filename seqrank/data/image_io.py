"""Robust image reading for the SOR datasets: any PIL mode becomes RGB uint8 H x W x 3."""

import logging
import os

import numpy as np
from PIL import Image, ImageOps

from ..cli import MissingFileError, SeqRankUserError

__all__ = ["ImageReadError", "pil_to_rgb", "read_image_size", "read_rgb"]

logger = logging.getLogger(__name__)

# 16-bit (and 32-bit integer) modes are rescaled to 8 bit instead of being clipped by PIL's
# convert("RGB"), which would saturate everything above 255 to white.
_HIGH_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")

# Paths whose EXIF orientation was ignored; remembered so that the warning appears once per file
# instead of once per epoch.
_EXIF_WARNED = set()
# EXIF orientations that swap width and height (transposes and 90-degree rotations).
_SWAPPING_ORIENTATIONS = (5, 6, 7, 8)


class ImageReadError(SeqRankUserError, ValueError):
    """An image file exists but cannot be decoded (not an image, truncated, too large, ...)."""


def read_image_size(path):
    """``(stored, displayed)`` sizes (height, width) of an image, from its header only.

    ``displayed`` is the size after EXIF orientation (equal to ``stored`` without one). Nothing
    is decoded, so this is how an image's size is checked before allocating for it.

    Raises:
        MissingFileError (a FileNotFoundError): the file does not exist.
        ImageReadError (a ValueError): the header cannot be read.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise MissingFileError(f"image file not found: {path}")
    try:
        with Image.open(path) as img:
            width, height = img.size
            orientation = img.getexif().get(0x0112)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageReadError(f"cannot read image {path}: {exc}") from None
    swapped = orientation in _SWAPPING_ORIENTATIONS
    return (height, width), ((width, height) if swapped else (height, width))


def read_rgb(path, expected_hw=None):
    """Read an image file as an RGB uint8 array of shape H x W x 3.

    EXIF orientation is applied (as in the demo). When ``expected_hw`` (the record's height and
    width) is given and only the *non*-transposed size matches it, the EXIF orientation is ignored
    (with a one-time warning per file): the GT polygons were drawn in that pixel frame, and the
    original training code never applied EXIF orientation either.

    Raises:
        MissingFileError (a FileNotFoundError): the file does not exist.
        ImageReadError (a ValueError): the file exists but cannot be decoded (not an image,
            truncated, ...).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise MissingFileError(f"image file not found: {path}")
    try:
        with Image.open(path) as img:
            img.load()
            transposed = ImageOps.exif_transpose(img)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageReadError(f"cannot read image {path}: {exc}") from exc
    chosen = _choose_orientation(path, img, transposed, expected_hw)
    return _to_rgb_array(chosen)


def _choose_orientation(path, raw, transposed, expected_hw):
    if expected_hw is None or transposed.size == raw.size:
        return transposed
    expected_wh = (int(expected_hw[1]), int(expected_hw[0]))
    if transposed.size != expected_wh and raw.size == expected_wh:
        if path not in _EXIF_WARNED:
            _EXIF_WARNED.add(path)
            logger.warning(
                "%s: EXIF orientation would give %dx%d (WxH) but the annotation says %dx%d; "
                "ignoring the EXIF orientation so that the GT polygons stay aligned",
                path,
                *transposed.size,
                *expected_wh,
            )
        return raw
    return transposed


def pil_to_rgb(img):
    """A PIL image of any mode (16-bit included) as an RGB uint8 array H x W x 3."""
    return _to_rgb_array(img)


def _to_rgb_array(img):
    """PIL image of any mode -> RGB uint8 H x W x 3 (alpha is dropped, as PIL's convert does)."""
    if img.mode in _HIGH_BIT_MODES:
        values = np.asarray(img).astype(np.int64)
        gray = (np.clip(values, 0, 65535) >> 8).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2))
    if img.mode != "RGB":
        img = img.convert("RGB")
    return np.array(img, dtype=np.uint8)
