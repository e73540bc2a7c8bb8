"""SeqRank results files (``<dataset>_coco_format.pth``): the format, its encoder and decoder.

A results file is ``torch.save`` of a dict ``image_name -> record`` where a record holds
``image_name``, ``masks`` (list of COCO RLE dicts ``{"size": [H, W], "counts": bytes}``),
``bboxes``, ``scores``, ``saliency`` and ``num``; lists are in predicted rank order.
H x W below is the size of an image (every mask of a record has the image's size).

Results files come from users, so nothing in them is decoded before it is checked: the pickle is
scanned (:mod:`seqrank.utils.safe_pickle`), each RLE's size must be at most ``max_mask_pixels``
and a record's masks at most ``max_record_pixels`` together, and each RLE string must describe
exactly H x W pixels (pycocotools writes runs without bounds checks, so a forged string would
write past its buffer).
"""

import numbers
import os
import pickle
import zipfile
from dataclasses import dataclass

import numpy as np
import pycocotools.mask as mask_util
import torch

from ..cli import SeqRankUserError, positive_int
from ..utils.atomic_io import atomic_torch_save
from ..utils.masks import mask_uint8
from ..utils.safe_pickle import (
    load_error_line,
    preflight_torch_file,
    refused_global,
)
from .bitmaps import pack_rows, unpack_rows

__all__ = [
    "MAX_MASK_PIXELS",
    "MAX_RECORD_PIXELS",
    "MaskLimits",
    "ResultsFileError",
    "check_rle",
    "decode_masks",
    "encode_mask",
    "encode_rle",
    "load_results",
    "make_record",
    "record_size",
    "rle_from_words",
    "save_results",
]

# Defaults of LIMITS.MAX_MASK_PIXELS / LIMITS.MAX_RECORD_PIXELS (and the tools' options): a
# 100 Mpx mask is 100 MB decoded (400 MB as float32); a record's masks together at most 4 such.
MAX_MASK_PIXELS = 100_000_000
MAX_RECORD_PIXELS = 400_000_000
# Characters per number that the check decodes (60 bits); a valid count needs at most 7.
_MAX_RUN_CHARS = 12
_MASK32 = (1 << 32) - 1


class ResultsFileError(SeqRankUserError, ValueError):
    """A results file is missing, unreadable or not structured as described above."""


@dataclass(frozen=True)
class MaskLimits:
    """Largest mask (H x W pixels) and largest total of one record's masks accepted."""

    max_mask_pixels: int = MAX_MASK_PIXELS
    max_record_pixels: int = MAX_RECORD_PIXELS

    @classmethod
    def from_cfg(cls, cfg):
        return cls(int(cfg.LIMITS.MAX_MASK_PIXELS), int(cfg.LIMITS.MAX_RECORD_PIXELS))

    @classmethod
    def from_args(cls, args):
        """The limits given by :func:`add_mask_limit_arguments`' options."""
        return cls(args.max_mask_pixels, args.max_record_pixels)


def add_mask_limit_arguments(parser, record_what="masks"):
    """Add ``--max-mask-pixels`` and ``--max-record-pixels`` (read with ``MaskLimits.from_args``).

    ``record_what`` names what one image's total counts in the help text.
    """
    parser.add_argument(
        "--max-mask-pixels",
        type=positive_int,
        default=MAX_MASK_PIXELS,
        metavar="N",
        help=f"refuse masks larger than N pixels (H x W; default {MAX_MASK_PIXELS:,})",
    )
    parser.add_argument(
        "--max-record-pixels",
        type=positive_int,
        default=MAX_RECORD_PIXELS,
        metavar="N",
        help=f"refuse images whose {record_what} add up to more than N pixels "
        f"(default {MAX_RECORD_PIXELS:,})",
    )


def load_results(path, limits=None):
    """Load a results file as ``{image_name: record}``, every record and RLE checked.

    Raises:
        ResultsFileError: one-line message naming ``path`` (missing file, not a torch file, a
            wrong structure, an invalid or over-size RLE, or a pickle that would allocate more
            than the file warrants).
    """
    path = os.fspath(path)
    limits = limits or MaskLimits()
    if not os.path.isfile(path):
        raise ResultsFileError(f"results file not found: {path}")
    preflight_torch_file(path, ResultsFileError, "not a results file ({problem})")
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, zipfile.BadZipFile, RuntimeError, EOFError, OSError) as exc:
        raise ResultsFileError(f"{path}: not a results file ({_load_error_detail(exc)})") from None
    _check_structure(path, content, limits)
    return content


def _load_error_detail(exc):
    refused = refused_global(str(exc)) if isinstance(exc, pickle.UnpicklingError) else None
    if refused:
        return (
            f"it holds {refused}, but a results file holds only dicts, lists, strings, bytes "
            "and numbers; refusing to unpickle it"
        )
    return load_error_line(exc)


