"""Robust image reading for the SOR datasets: any PIL mode becomes RGB uint8 H x W x 3."""

import os

import numpy as np
from PIL import Image, ImageOps

__all__ = ["read_rgb"]

# 16-bit (and 32-bit integer) modes are rescaled to 8 bit instead of being clipped by PIL's
# convert("RGB"), which would saturate everything above 255 to white.
_HIGH_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def read_rgb(path, apply_exif=False):
    """Read an image file as an RGB uint8 array of shape H x W x 3.

    By default the pixels are returned in their stored order, EXIF orientation ignored, exactly
    as the original dataset mappers read images (``np.array(Image.open(f).convert("RGB"))``): the
    GT polygons of the datasets are drawn in that frame. ``apply_exif=True`` rotates/mirrors the
    image as a viewer shows it, like detectron2's ``read_image`` (the demos).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file exists but cannot be decoded (not an image, truncated, ...).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"image file not found: {path}")
    try:
        with Image.open(path) as img:
            img.load()
            return _to_rgb_array(ImageOps.exif_transpose(img) if apply_exif else img)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ValueError(f"cannot read image {path}: {exc}") from exc


def _to_rgb_array(img):
    """PIL image of any mode -> RGB uint8 H x W x 3 (alpha is dropped, as PIL's convert does)."""
    if img.mode in _HIGH_BIT_MODES:
        values = np.asarray(img).astype(np.int64)
        gray = (np.clip(values, 0, 65535) >> 8).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2))
    if img.mode != "RGB":
        img = img.convert("RGB")
    return np.array(img, dtype=np.uint8)
