"""Robust image reading for the SOR datasets: any PIL mode becomes RGB uint8 H x W x 3."""

import os

import numpy as np
from PIL import Image, ImageOps

from ..cli import MissingFileError, SeqRankUserError

__all__ = ["IMAGE_EXTENSIONS", "ImageReadError", "pil_to_rgb", "read_image_size", "read_rgb"]

# File-name extensions taken as images (lower case; compare ``ext.lower()``) by the demos and
# the dataset converters.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")

# 16-bit (and 32-bit integer) modes are rescaled to 8 bit instead of being clipped by PIL's
# convert("RGB"), which would saturate everything above 255 to white.
_HIGH_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")

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


def read_rgb(path, apply_exif=False):
    """Read an image file as an RGB uint8 array of shape H x W x 3.

    By default the pixels are returned in their stored order, EXIF orientation ignored, exactly
    as the original dataset mappers read images (``np.array(Image.open(f).convert("RGB"))``): the
    GT polygons of the datasets are drawn in that frame. ``apply_exif=True`` rotates/mirrors the
    image as a viewer shows it, like detectron2's ``read_image`` (the demos).

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
            return _to_rgb_array(ImageOps.exif_transpose(img) if apply_exif else img)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageReadError(f"cannot read image {path}: {exc}") from exc


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
