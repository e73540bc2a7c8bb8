"""Salient object ranking metrics, protocol ``seqrank`` (the evaluator of the original SeqRank).

This protocol produced every number of the SeqRank paper and model zoo, so it is reproduced
exactly, quirks included (see docs/METRICS.md). Two defects of the
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
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from scipy.optimize import linear_sum_assignment

from .bitmaps import (
    IOU_EPS,
    MapSummary,
    popcount,
    summarize_maps,
    summary_iou,
    union_words,
    unpack_rows,
)
from .stats import pearson, spearman

logger = logging.getLogger(__name__)

# IoU threshold of the matcher (ap, ar) and of sor.
THRESHOLD = 0.5
AGG_EPS = 1e-12
F_BETA2 = 0.3
TOPK = 5
METRIC_NAMES = ("mae", "acc", "fbeta", "iou", "sa_sor", "sor", "ap", "ar") + tuple(
    f"top{k}" for k in range(1, TOPK + 1)
)


@contextlib.contextmanager
def quiet_numerics():
    """Silence the warnings numpy/scipy emit for the NaN cases the protocol defines."""
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.simplefilter("ignore")
        yield


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
    return pearson(gt_all, pred_all, 0, 1)


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


def _union_metrics(
    preds: MapSummary, gts: MapSummary, pb: np.ndarray, gb: np.ndarray
) -> Dict[str, float]:
    """Union metrics from the maps and their :func:`union_words` ``pb`` / ``gb``."""
    inter = int(popcount(pb & gb))
    fp = int(popcount(pb)) - inter
    fn = int(popcount(gb)) - inter
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
    pb, gb = union_words(preds), union_words(gts)
    iou = summary_iou(preds, gts, IOU_EPS, pb & gb)
    rows, cols = linear_sum_assignment(1.0 - iou)
    matched = float(np.sum(iou[rows, cols] > thres))
    result = _union_metrics(preds, gts, pb, gb)
    result["sa_sor"] = sa_sor(iou, rows, cols)
    result["sor"] = sor(iou, thres)
    result["ap"] = (matched + AGG_EPS) / (len(preds.words) + AGG_EPS)
    result["ar"] = (matched + AGG_EPS) / (len(gts.words) + AGG_EPS)
    result.update(topk_metrics(iou))
    return result


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
