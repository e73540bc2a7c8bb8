"""Bit-packed summaries of binary masks and the exact pixel counts computed on them.

Masks are thresholded (strict ``> 0.5``), packed 64 pixels per uint64 word, and counted with
popcounts: areas, intersections, unions and IoUs are exact integers, so every value equals the
per-pair formula on the unpacked maps bit for bit.

Notation: K maps of H x W pixels, P = H * W, P64 = ceil(P / 64), L = words per map, N GT maps,
M predicted maps.
"""

import math
from typing import NamedTuple, Optional, Tuple

import cv2
import numpy as np

__all__ = [
    "IOU_EPS",
    "MAP_THRESHOLD",
    "MapSummary",
    "binary_flat",
    "intersections",
    "iou_from_counts",
    "nonzero_count",
    "pack_bits",
    "pack_rows",
    "pairwise_iou",
    "popcount",
    "stack_maps",
    "summarize_maps",
    "summary_iou",
    "union_words",
    "unpack_rows",
]

# A map pixel is "on" when strictly above this value (protocol ``seqrank``).
MAP_THRESHOLD = 0.5
# Added to the unions of protocol ``seqrank``'s IoUs.
IOU_EPS = 1e-6
# Bound on the temporary N x M x P64 words of one intersection block (16 MiB).
_PAIR_WORDS = 2**21


def stack_maps(maps, shape: Optional[Tuple[int, int]] = None) -> np.ndarray:
    """Stack a sequence of H x W maps (or an N x H x W array) into a float64 N x H x W array.

    An empty input becomes a 0 x H x W array when ``shape`` is given.
    """
    if len(maps) == 0:
        if shape is None:
            raise ValueError("cannot infer the map size of an empty sequence")
        return np.zeros((0,) + tuple(shape), dtype=np.float64)
    return np.stack([np.asarray(m, dtype=np.float64) for m in maps])


def binary_flat(maps: np.ndarray) -> np.ndarray:
    """N x H x W maps -> N x P boolean maps (strict ``> 0.5``)."""
    return (maps > MAP_THRESHOLD).reshape(len(maps), -1)


class MapSummary(NamedTuple):
    """What the metrics need from K maps of one image, thresholded and bit-packed.

    ``words``: K x H x R uint64, row ``h`` of map ``k`` packed 64 pixels per word (pixel ``c`` is
    bit ``c % 8`` from the top of byte ``c // 8``, as ``np.packbits``), zero-padded to
    R = ceil(W / 64) words. ``width``: W. ``union``: H x W pixel-wise max of the raw maps, or
    ``None`` when every map is binary ({0, 1}): the union is then the OR of the bits and the MAE a
    bit count. ``areas``: K pixel counts of the thresholded maps.
    """

    words: np.ndarray
    width: int
    union: Optional[np.ndarray]
    areas: np.ndarray

    @property
    def shape(self) -> Tuple[int, int]:
        return self.words.shape[1], self.width

    def flat_words(self) -> np.ndarray:
        """K x (H * R) view; the zero padding adds nothing to counts or intersections."""
        k, h, r = self.words.shape
        return self.words.reshape(k, h * r)


