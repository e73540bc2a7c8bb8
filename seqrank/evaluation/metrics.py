"""Salient object ranking metrics, protocol ``seqrank`` (the evaluator of the original SeqRank).

This protocol produced every number of the SeqRank paper and model zoo, so it is reproduced
exactly, quirks included (see ``shared/spec/METRICS.md`` sections 1-3). Two defects of the
original are fixed, and only these two:

* an image without salient ground truth made the original crash; :func:`image_metrics` returns
  ``None`` for it and :func:`aggregate` skips it (and logs how many were skipped);
* a metric counted on no image was reported as 1.0 (an artefact of the ``1e-12`` terms);
  :func:`aggregate` reports it as NaN unless ``faithful_count0=True`` asks for the original 1.0.

Notation: N = number of ground-truth objects (index 0 = most salient), M = number of predicted
objects (index 0 = attended first), H x W = image size, P = H * W.
"""

import contextlib
import logging
import math
import warnings
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import cv2
import numpy as np
from scipy.optimize import linear_sum_assignment

logger = logging.getLogger(__name__)

THRESHOLD = 0.5
IOU_EPS = 1e-6
AGG_EPS = 1e-12
F_BETA2 = 0.3
TOPK = 5
METRIC_NAMES = ("mae", "acc", "fbeta", "iou", "sa_sor", "sor", "ap", "ar") + tuple(
    f"top{k}" for k in range(1, TOPK + 1)
)
# Bound on the temporary N x M x P64 words of one intersection block (16 MiB).
_PAIR_WORDS = 2**21


@contextlib.contextmanager
def quiet_numerics():
    """Silence the warnings numpy/scipy emit for the NaN cases the protocol defines."""
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.simplefilter("ignore")
        yield


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
    return (maps > THRESHOLD).reshape(len(maps), -1)


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


def _nonzero_count(maps: np.ndarray) -> Optional[int]:
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
            count = _nonzero_count(m)
            nonzero = None if count is None else nonzero + count
    words = pack_rows(bits)
    areas = _popcount(words.reshape(len(words), -1))
    if nonzero == int(areas.sum()):
        return MapSummary(words, bits.shape[2], None, areas)
    union = np.array(maps[0], dtype=np.result_type(*maps))
    for k, m in enumerate(maps):
        np.greater(m, THRESHOLD, out=bits[k])
        np.maximum(union, m, out=union)
    words = pack_rows(bits)
    return MapSummary(words, bits.shape[2], union, _popcount(words.reshape(len(words), -1)))


def pack_bits(bits: np.ndarray) -> np.ndarray:
    """K x ... boolean maps -> K x P64 uint64 words holding 64 pixels each (zero padded)."""
    packed = np.packbits(bits.reshape(len(bits), math.prod(bits.shape[1:])), axis=1)
    pad = (-packed.shape[1]) % 8
    if pad:
        packed = np.pad(packed, ((0, 0), (0, pad)))
    return packed.view(np.uint64)


def _popcount(words: np.ndarray) -> np.ndarray:
    """Number of set bits along the last axis (exact integers)."""
    counts = np.bitwise_count(words)
    if words.shape[-1] * 64 < 2**32:
        # Accumulating the uint8 counts in uint32 is ~15 % faster than in int64, and exact here.
        return counts.sum(axis=-1, dtype=np.uint32).astype(np.int64)
    return counts.sum(axis=-1, dtype=np.int64)