def _check_structure(path, content, limits):
    if not isinstance(content, dict):
        raise ResultsFileError(
            f"{path}: expected a dict image_name -> record, got {type(content).__name__}"
        )
    if _looks_like_checkpoint(content):
        raise ResultsFileError(
            f"{path}: this is a model checkpoint (it has a 'model' state_dict), not a results "
            "file; evaluate checkpoints with `python train_net.py --eval-only ... MODEL.WEIGHTS`"
        )
    for name, record in content.items():
        if not isinstance(record, dict) or not isinstance(record.get("masks"), list):
            raise ResultsFileError(f"{path}: record '{name}' has no 'masks' list")
        record_size(record, limits, f"{path}: record '{name}'")


def _looks_like_checkpoint(content):
    state = content.get("model")
    return isinstance(state, dict) and any(isinstance(v, torch.Tensor) for v in state.values())


def record_size(record, limits=None, where="record"):
    """``(H, W)`` shared by the masks of ``record`` (None without masks), every RLE checked.

    Raises:
        ResultsFileError: a mask is not a valid RLE, the masks disagree in size, or they exceed
            ``limits`` (one mask, or all of them together).
    """
    checked = _checked_rles(record, limits or MaskLimits(), where)
    return checked[0][:2] if checked else None


def _checked_rles(record, limits, where):
    """``[(H, W, counts bytes)]`` of the record's masks, after every check of record_size."""
    checked, total = [], 0
    for k, rle in enumerate(record["masks"]):
        checked.append(check_rle(rle, f"{where} mask {k}", limits.max_mask_pixels))
        total += checked[-1][0] * checked[-1][1]
        if total > limits.max_record_pixels:
            raise ResultsFileError(
                f"{where}: its {len(record['masks'])} masks exceed {limits.max_record_pixels:,} "
                "pixels together (LIMITS.MAX_RECORD_PIXELS / --max-record-pixels)"
            )
    sizes = sorted({(h, w) for h, w, _ in checked})
    if len(sizes) > 1:
        shown = ", ".join(f"{h} x {w}" for h, w in sizes)
        raise ResultsFileError(f"{where}: its masks differ in size ({shown})")
    return checked


def check_rle(rle, where, max_pixels=MAX_MASK_PIXELS):
    """Check one compressed COCO RLE; returns ``(H, W, counts as bytes)``.

    Raises:
        ResultsFileError naming ``where``: not a ``{"size", "counts"}`` dict, a size that is not
            two positive integers or exceeds ``max_pixels``, or counts that are not a compressed
            RLE string describing exactly H x W pixels.
    """
    if not isinstance(rle, dict) or "size" not in rle or "counts" not in rle:
        raise ResultsFileError(f"{where} is not a COCO RLE dict with 'size' and 'counts'")
    size = rle["size"]
    if (
        not isinstance(size, (list, tuple))
        or len(size) != 2
        or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in size)
        or min(size) < 1
    ):
        raise ResultsFileError(f"{where}: 'size' must be [height, width] > 0, got {size!r:.60}")
    height, width = int(size[0]), int(size[1])
    if height * width > max_pixels:
        raise ResultsFileError(
            f"{where}: a {height} x {width} mask exceeds {max_pixels:,} pixels "
            "(LIMITS.MAX_MASK_PIXELS / --max-mask-pixels)"
        )
    counts = rle["counts"]
    if isinstance(counts, str):
        try:
            counts = counts.encode("ascii")
        except UnicodeEncodeError:
            raise ResultsFileError(f"{where}: 'counts' holds non-ASCII characters") from None
    if not isinstance(counts, bytes):
        raise ResultsFileError(
            f"{where}: 'counts' must be a compressed RLE string (bytes or str), "
            f"got {type(counts).__name__}"
        )
    problem = _counts_problem(counts, height * width)
    if problem:
        raise ResultsFileError(
            f"{where}: invalid RLE counts for a {height} x {width} mask ({problem})"
        )
    return height, width, counts


def _counts_problem(data, total):
    """Why the compressed RLE string ``data`` does not describe ``total`` pixels, or None.

    Mirrors pycocotools' ``rleFrString``: 6 bits per character ('0' + value), 5 of them data and
    one continuation bit, a sign bit in the last character of each number, and from the fourth
    number on each count is stored as the difference to the count two before it.
    """
    if not data:
        return "empty"
    codes = np.frombuffer(data, dtype=np.uint8).astype(np.int64) - 48
    if codes.min() < 0 or codes.max() > 63:
        return "characters outside '0'..'o'"
    more = (codes & 0x20) != 0
    if more[-1]:
        return "it ends inside a number"
    ends = np.flatnonzero(~more)
    starts = np.concatenate(([0], ends[:-1] + 1))
    lengths = ends - starts + 1
    if lengths.max() > _MAX_RUN_CHARS:
        return "a run length is too long"
    shift = 5 * (np.arange(codes.size) - np.repeat(starts, lengths))
    values = np.add.reduceat((codes & 0x1F) << shift, starts)
    negative = (codes[ends] & 0x10) != 0
    values = np.where(negative, values - (np.int64(1) << (5 * lengths)), values) & _MASK32
    counts = values.copy()
    counts[1::2] = np.cumsum(values[1::2]) & _MASK32
    counts[2::2] = np.cumsum(values[2::2]) & _MASK32
    covered = int(counts.sum())
    if covered != total:
        return f"its runs cover {covered:,} pixels, not {total:,}"
    return None


