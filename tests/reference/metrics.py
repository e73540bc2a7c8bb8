"""A plain per-pair transcription of docs/METRICS.md (protocol ``seqrank``).

Slow on purpose and kept as the executable specification: every IoU is a fresh pass over the
full-resolution maps, one pair at a time, with ``scipy``'s ``spearmanr`` and ``np.corrcoef``.
The tests use it as the oracle of the fast evaluator (:mod:`seqrank.evaluation.metrics`) and
``benchmarks/bench_metrics.py`` as its baseline.

Notation as in :mod:`seqrank.evaluation.metrics`: N GT maps (most salient first), M predicted
maps (attended first), each H x W.
"""

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.stats import spearmanr

from seqrank.evaluation.metrics import TOPK, quiet_numerics

__all__ = ["pair_iou", "reference_image_metrics"]


def pair_iou(pred, gt):
    """IoU of two H x W maps after the strict ``> 0.5``, with the 1e-6 of the protocol."""
    p, g = pred > 0.5, gt > 0.5
    return np.logical_and(p, g).sum() / (np.logical_or(p, g).sum() + 1e-6)


def _sa_sor(iou, rows, cols):
    n, m = iou.shape
    gt_ranks, pred_ranks = [], []
    for i, j in zip(rows, cols):
        if iou[i, j] > 0.5:
            gt_ranks.append(n - i)
            pred_ranks.append(m - j)
    for r in range(1, n + 1):
        if r not in gt_ranks:
            gt_ranks.append(r)
            pred_ranks.append(0)
    return float(np.corrcoef(gt_ranks, pred_ranks)[0, 1])


def _sor(preds, gts, thres):
    n, m = len(gts), len(preds)
    gt_ranks, pred_ranks = [], []
    for i, g in enumerate(gts):
        for j, p in enumerate(preds):
            if pair_iou(p, g) > thres:
                gt_ranks.append(n - i)
                pred_ranks.append(m - j)
                break
    if not gt_ranks:
        return float("nan")
    if len(gt_ranks) == 1:
        return 1.0
    return float((spearmanr(pred_ranks, gt_ranks)[0] + 1) / 2)


def _union_metrics(preds, gts):
    pred_union = np.max(np.stack(preds), axis=0)
    gt_union = np.max(np.stack(gts), axis=0)
    pb, gb = pred_union > 0.5, gt_union > 0.5
    tp = float(np.sum(pb & gb))
    fp = float(np.sum(pb & ~gb))
    fn = float(np.sum(~pb & gb))
    precision = tp / (tp + fp + 1e-6)
    recall = tp / (tp + fn + 1e-6)
    return {
        # in float64, as the evaluator: the mean of 0/1 values is then exact
        "mae": float(np.mean(np.abs(np.subtract(pred_union, gt_union, dtype=np.float64)))),
        "acc": float(1 - np.sum(pb ^ gb) / pb.size),
        "fbeta": float(1.3 * precision * recall / (0.3 * precision + recall + 1e-6)),
        "iou": float(tp / (np.sum(pb | gb) + 1e-6)),
    }


def reference_image_metrics(preds, gts, thres=0.5):
    """Every protocol ``seqrank`` metric of one image (N >= 1), one IoU at a time.

    Args:
        preds: M H x W maps in predicted rank order (may be empty).
        gts: N H x W maps, most salient first.
        thres: IoU threshold of the matcher (ap, ar) and of sor.
    Returns:
        dict keyed like :data:`.metrics.METRIC_NAMES` (``None`` for an uncounted top-k).
    """
    if len(preds) == 0:
        preds = [np.zeros_like(gts[0])]
    n, m = len(gts), len(preds)
    iou = np.zeros((n, m))
    for i in range(n):
        for j in range(m):
            iou[i, j] = pair_iou(preds[j], gts[i])
    rows, cols = linear_sum_assignment(1.0 - iou)
    matched = sum(1.0 for i, j in zip(rows, cols) if iou[i, j] > thres)
    out = _union_metrics(preds, gts)
    with quiet_numerics():
        out["sa_sor"] = _sa_sor(iou, rows, cols)
        out["sor"] = _sor(preds, gts, thres)
    out["ap"] = (matched + 1e-12) / (m + 1e-12)
    out["ar"] = (matched + 1e-12) / (n + 1e-12)
    for k in range(1, TOPK + 1):
        if n >= k and m >= k:
            out[f"top{k}"] = float(pair_iou(preds[k - 1], gts[k - 1]) >= 0.5)
        else:
            out[f"top{k}"] = 0.0 if n >= k else None
    return out