def _intersections(
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
        out[start : start + rows] = _popcount(block)
    return out


def _iou_from_counts(inter, gt_area, pred_area, eps):
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
    inter = _intersections(gt_words, pred_words)
    return _iou_from_counts(inter, _popcount(gt_words), _popcount(pred_words), eps)


def sa_sor(iou: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> float:
    """Raw Pearson SA-SOR of one image from the Hungarian pairs (``rows`` GT, ``cols`` pred).

    Pairs with IoU > 0.5 (hard-coded, independent of ``thres``) give (N - i, M - j); every GT rank
    1..N left without a pair is appended with predicted rank 0. NaN when N == 1 or when all
    predicted ranks are equal.
    """
    n, m = iou.shape
    keep = iou[rows, cols] > 0.5
    gt_ranks = (n - rows[keep]).tolist()
    present = set(gt_ranks)
    missing = [r for r in range(1, n + 1) if r not in present]
    gt_all = np.array(gt_ranks + missing, dtype=np.float64)
    pred_all = np.array((m - cols[keep]).tolist() + [0] * len(missing), dtype=np.float64)
    if n == 1:
        return float("nan")
    return _pearson(gt_all, pred_all, 0, 1)


def _pearson(x: np.ndarray, y: np.ndarray, i: int, j: int) -> float:
    """Element (i, j) of ``np.corrcoef(x, y)`` for >= 2 samples, NaN for a constant input.

    The same numpy operations on the same arrays as ``np.corrcoef`` (mean, centring, ``dot``
    with the conjugate transpose, scaling, the two divisions by the standard deviations, the
    clip), so the result is bit-identical; only the argument checks and wrappers of ``np.cov``
    are skipped, which on a handful of ranks cost more than the maths. With two or more samples
    only floating-point errors can warn, which ``errstate`` silences much more cheaply than
    :func:`quiet_numerics`.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        data = np.array((x, y), dtype=np.float64)
        data -= data.mean(axis=1)[:, None]
        cov = np.dot(data, data.T.conj())
        cov *= np.true_divide(1, data.shape[1] - 1)
        std = np.sqrt(np.diag(cov))
        value = float(cov[i, j] / std[i] / std[j])
    return value if math.isnan(value) else min(1.0, max(-1.0, value))


def average_ranks(x) -> np.ndarray:
    """1-based ranks of ``x`` with ties sharing their mean rank (``rankdata`` "average").

    Plain Python: the samples here are a handful of ranks, where numpy's call overhead dominates.
    """
    values = np.asarray(x).tolist()
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        for i in order[start : end + 1]:
            ranks[i] = (start + end + 2) / 2.0
        start = end + 1
    return np.array(ranks, dtype=np.float64)


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """``scipy.stats.spearmanr(x, y)[0]`` for two 1-D samples, without its per-call overhead.

    The ranks are exact half-integers, so the Pearson correlation below takes the same steps on
    the same numbers as scipy (``np.corrcoef`` of the ranks, element [1, 0]); NaN for a constant
    input.
    """
    rx, ry = average_ranks(x), average_ranks(y)
    if (rx == rx[0]).all() or (ry == ry[0]).all():
        return float("nan")
    return _pearson(rx, ry, 1, 0)


def sor(iou: np.ndarray, thres: float = THRESHOLD) -> float:
    """SOR of one image: each GT takes the FIRST prediction with IoU > ``thres`` (not one-to-one).

    Returns ``(spearman + 1) / 2`` with >= 2 pairs, 1.0 with one pair, NaN with none.
    """
    n, m = iou.shape
    hit = iou > thres
    has = hit.any(axis=1)
    gt_ranks = n - np.nonzero(has)[0]
    pred_ranks = m - hit.argmax(axis=1)[has]
    if len(gt_ranks) == 0:
        return float("nan")
    if len(gt_ranks) == 1:
        return 1.0
    return (spearman(pred_ranks, gt_ranks) + 1) / 2


def _raw_union(maps: MapSummary) -> np.ndarray:
    if maps.union is not None:
        return maps.union
    return unpack_rows(np.bitwise_or.reduce(maps.words, axis=0), maps.width)


def union_metrics(preds, gts) -> Dict[str, float]:
    """Rank-blind mae, acc, fbeta and iou of the union maps.

    ``preds`` and ``gts`` are :class:`MapSummary` objects or raw M x H x W / N x H x W maps.
    """
    preds = preds if isinstance(preds, MapSummary) else summarize_maps(preds)
    gts = gts if isinstance(gts, MapSummary) else summarize_maps(gts)
    return _union_metrics(preds, gts, _union_words(preds), _union_words(gts))


def _union_words(maps: MapSummary) -> np.ndarray:
    """The OR of the K packed maps: L words."""
    return np.bitwise_or.reduce(maps.flat_words(), axis=0)


def _union_metrics(
    preds: MapSummary, gts: MapSummary, pb: np.ndarray, gb: np.ndarray
) -> Dict[str, float]:
    """Union metrics from the maps and their :func:`_union_words` ``pb`` / ``gb``."""
    inter = int(_popcount(pb & gb))
    fp = int(_popcount(pb)) - inter
    fn = int(_popcount(gb)) - inter
    tp = float(inter)
    precision = tp / (tp + fp + IOU_EPS)
    recall = tp / (tp + fn + IOU_EPS)
    fbeta = (1 + F_BETA2) * precision * recall / (F_BETA2 * precision + recall + IOU_EPS)
    xor = fp + fn
    size = math.prod(gts.shape)
    if preds.union is None and gts.union is None:
        mae = xor / size
    else:
        diff = np.subtract(_raw_union(preds), _raw_union(gts), dtype=np.float64)
        mae = np.mean(np.abs(diff, out=diff))
    return {
        "mae": float(mae),
        "acc": float(1 - xor / size),
        "fbeta": float(fbeta),
        "iou": float(tp / (inter + fp + fn + IOU_EPS)),
    }


def topk_metrics(iou: np.ndarray) -> Dict[str, Optional[float]]:
    """top1..top5: does the k-th prediction overlap the k-th GT with IoU >= 0.5?

    1.0/0.0 when N >= k and M >= k, 0.0 when only N >= k, None (not counted) when N < k.
    """
    n, m = iou.shape
    out = {}
    for k in range(1, TOPK + 1):
        if n >= k and m >= k:
            out[f"top{k}"] = float(iou[k - 1, k - 1] >= 0.5)
        else:
            out[f"top{k}"] = 0.0 if n >= k else None
    return out


def image_metrics(preds, gts, thres: float = THRESHOLD) -> Optional[Dict[str, Optional[float]]]:
    """Every ``seqrank`` metric of one image.

    Args:
        preds: M x H x W maps (sequence or array) in predicted rank order. Empty means no
            prediction and is replaced by one all-zero map (so M = 1), as in the original.
        gts: N x H x W {0, 1} maps, most salient first (only the order matters).
        thres: IoU threshold of the matcher (ap, ar) and of sor; sa_sor and top-k use a
            hard-coded 0.5, as the original does.
    Returns:
        dict with the keys of :data:`METRIC_NAMES` in that order: floats, ``float('nan')`` for
        an undefined value (counted as 0 by :func:`aggregate`), ``None`` for a top-k that is not
        counted. ``None`` instead of a dict when the image has no GT object (the original
        crashed on such images; the caller skips them).
    """
    if len(gts) == 0:
        return None
    gts = summarize_maps(gts)
    return summary_metrics(summarize_maps(preds, gts.shape), gts, thres)


def summary_metrics(
    preds: MapSummary, gts: MapSummary, thres: float = THRESHOLD
) -> Dict[str, Optional[float]]:
    """:func:`image_metrics` from :func:`summarize_maps` outputs (N >= 1 GT maps).

    Lets a caller that already packed the predictions (e.g. to RLE-encode them) reuse them.
    """
    if len(preds.words) == 0:
        empty = np.zeros((1,) + gts.words.shape[1:], dtype=np.uint64)
        preds = MapSummary(empty, preds.width, preds.union, np.zeros(1, dtype=np.int64))
    pb, gb = _union_words(preds), _union_words(gts)
    iou = _summary_iou(preds, gts, IOU_EPS, pb & gb)
    rows, cols = linear_sum_assignment(1.0 - iou)
    matched = float(np.sum(iou[rows, cols] > thres))
    result = _union_metrics(preds, gts, pb, gb)
    result["sa_sor"] = sa_sor(iou, rows, cols)
    result["sor"] = sor(iou, thres)
    result["ap"] = (matched + AGG_EPS) / (len(preds.words) + AGG_EPS)
    result["ar"] = (matched + AGG_EPS) / (len(gts.words) + AGG_EPS)
    result.update(topk_metrics(iou))
    return result


def summary_iou(preds: MapSummary, gts: MapSummary, eps: float = IOU_EPS) -> np.ndarray:
    """N x M IoU of every GT/prediction pair of two :func:`summarize_maps` outputs.

    Same values as :func:`pairwise_iou` on the thresholded maps (exact integer counts), without
    unpacking them; ``eps=0`` gives the IoU of protocol ``irsr``.
    """
    if len(preds.words) == 0 or len(gts.words) == 0:
        return np.zeros((len(gts.words), len(preds.words)), dtype=np.float64)
    support = _union_words(preds) & _union_words(gts)
    return _summary_iou(preds, gts, eps, support)


def _summary_iou(preds, gts, eps, support):
    inter = _intersections(gts.flat_words(), preds.flat_words(), support=support)
    return _iou_from_counts(inter, gts.areas, preds.areas, eps)


def select_metrics(names: Optional[Sequence[str]]) -> Tuple[str, ...]:
    """The metrics of ``TEST.METRICS_OF_INTEREST`` that are reported, in the listed order.

    As the original's ``Metrics.registerMetrics``: names this protocol does not define are
    dropped and logged; a repeated name is reported once. ``None`` selects :data:`METRIC_NAMES`.
    """
    if names is None:
        return METRIC_NAMES
    chosen = tuple(dict.fromkeys(n for n in names if n in METRIC_NAMES))
    unknown = [n for n in names if n not in METRIC_NAMES]
    if unknown:
        logger.warning(
            "TEST.METRICS_OF_INTEREST: ignoring unknown metric(s) %s (known: %s)",
            ", ".join(map(str, unknown)),
            ", ".join(METRIC_NAMES),
        )
    return chosen


def aggregate(
    per_image: List[Optional[Dict[str, Optional[float]]]],
    metrics: Optional[Sequence[str]] = None,
    faithful_count0: bool = False,
) -> Dict[str, float]:
    """Dataset-level metrics from the outputs of :func:`image_metrics`.

    For each metric, ``None`` values are skipped, NaN values are counted and add 0, and
    ``value = round((sum + 1e-12) / (count + 1e-12), 4)``; ``<metric>_count`` (float) follows
    each metric, in the order of ``metrics`` (default :data:`METRIC_NAMES`).

    ``None`` entries of ``per_image`` (images without salient GT) are skipped and logged.
    A metric with count 0 is reported as NaN: the original's formula gives 1.0 there, which
    looks like a perfect score. ``faithful_count0=True`` restores that 1.0, for comparison with
    the original's outputs.
    """
    names = tuple(metrics) if metrics is not None else METRIC_NAMES
    images = [r for r in per_image if r is not None]
    if len(images) < len(per_image):
        logger.warning(
            "Skipped %d image(s) without salient ground truth", len(per_image) - len(images)
        )
    out = {}
    for name in names:
        values = [r[name] for r in images if r.get(name) is not None]
        total = sum(0.0 if math.isnan(v) else float(v) for v in values)
        if values or faithful_count0:
            out[name] = round((total + AGG_EPS) / (len(values) + AGG_EPS), 4)
        else:
            out[name] = float("nan")
        out[f"{name}_count"] = float(len(values))
    return out