def decode_masks(record, limits=None, where="record"):
    """Decode the RLE masks of one record into a list of N float32 arrays H x W (values 0/1).

    Every RLE is checked first (see :func:`record_size`), so a forged one raises
    :class:`ResultsFileError` instead of reaching pycocotools.
    """
    masks = []
    for height, width, counts in _checked_rles(record, limits or MaskLimits(), where):
        decoded = mask_util.decode({"size": [height, width], "counts": counts})
        masks.append(decoded.astype(np.float32))
    return masks


def encode_mask(mask):
    """Encode an H x W mask (pixels > 0.5 are foreground) as a COCO RLE dict with bytes counts."""
    return mask_util.encode(np.asfortranarray(mask_uint8(mask)))


def save_results(path, results):
    """``torch.save`` a results dict to ``path`` atomically (no partial file on failure)."""
    atomic_torch_save(path, results)


# --------------------------------------------------------------------------- encoding


def encode_rle(bits):
    """COCO RLEs of K x H x W boolean masks, identical to ``pycocotools.mask.encode``."""
    bits = np.asarray(bits, dtype=bool)
    return rle_from_words(pack_rows(bits), bits.shape[2])


def rle_from_words(words, width):
    """COCO RLEs of K masks bit-packed by rows (K x H x R uint64, see ``MapSummary``).

    RLE runs go down the columns. Their boundaries are found on the packed rows (64 pixels per
    XOR), so no column-major copy of the masks is made; pycocotools then compresses the counts.
    """
    k, h, r = words.shape
    if k == 0:
        return []
    size = h * width
    # Boundaries between vertical neighbours inside a column ...
    diff = (words[:, 1:, :] ^ words[:, :-1, :]).reshape(-1)
    # nonzero on bool arrays is far faster than on integer ones.
    nz = np.flatnonzero(diff != 0)
    hit = np.flatnonzero(np.unpackbits(diff[nz].view(np.uint8)).view(bool))
    word, bit = np.divmod(hit, 64)
    kk, rem = np.divmod(nz[word], max(1, (h - 1) * r))
    hh, jj = np.divmod(rem, r)
    # ... between the bottom of a column and the top of the next one, and at pixel 0 when it is
    # set (the counts always start with a run of zeros).
    edges = unpack_rows(words[:, [0, h - 1], :], width)
    k_col, c_col = np.nonzero(edges[:, 1, :-1] != edges[:, 0, 1:])
    k_first = np.flatnonzero(edges[:, 0, 0])
    # One sort key per boundary: mask index, then pixel position. Each mask is framed by a 0 and
    # an H*W sentinel. Every boundary lies strictly inside (0, H*W) except one at pixel 0, which
    # ties with the leading 0 and so yields the empty first run it should.
    stride = size + 1
    masks = np.arange(k) * stride
    keys = np.concatenate(
        [
            masks,
            kk * stride + (jj * 64 + bit) * h + hh + 1,
            k_col * stride + (c_col + 1) * h,
            k_first * stride,
            masks + size,
        ]
    )
    keys.sort()
    # Within a mask, key steps are run lengths; the steps across masks are never read.
    counts = (keys[1:] - keys[:-1]).astype(np.uint32)
    ends = np.searchsorted(keys, masks + size)
    starts = np.concatenate([[0], ends[:-1] + 1])
    objs = [{"size": [h, width], "counts": counts[i:j]} for i, j in zip(starts, ends)]
    return mask_util.frPyObjects(objs, h, width)


def make_record(output, maps=None):
    """Results-file record of one prediction dict (the format above).

    ``maps``: the :class:`~seqrank.evaluation.bitmaps.MapSummary` of ``output["masks"]`` when
    already computed.
    """
    if maps is None:
        masks = [np.asarray(m) > 0.5 for m in output.get("masks", [])]
        rles = encode_rle(np.stack(masks)) if masks else []
    else:
        rles = rle_from_words(maps.words, maps.width)
    return {
        "image_name": output.get("image_name", ""),
        "masks": rles,
        "bboxes": [list(map(float, b)) for b in output.get("bboxes", [])],
        "scores": [float(s) for s in output.get("scores", [])],
        "saliency": [float(s) for s in output.get("saliency", [])],
        "num": int(output.get("num", len(rles))),
    }
