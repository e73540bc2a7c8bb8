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
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.stats import spearmanr

logger = logging.getLogger(__name__)

THRESHOLD = 0.5
IOU_EPS = 1e-6
AGG_EPS = 1e-12
F_BETA2 = 0.3
TOPK = 5
METRIC_NAMES = ("mae", "acc", "fbeta", "iou", "sa_sor", "sor", "ap", "ar") + tuple(
    f"top{k}" for k in range(1, TOPK + 1)
)
# float32 sums of 0/1 products are exact while every partial sum stays below 2**24.
_FLOAT32_EXACT = 2**24


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


def pairwise_iou(gt_bin: np.ndarray, pred_bin: np.ndarray, eps: float = IOU_EPS) -> np.ndarray:
    """IoU of every GT/prediction pair with one matrix product.

    Args:
        gt_bin: N x P boolean maps.
        pred_bin: M x P boolean maps.
        eps: added to the union (1e-6 in protocol ``seqrank``). With ``eps=0`` an empty union
            gives IoU 0.
    Returns:
        N x M float64 array ``|g AND p| / (|g OR p| + eps)``, bit-identical to the per-pair
        formula because intersections and unions are exact integers.
    """
    dtype = np.float32 if gt_bin.shape[1] < _FLOAT32_EXACT else np.float64
    inter = (gt_bin.astype(dtype) @ pred_bin.astype(dtype).T).astype(np.float64)
    union = gt_bin.sum(1)[:, None] + pred_bin.sum(1)[None, :] - inter
    if eps:
        return inter / (union + eps)
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def sa_sor(iou: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> float:
    """Raw Pearson SA-SOR of one image from the Hungarian pairs (``rows`` GT, ``cols`` pred).

    Pairs with IoU > 0.5 (hard-coded, independent of ``thres``) give (N - i, M - j); every GT rank
    1..N left without a pair is appended with predicted rank 0. NaN when N == 1 or when all
    predicted ranks are equal.
    """
    n, m = iou.shape
    keep = iou[rows, cols] > 0.5
    gt_ranks = n - rows[keep]
    missing = np.setdiff1d(np.arange(1, n + 1), gt_ranks)
    gt_all = np.concatenate([gt_ranks, missing]).astype(np.float64)
    pred_all = np.concatenate([m - cols[keep], np.zeros(len(missing))]).astype(np.float64)
    with quiet_numerics():
        return float(np.corrcoef(gt_all, pred_all)[0, 1])


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
    with quiet_numerics():
        return float((spearmanr(pred_ranks, gt_ranks)[0] + 1) / 2)


def union_metrics(preds: np.ndarray, gts: np.ndarray) -> Dict[str, float]:
    """Rank-blind mae, acc, fbeta and iou of the union maps (M x H x W preds, N x H x W gts)."""
    pred_union = preds.max(axis=0)
    gt_union = gts.max(axis=0)
    pb = pred_union > THRESHOLD
    gb = gt_union > THRESHOLD
    tp = float(np.sum(pb & gb))
    fp = float(np.sum(pb & ~gb))
    fn = float(np.sum(~pb & gb))
    precision = tp / (tp + fp + IOU_EPS)
    recall = tp / (tp + fn + IOU_EPS)
    fbeta = (1 + F_BETA2) * precision * recall / (F_BETA2 * precision + recall + IOU_EPS)
    return {
        "mae": float(np.mean(np.abs(pred_union - gt_union))),
        "acc": float(1 - np.sum(pb ^ gb) / pb.size),
        "fbeta": float(fbeta),
        "iou": float(tp / (np.sum(pb | gb) + IOU_EPS)),
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
    gts = stack_maps(gts)
    preds = stack_maps(preds, gts.shape[1:])
    if len(preds) == 0:
        preds = np.zeros((1,) + gts.shape[1:], dtype=np.float64)
    iou = pairwise_iou(binary_flat(gts), binary_flat(preds))
    rows, cols = linear_sum_assignment(1.0 - iou)
    matched = float(np.sum(iou[rows, cols] > thres))
    result = union_metrics(preds, gts)
    result["sa_sor"] = sa_sor(iou, rows, cols)
    result["sor"] = sor(iou, thres)
    result["ap"] = (matched + AGG_EPS) / (len(preds) + AGG_EPS)
    result["ar"] = (matched + AGG_EPS) / (len(gts) + AGG_EPS)
    result.update(topk_metrics(iou))
    return result


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
