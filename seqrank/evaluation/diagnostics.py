"""Ranking diagnostics: where in the sequence a SeqRank model goes wrong.

The SOR metrics summarise a whole ranking in one number; these diagnostics split it by step:

* **top-k by step**: the k-th pick is the k-th GT object (IoU >= 0.5), over images with >= k GT
  objects (the metrics' top-k, extended beyond 5);
* **conditional accuracy**: the same, but only over images whose first k - 1 picks were right,
  so an early mistake is not counted again at every later step;
* **teacher-forced accuracy** (:func:`teacher_forced`): the ranking module is given the true
  prefix (the queries that segment GT objects 1..k-1) and must pick the query of object k, the
  question the sequence loss trains it on;
* **confusion** between the predicted step and the GT rank of the object picked there;
* **stop step**: how many objects are returned against how many there are (too early / exact /
  too late);
* **saliency by step**: the mean saliency of the k-th pick.

Letters: N = GT objects of an image, K = predicted objects, Q = queries, H x W = image size,
S = network input size.
"""

from collections import Counter

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment

from ..modeling.meta_arch import STOP_THRESHOLD
from ..utils.masks import binary_mask
from .bitmaps import pairwise_iou

__all__ = [
    "MATCH_IOU",
    "STOP_THRESHOLD",
    "aggregate_diagnostics",
    "analyze_image",
    "teacher_forced",
]

# A pick "is" a GT object when their masks overlap with IoU >= 0.5, as in the metrics' top-k.
MATCH_IOU = 0.5


def _flat_bool(masks, shape):
    if len(masks) == 0:
        return np.zeros((0, shape[0] * shape[1]), dtype=bool)
    return np.stack([binary_mask(m) for m in masks]).reshape(len(masks), -1)


def analyze_image(pred_masks, gt_masks, saliency=()):
    """Per-image record for :func:`aggregate_diagnostics`.

    Args:
        pred_masks: K x H x W maps in predicted order; gt_masks: N x H x W {0, 1} maps, most
            salient first; saliency: K saliency values of the picks.
    Returns:
        ``{"n_gt": N, "n_pred": K, "match": [GT index (0-based) of each pick, or -1],
        "saliency": [K floats]}``. A pick matches the GT object it overlaps most, if that IoU is
        >= :data:`MATCH_IOU`.
    """
    shape = np.asarray(gt_masks[0] if len(gt_masks) else pred_masks[0]).shape
    gts, preds = _flat_bool(gt_masks, shape), _flat_bool(pred_masks, shape)
    match = []
    if len(gts) and len(preds):
        iou = pairwise_iou(gts, preds, eps=0.0)
        best = iou.argmax(axis=0)
        match = [int(g) if iou[g, k] >= MATCH_IOU else -1 for k, g in enumerate(best)]
    else:
        match = [-1] * len(preds)
    return {
        "n_gt": int(len(gts)),
        "n_pred": int(len(preds)),
        "match": match,
        "saliency": [float(s) for s in saliency],
    }


def _rate(hits, total):
    return {"value": (hits / total) if total else None, "count": int(total)}


def _by_step(records, max_k):
    topk, conditional, saliency = {}, {}, {}
    for k in range(1, max_k + 1):
        eligible = [r for r in records if r["n_gt"] >= k]
        hits = sum(len(r["match"]) >= k and r["match"][k - 1] == k - 1 for r in eligible)
        topk[k] = _rate(hits, len(eligible))
        prefix_ok = [r for r in eligible if r["match"][: k - 1] == list(range(k - 1))]
        hits = sum(len(r["match"]) >= k and r["match"][k - 1] == k - 1 for r in prefix_ok)
        conditional[k] = _rate(hits, len(prefix_ok))
        values = [r["saliency"][k - 1] for r in records if len(r["saliency"]) >= k]
        saliency[k] = {"value": float(np.mean(values)) if values else None, "count": len(values)}
    return topk, conditional, saliency


def _confusion(records, max_k):
    """``max_k x (max_k + 1)`` counts: row = predicted step, column = GT rank of the object
    picked there (last column: no GT object, i.e. a false positive or a repeat)."""
    table = np.zeros((max_k, max_k + 1), dtype=np.int64)
    for record in records:
        for step, gt in enumerate(record["match"][:max_k]):
            column = gt if 0 <= gt < max_k else max_k
            table[step, column] += 1
    return table


def _stops(records):
    diffs = Counter(r["n_pred"] - r["n_gt"] for r in records)
    return {
        "early": sum(c for d, c in diffs.items() if d < 0),
        "exact": diffs.get(0, 0),
        "late": sum(c for d, c in diffs.items() if d > 0),
        "histogram": {int(d): int(c) for d, c in sorted(diffs.items())},
    }