def pack_rows(bits: np.ndarray) -> np.ndarray:
    """K x H x W bool -> K x H x ceil(W / 64) uint64 (layout of :class:`MapSummary`)."""
    k, h, w = bits.shape
    if w % 64 == 0:
        # Rows then need no padding, and packing whole maps is about twice as fast as by rows.
        return pack_bits(bits).reshape(k, h, w // 64)
    packed = np.packbits(bits, axis=-1)
    pad = (-packed.shape[-1]) % 8
    if pad:
        packed = np.pad(packed, ((0, 0), (0, 0), (0, pad)))
    return packed.view(np.uint64)


def unpack_rows(words: np.ndarray, width: int) -> np.ndarray:
    """Inverse of :func:`pack_rows` (any leading dims): ... x R uint64 -> ... x W bool."""
    return np.unpackbits(words.view(np.uint8), axis=-1, count=width).view(bool)


def nonzero_count(maps: np.ndarray) -> Optional[int]:
    """Nonzero values of ``maps`` (None for a dtype the binary test does not cover).

    Values are counted by their bit patterns, on an integer view: much faster than a float
    comparison, and a -0.0 counts as nonzero, which only sends it to the general path. 4-byte
    values (the float32 maps of the model and the mapper) are counted by OpenCV's vectorised
    ``countNonZero``, 2-3x faster than ``np.count_nonzero`` on the same view.
    """
    if maps.dtype == bool:
        return int(np.count_nonzero(maps))
    if maps.dtype.kind not in "fiu":
        return None
    if maps.dtype.itemsize == 4 and maps.ndim >= 2 and maps.size:
        return int(cv2.countNonZero(maps.view(np.int32).reshape(-1, maps.shape[-1])))
    return int(np.count_nonzero(maps.view(f"u{maps.dtype.itemsize}")))


def summarize_maps(maps, shape: Optional[Tuple[int, int]] = None) -> MapSummary:
    """Threshold and bit-pack K maps (sequence of H x W maps or K x H x W array).

    Binary maps (the model's, the rasterised GT, RLE-decoded results) are read about once:
    ``== 1`` gives the thresholded maps, and as many nonzero values as ones proves them binary.
    Other maps get the strict ``> 0.5`` and a max in their own dtype (exact: a max does not
    round). Nothing is copied to float64. An empty input needs ``shape`` (H, W).
    """
    if isinstance(maps, np.ndarray) and maps.ndim == 3:
        shape = shape if len(maps) or shape is not None else maps.shape[1:]
    else:
        maps = [np.asarray(m) for m in maps]
    if len(maps) == 0:
        if shape is None:
            raise ValueError("cannot infer the map size of an empty sequence")
        h, w = shape
        words = np.zeros((0, h, -(-w // 64)), dtype=np.uint64)
        return MapSummary(words, w, None, np.zeros(0, dtype=np.int64))
    bits = np.empty((len(maps),) + maps[0].shape, dtype=bool)
    # A K x H x W array is read in one call per pass, a list map by map.
    pairs = [(bits, maps)] if isinstance(maps, np.ndarray) else zip(bits, maps)
    nonzero = 0
    for out, m in pairs:
        np.equal(m, 1, out=out)
        if nonzero is not None:
            count = nonzero_count(m)
            nonzero = None if count is None else nonzero + count
    words = pack_rows(bits)
    areas = popcount(words.reshape(len(words), -1))
    if nonzero == int(areas.sum()):
        return MapSummary(words, bits.shape[2], None, areas)
    union = np.array(maps[0], dtype=np.result_type(*maps))
    for k, m in enumerate(maps):
        np.greater(m, MAP_THRESHOLD, out=bits[k])
        np.maximum(union, m, out=union)
    words = pack_rows(bits)
    return MapSummary(words, bits.shape[2], union, popcount(words.reshape(len(words), -1)))


def pack_bits(bits: np.ndarray) -> np.ndarray:
    """K x ... boolean maps -> K x P64 uint64 words holding 64 pixels each (zero padded)."""
    packed = np.packbits(bits.reshape(len(bits), math.prod(bits.shape[1:])), axis=1)
    pad = (-packed.shape[1]) % 8
    if pad:
        packed = np.pad(packed, ((0, 0), (0, pad)))
    return packed.view(np.uint64)


def popcount(words: np.ndarray) -> np.ndarray:
    """Number of set bits along the last axis (exact integers)."""
    counts = np.bitwise_count(words)
    if words.shape[-1] * 64 < 2**32:
        # Accumulating the uint8 counts in uint32 is ~15 % faster than in int64, and exact here.
        return counts.sum(axis=-1, dtype=np.uint32).astype(np.int64)
    return counts.sum(axis=-1, dtype=np.int64)


def intersections(
    gt_words: np.ndarray, pred_words: np.ndarray, support: Optional[np.ndarray] = None
) -> np.ndarray:
    """N x M pixel counts of ``g AND p`` from N x L and M x L packed maps, a few GT rows at a
    time.

    ``support``: optional L words outside of which no pair intersects (the AND of the GT union
    and the prediction union). Objects cover a small part of an image, so when most of its words
    are zero only the others are gathered and counted.
    """
    if support is not None:
        keep = np.flatnonzero(support != 0)
        if 2 * len(keep) < len(support):
            gt_words = np.take(gt_words, keep, axis=1)
            pred_words = np.take(pred_words, keep, axis=1)
    n, m = len(gt_words), len(pred_words)
    out = np.zeros((n, m), dtype=np.int64)
    rows = max(1, _PAIR_WORDS // max(1, m * gt_words.shape[1]))
    for start in range(0, n, rows):
        block = gt_words[start : start + rows, None, :] & pred_words[None, :, :]
        out[start : start + rows] = popcount(block)
    return out


def iou_from_counts(inter, gt_area, pred_area, eps):
    inter = inter.astype(np.float64)
    union = gt_area[:, None] + pred_area[None, :] - inter
    if eps:
        return inter / (union + eps)
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def pairwise_iou(gt_bin: np.ndarray, pred_bin: np.ndarray, eps: float = IOU_EPS) -> np.ndarray:
    """IoU of every GT/prediction pair from bit-packed maps (AND + popcount).

    Args:
        gt_bin: N x P boolean maps.
        pred_bin: M x P boolean maps.
        eps: added to the union (1e-6 in protocol ``seqrank``). With ``eps=0`` an empty union
            gives IoU 0.
    Returns:
        N x M float64 array ``|g AND p| / (|g OR p| + eps)``, bit-identical to the per-pair
        formula because intersections and unions are exact integers.
    """
    gt_words, pred_words = pack_bits(gt_bin), pack_bits(pred_bin)
    inter = intersections(gt_words, pred_words)
    return iou_from_counts(inter, popcount(gt_words), popcount(pred_words), eps)


def union_words(maps: MapSummary) -> np.ndarray:
    """The OR of the K packed maps: L words."""
    return np.bitwise_or.reduce(maps.flat_words(), axis=0)


def summary_iou(
    preds: MapSummary, gts: MapSummary, eps: float = IOU_EPS, support: Optional[np.ndarray] = None
) -> np.ndarray:
    """N x M IoU of every GT/prediction pair of two :func:`summarize_maps` outputs.

    Same values as :func:`pairwise_iou` on the thresholded maps (exact integer counts), without
    unpacking them; ``eps=0`` gives the IoU of protocol ``irsr``. ``support``: the AND of the
    two :func:`union_words`, when the caller has it already.
    """
    if len(preds.words) == 0 or len(gts.words) == 0:
        return np.zeros((len(gts.words), len(preds.words)), dtype=np.float64)
    if support is None:
        support = union_words(preds) & union_words(gts)
    inter = intersections(gts.flat_words(), preds.flat_words(), support=support)
    return iou_from_counts(inter, gts.areas, preds.areas, eps)
