"""Reading and writing SeqRank results files (``<dataset>_coco_format.pth``).

A results file is ``torch.save`` of a dict ``image_name -> record`` where a record holds
``image_name``, ``masks`` (list of COCO RLE dicts ``{"size": [H, W], "counts": bytes}``),
``bboxes``, ``scores``, ``saliency`` and ``num``; lists are in predicted rank order.
H x W below is the size of an image (every mask of a record has the image's size).
"""

import os
import pickle
import zipfile

import numpy as np
import pycocotools.mask as mask_util
import torch

from .atomic_io import atomic_write

__all__ = [
    "ResultsFileError",
    "decode_masks",
    "encode_mask",
    "load_results",
    "save_results",
]


class ResultsFileError(ValueError):
    """A results file is missing, unreadable or not structured as described above."""


def load_results(path):
    """Load a results file as ``{image_name: record}``.

    ``weights_only=True`` is safe here because a results file holds only dicts, lists, strings,
    bytes and numbers; anything else is rejected by torch's unpickler.

    Raises:
        ResultsFileError: one-line message naming ``path`` (missing file, not a torch file, or a
            wrong structure).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ResultsFileError(f"results file not found: {path}")
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, zipfile.BadZipFile, RuntimeError, EOFError, OSError) as exc:
        raise ResultsFileError(f"{path}: not a results file ({_load_error_detail(exc)})") from exc
    _check_structure(path, content)
    return content


def _load_error_detail(exc):
    """One line out of torch.load's (often multi-paragraph) error message."""
    if isinstance(exc, EOFError):
        return "empty or truncated file"
    text = str(exc)
    # torch's weights-only message buries the actual cause after this marker.
    marker = "WeightsUnpickler error:"
    if marker in text:
        text = text.split(marker, 1)[1]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def _check_structure(path, content):
    if not isinstance(content, dict):
        raise ResultsFileError(
            f"{path}: expected a dict image_name -> record, got {type(content).__name__}"
        )
    for name, record in content.items():
        if not isinstance(record, dict) or not isinstance(record.get("masks"), list):
            raise ResultsFileError(f"{path}: record '{name}' has no 'masks' list")
        for k, rle in enumerate(record["masks"]):
            if not isinstance(rle, dict) or "size" not in rle or "counts" not in rle:
                raise ResultsFileError(f"{path}: record '{name}' mask {k} is not a COCO RLE dict")


def decode_masks(record):
    """Decode the RLE masks of one record into a list of N float32 arrays H x W (values 0/1)."""
    masks = []
    for rle in record["masks"]:
        counts = rle["counts"]
        # RLEs that went through JSON carry str counts; pycocotools wants bytes.
        if isinstance(counts, str):
            rle = {"size": list(rle["size"]), "counts": counts.encode("ascii")}
        masks.append(mask_util.decode(rle).astype(np.float32))
    return masks


def encode_mask(mask):
    """Encode an H x W mask (pixels > 0.5 are foreground) as a COCO RLE dict with bytes counts."""
    binary = np.asarray(mask) > 0.5
    return mask_util.encode(np.asfortranarray(binary.astype(np.uint8)))


def save_results(path, results):
    """``torch.save`` a results dict to ``path`` atomically (no partial file on failure)."""
    atomic_write(path, lambda f: torch.save(results, f))