def aggregate_diagnostics(records, max_k=6, teacher=None):
    """Dataset-level diagnostics from :func:`analyze_image` records (images without GT objects
    are skipped) and, optionally, :func:`teacher_forced` records.

    Returns a JSON-ready dict: ``topk_by_step``, ``conditional_by_step``, ``saliency_by_step``
    (``{k: {"value", "count"}}``), ``confusion`` (list of rows, see :func:`_confusion`),
    ``stop`` and, with ``teacher``, ``teacher_forced_by_step`` and ``teacher_forced_stop``.
    """
    records = [r for r in records if r["n_gt"] > 0]
    topk, conditional, saliency = _by_step(records, max_k)
    out = {
        "images": len(records),
        "max_k": max_k,
        "topk_by_step": topk,
        "conditional_by_step": conditional,
        "saliency_by_step": saliency,
        "confusion": _confusion(records, max_k).tolist(),
        "stop": _stops(records),
    }
    if teacher is not None:
        out.update(_aggregate_teacher(teacher, max_k))
    return out


def _aggregate_teacher(teacher, max_k):
    by_step = {}
    for k in range(1, max_k + 1):
        steps = [t["correct"][k - 1] for t in teacher if len(t["correct"]) >= k]
        by_step[k] = _rate(sum(steps), len(steps))
    stops = [t["stops"] for t in teacher if t["stops"] is not None]
    return {
        "teacher_forced_by_step": by_step,
        "teacher_forced_stop": _rate(sum(stops), len(stops)),
    }


def _query_matches(mask_logits, gt_masks):
    """GT index -> query index (or -1) by Hungarian matching on mask IoU >= MATCH_IOU.

    ``mask_logits``: Q x h x w; ``gt_masks``: N x S x S.
    """
    size = tuple(gt_masks.shape[-2:])
    pred = F.interpolate(mask_logits[None].float(), size=size, mode="bilinear")[0] > 0
    gts = gt_masks.reshape(len(gt_masks), -1).cpu().numpy() > 0.5
    iou = pairwise_iou(gts, pred.reshape(len(pred), -1).cpu().numpy(), eps=0.0)
    rows, cols = linear_sum_assignment(-iou)
    queries = np.full(len(gts), -1, dtype=np.int64)
    for g, q in zip(rows, cols):
        if iou[g, q] >= MATCH_IOU:
            queries[g] = q
    return queries


def _input_size_masks(masks, size):
    """N x H x W GT masks -> N x S x S (nearest), as the training mapper resizes them."""
    masks = torch.as_tensor(np.asarray(masks), dtype=torch.float32)
    if len(masks) == 0 or tuple(masks.shape[-2:]) == (size, size):
        return masks
    return F.interpolate(masks[None], size=(size, size), mode="nearest")[0]


@torch.no_grad()
def teacher_forced(model, batched_inputs, encoded):
    """Teacher-forced ranking steps of a batch.

    Each GT object is identified with the query whose mask segments it (Hungarian matching on
    IoU >= 0.5). At step k the ranking module gets the queries of GT objects 1..k-1 as already
    ranked (``q_vis`` = their ranks, as in the sequence loss) and must pick the query of object
    k. Steps stop at the first GT object without a query. After the last GT object the model
    should stop (saliency or objectness of its pick below the stop threshold).

    Args:
        model: a SeqRank model in eval mode; batched_inputs: its test inputs (``masks`` N x H x W);
        encoded: ``model.encode(batched_inputs)`` (q, qpe, z, zpe, out, ...).
    Returns:
        per image ``{"correct": [bool per step], "stops": bool or None}`` (``None`` when not
        every GT object has a query).
    """
    q, qpe, z, zpe, out = encoded[:5]
    size = int(batched_inputs[0]["image"].shape[-1])
    obj_probs = out["scores"].float().sigmoid()[..., 0]
    records = []
    for b, inputs in enumerate(batched_inputs):
        gt = _input_size_masks(inputs["masks"], size).to(out["masks"].device)
        queries = _query_matches(out["masks"][b], gt) if len(gt) else np.zeros(0, np.int64)
        known = len(queries) if (queries >= 0).all() else int(np.argmin(queries >= 0))
        q_vis = torch.zeros_like(out["scores"][b : b + 1], dtype=torch.float32)
        correct, stops = [], None
        for step in range(known + 1):
            logits = model.gaze_shift(
                q[b : b + 1], z[b : b + 1], qpe[b : b + 1], zpe[b : b + 1], q_vis
            )
            logits = logits[0, :, 0].float()
            if getattr(model, "exclude_ranked", False):
                logits = logits.masked_fill(q_vis[0, :, 0] > 0.5, float("-inf"))
            pick = int(logits.argmax())
            if step == known:
                if known == len(queries):
                    sal, obj = float(logits[pick].sigmoid()), float(obj_probs[b, pick])
                    stops = sal < STOP_THRESHOLD or obj < STOP_THRESHOLD
                break
            correct.append(pick == int(queries[step]))
            q_vis[0, queries[step], 0] = float(step + 1)
        records.append({"correct": correct, "stops": stops})
    return records
