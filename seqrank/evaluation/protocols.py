"""Salient object ranking protocols other than ``seqrank`` (docs/METRICS.md).

* ``irsr``: the official SA-SOR of Liu et al. (TPAMI 2021), also used by QAGNet, PSR and DSGNN.
* ``assr``: the SOR and MAE of Siris et al. (CVPR 2020), computed on grey rank maps at 640 x 480.

They give different numbers from protocol ``seqrank`` on the same predictions; results must be
labelled with the protocol that produced them.

Inputs per image are those of :func:`seqrank.evaluation.metrics.image_metrics`: ``preds``
(M x H x W, predicted rank order, index 0 attended first) and ``gts`` (N x H x W, most salient
first). Where a protocol needs values that a results file does not carry, they are derived
from the orders: predicted rank scores ``M, M-1, ..., 1`` (first = highest score) and GT rank
values ``N, N-1, ..., 1`` (first = most salient).

Images without GT object are skipped by every protocol, as in protocol ``seqrank``.
"""

import logging
from typing import Dict, List, Optional, Sequence

import cv2
import numpy as np
from scipy.stats import rankdata

from .bitmaps import binary_flat, pack_bits, pairwise_iou, stack_maps
from .metrics import aggregate, image_metrics, quiet_numerics
from .stats import spearman

logger = logging.getLogger(__name__)

IRSR_IOU_THRESHOLD = 0.5
ASSR_SIZE = (640, 480)  # (width, height), cv2 order
ASSR_GREY = (255, 229, 204, 178, 153)  # grey value of predicted ranks 1..5
PROTOCOLS = ("seqrank", "irsr", "assr")


def _order_values(count: int, values=None) -> np.ndarray:
    """Given rank values, or ``count, count-1, ..., 1`` derived from the order."""
    if values is None:
        return np.arange(count, 0, -1, dtype=np.float64)
    return np.asarray(values, dtype=np.float64)


def _nanmean(values: List[Optional[float]]) -> float:
    used = [v for v in values if v is not None]
    return float(np.mean(used)) if used else float("nan")


# --------------------------------------------------------------------------- irsr


def irsr_match(iou: np.ndarray) -> np.ndarray:
    """Greedy IRSR matching of an N x M IoU matrix (no epsilon).

    Each GT picks its argmax-IoU prediction (ties to the LAST index) and keeps it only if the
    IoU is >= 0.5. When several GTs pick the same prediction, the highest IoU keeps it (first GT
    on equal IoU) and the others stay unmatched: there is no second choice.

    Returns:
        length-N int array: matched prediction index, -1 when unmatched.
    """
    n, m = iou.shape
    best = m - 1 - np.argmax(iou[:, ::-1], axis=1)
    best_iou = iou[np.arange(n), best]
    cand = np.nonzero(best_iou >= IRSR_IOU_THRESHOLD)[0]
    # Sort candidates by prediction, then IoU descending, then GT index; keep the first per pred.
    cand = cand[np.lexsort((cand, -best_iou[cand], best[cand]))]
    _, first = np.unique(best[cand], return_index=True)
    matched = np.full(n, -1)
    matched[cand[first]] = best[cand[first]]
    return matched


def irsr_sa_sor_image(preds, gts, gt_rank_values=None, pred_rank_scores=None) -> Optional[float]:
    """IRSR SA-SOR (Pearson) of one image, or None when the image is not counted.

    Args:
        preds: M x H x W maps in predicted rank order (binarised ``> 0.5``).
        gts: N x H x W maps, most salient first.
        gt_rank_values: N rank values (higher = more salient); default ``N, ..., 1``.
        pred_rank_scores: M ranking scores (higher = more salient); default ``M, ..., 1``, i.e.
            derived from the predicted order.
    Returns:
        None for images with fewer than two GT objects (excluded by the protocol) and for a NaN
        correlation (e.g. all GT ranks tied); 0.0 without prediction or with constant predicted
        ranks; the Pearson correlation otherwise.

    Predicted rank values are min-ranks (ties shared) of the scores of the matched predictions,
    or of all predictions when M > N; unmatched GTs get 0. GT rank values are min-ranks of
    ``gt_rank_values``.
    """
    n, m = len(gts), len(preds)
    if n < 2 or m == 0:
        return irsr_sa_sor_from_iou(np.zeros((n, m)), gt_rank_values, pred_rank_scores)
    iou = pairwise_iou(binary_flat(stack_maps(gts)), binary_flat(stack_maps(preds)), eps=0.0)
    return irsr_sa_sor_from_iou(iou, gt_rank_values, pred_rank_scores)


def irsr_sa_sor_from_iou(iou, gt_rank_values=None, pred_rank_scores=None) -> Optional[float]:
    """:func:`irsr_sa_sor_image` from the N x M IoU matrix (no epsilon) of GTs and predictions.

    Lets a caller that already has the bit-packed maps (e.g.
    :func:`seqrank.evaluation.metrics.summary_iou` with ``eps=0``) skip the full-size maps.
    """
    n, m = iou.shape
    if n < 2:
        return None
    if m == 0:
        return 0.0
    matched = irsr_match(iou)
    scores = _order_values(m, pred_rank_scores)
    ranked = np.arange(m) if m > n else np.unique(matched[matched >= 0])
    score_rank = np.zeros(m)
    score_rank[ranked] = rankdata(scores[ranked], method="min")
    pred_values = np.where(matched >= 0, score_rank[matched], 0.0)
    if np.all(pred_values == pred_values[0]):
        return 0.0
    gt_values = rankdata(_order_values(n, gt_rank_values), method="min")
    with quiet_numerics():
        r = float(np.corrcoef(gt_values, pred_values)[0, 1])
    return None if np.isnan(r) else r


def irsr_sa_sor(values: List[Optional[float]]) -> float:
    """Plain (unrounded) mean of the counted per-image IRSR SA-SOR values; NaN if none."""
    return _nanmean(values)


# --------------------------------------------------------------------------- assr


def resize_binary(maps, size=ASSR_SIZE) -> np.ndarray:
    """N x H x W maps -> N x h x w boolean maps (``> 0.5``), ``size = (w, h)``.

    Nearest-neighbour interpolation keeps the maps binary; for sizes that divide 640 x 480
    (e.g. the 1 x 20 strips of the test cases) it is an exact pixel replication.
    """
    out = np.zeros((len(maps), size[1], size[0]), dtype=bool)
    for k, mask in enumerate(maps):
        mask = np.asarray(mask)
        # A boolean mask is already thresholded: its bytes are the 0/1 map.
        small = mask.view(np.uint8) if mask.dtype == bool else (mask > 0.5).astype(np.uint8)
        out[k] = cv2.resize(small, size, interpolation=cv2.INTER_NEAREST) > 0
    return out


def assr_rank_map(masks: np.ndarray) -> np.ndarray:
    """Grey rank map (uint8 h x w) of N x h x w boolean masks in rank order (top-5 only).

    Rank k gets ``ASSR_GREY[k]``; masks are painted from rank 1 down to rank 5, so on overlap
    the lower-ranked (less salient) object overwrites the higher-ranked one.
    """
    grey = np.zeros(masks.shape[1:], dtype=np.uint8)
    for mask, value in zip(masks[: len(ASSR_GREY)], ASSR_GREY):
        grey[mask] = value
    return grey


def assr_predicted_ranks(rank_map: np.ndarray, gt_masks) -> np.ndarray:
    """Predicted grey rank of each GT object (N x h x w boolean) in a grey rank map.

    An object gets the mode (ties to the smallest value) of the non-zero grey values under it
    when more than ``int(0.5 * |G|)`` of its pixels are non-zero, else 0. The per-value pixel
    counts are popcounts of the bit-packed GT masks AND the bit-packed pixels of each grey value
    (exact integers, on the words the GT objects cover). ``gt_masks`` may also be
    ``pack_bits(gt_masks)`` (N x P64 words), so that the GT of an image is packed once for
    several predictions.
    """
    grey = np.array(sorted(ASSR_GREY))  # ascending, so argmax breaks ties to the smallest
    gt_words = gt_masks if gt_masks.dtype == np.uint64 else pack_bits(gt_masks)
    # Only the 64-pixel words that some GT object covers can count: the grey values are
    # compared and packed on those pixels alone (objects cover a small part of an image).
    keep = np.flatnonzero(np.bitwise_or.reduce(gt_words, axis=0))
    flat = rank_map.reshape(-1)
    flat = np.pad(flat, (0, (-len(flat)) % 64)) if len(flat) % 64 else flat
    pixels = np.take(flat.reshape(-1, 64), keep, axis=0).reshape(1, -1)
    value_words = pack_bits(pixels == grey[:, None])
    counts = np.bitwise_count(
        np.take(gt_words, keep, axis=1)[:, None, :] & value_words[None, :, :]
    ).sum(axis=-1, dtype=np.int64)
    area = np.bitwise_count(gt_words).sum(axis=-1, dtype=np.int64)
    covered = counts.sum(axis=1) > (0.5 * area).astype(np.int64)
    return np.where(covered, grey[counts.argmax(axis=1)], 0)


def assr_sor_image(preds, gts, gt_rank_values=None, size=ASSR_SIZE) -> Optional[float]:
    """ASSR Spearman correlation of one image, or None when the image is not used.

    Args:
        preds: M x H x W maps in predicted rank order; resized to ``size`` (nearest neighbour)
            and painted into one grey rank map (see :func:`assr_rank_map`).
        gts: N x H x W maps, most salient first, resized the same way.
        gt_rank_values: N GT rank values (higher = more salient, 0 = not salient); default
            ``N, ..., 1`` derived from the order.
    Returns:
        Spearman rho over the objects whose GT and predicted ranks are both non-zero: 1.0 when
        one object is left, None when none is left. None as well when rho is NaN (constant
        ranks): the original excludes such images, as the reference value of docs/METRICS.md,
        "Worked cases" (SOR 0.75 over 8 of the 10 test cases, T9 being constant) shows.
    """
    if len(gts) == 0:
        return None
    pred_map = assr_rank_map(resize_binary(preds[: len(ASSR_GREY)], size))
    pred_ranks = assr_predicted_ranks(pred_map, resize_binary(gts, size))
    return assr_sor_from_ranks(pred_ranks, gt_rank_values)


def assr_sor_from_ranks(pred_ranks, gt_rank_values=None) -> Optional[float]:
    """:func:`assr_sor_image` from the N predicted ranks of the GT objects (0 = not predicted).

    ``pred_ranks``: e.g. :func:`assr_predicted_ranks` (higher = more salient).
    """
    pred_ranks = np.asarray(pred_ranks)
    gt_ranks = _order_values(len(pred_ranks), gt_rank_values)
    keep = (gt_ranks != 0) & (pred_ranks != 0)
    if keep.sum() == 0:
        return None
    if keep.sum() == 1:
        return 1.0
    # spearman() takes the same steps on the same numbers as spearmanr(x, y)[0], without its
    # per-call overhead (about half the time of a rank map's whole assr score).
    rho = spearman(gt_ranks[keep], pred_ranks[keep].astype(np.float64))
    return None if np.isnan(rho) else rho


def assr_mae_image(preds, gts, size=ASSR_SIZE) -> float:
    """Mean absolute error between the predicted and GT grey rank maps (both /255) at ``size``.

    Both maps are painted by :func:`assr_rank_map` from the rank orders (top 5). The value is a
    fraction (papers report it x100).
    """
    pred_map = assr_rank_map(resize_binary(preds[: len(ASSR_GREY)], size))
    return assr_mae_from_maps(pred_map, assr_rank_map(resize_binary(gts[: len(ASSR_GREY)], size)))


def assr_mae_from_maps(pred_map: np.ndarray, gt_map: np.ndarray) -> float:
    """:func:`assr_mae_image` from the two grey maps (h x w, values 0-255, any numeric dtype)."""
    if pred_map.dtype == np.uint8 and gt_map.dtype == np.uint8:
        # Exact integer sum of |difference| divided once: the same value as the float mean.
        total = cv2.sumElems(cv2.absdiff(pred_map, gt_map))[0]
        return float(total / pred_map.size / 255.0)
    diff = np.subtract(pred_map, gt_map, dtype=np.float64)
    return float(np.mean(np.abs(diff, out=diff)) / 255.0)


def assr_saliency_ranks(saliency: np.ndarray, gt_masks: np.ndarray) -> np.ndarray:
    """Predicted ranks of the GT objects from a continuous saliency map, as ASSR scores SOD
    methods: the mean saliency inside each object, ties broken by object index.

    Args:
        saliency: h x w saliency map (any scale, 0 = not salient) at the size of ``gt_masks``.
        gt_masks: N x h x w boolean GT masks, most salient first.
    Returns:
        N values for :func:`assr_sor_from_ranks`: ``N - position`` of the object in the order
        (mean descending, then object index), and 0 for an object whose mean saliency is 0 or
        that has no pixel (nothing predicted there, as a rank-map object left unpainted).
    """
    n = len(gt_masks)
    saliency = np.asarray(saliency)
    area = np.array([np.count_nonzero(m) for m in gt_masks], dtype=np.float64)
    # Gathering the pixels of each object is the fastest exact sum (objects are small).
    sums = np.array([saliency[m].sum(dtype=np.float64) for m in gt_masks], dtype=np.float64)
    means = np.divide(sums, area, out=np.zeros(n), where=area > 0)
    order = sorted(range(n), key=lambda i: (-means[i], i))
    ranks = np.zeros(n, dtype=np.float64)
    ranks[order] = np.arange(n, 0, -1)
    return np.where(means > 0, ranks, 0.0)


def assr_sor(values: List[Optional[float]]) -> float:
    """ASSR SOR of a dataset: ``(mean rho + 1) / 2`` over the used (non-None) images."""
    return (_nanmean(values) + 1) / 2


def assr_mae(values: List[float]) -> float:
    """ASSR MAE of a dataset: plain mean of the per-image values (a fraction)."""
    return _nanmean(values)


# --------------------------------------------------------------------------- all


def check_protocols(protocols: Sequence[str]) -> None:
    """Raise ``ValueError`` naming any protocol of ``protocols`` not in :data:`PROTOCOLS`."""
    unknown = set(protocols) - set(PROTOCOLS)
    if unknown:
        raise ValueError(f"unknown protocol(s) {sorted(unknown)}; choose from {PROTOCOLS}")


def score_image(
    preds,
    gts,
    protocols: Sequence[str] = PROTOCOLS,
    threshold: float = 0.5,
    gt_rank_values=None,
    pred_rank_scores=None,
) -> dict:
    """The per-image scores of one image under ``protocols``, for :func:`summarize_protocols`.

    ``preds``: M x H x W maps in predicted rank order; ``gts``: N x H x W maps, most salient
    first; ``threshold``: the IoU threshold of protocol ``seqrank``; ``gt_rank_values`` /
    ``pred_rank_scores``: see the module docstring (derived from the orders when None).
    Returns ``{"seqrank": image_metrics(...)}`` and, for an image with GT, ``"irsr"`` (SA-SOR or
    None) and ``"assr"`` (``(rho or None, mae)``), for the protocols asked for.
    """
    scores = {}
    if "seqrank" in protocols:
        scores["seqrank"] = image_metrics(preds, gts, threshold)
    if len(gts) == 0:
        return scores
    if "irsr" in protocols:
        scores["irsr"] = irsr_sa_sor_image(preds, gts, gt_rank_values, pred_rank_scores)
    if "assr" in protocols:
        rho = assr_sor_image(preds, gts, gt_rank_values)
        scores["assr"] = (rho, assr_mae_image(preds, gts))
    return scores


def summarize_protocols(
    per_image: Sequence[dict],
    protocols: Sequence[str] = PROTOCOLS,
    seqrank_metrics: Optional[Sequence[str]] = None,
    faithful_count0: bool = False,
) -> Dict[str, Dict[str, float]]:
    """Dataset metrics by protocol from per-image scores (the one aggregator of every protocol).

    Args:
        per_image: one :func:`score_image` dict per image (``"seqrank"``: an
            :func:`image_metrics` dict or None for an image without GT; ``"irsr"`` and
            ``"assr"`` for images with GT).
        protocols: any of ``"seqrank"``, ``"irsr"``, ``"assr"``.
        seqrank_metrics: names (in order) of the ``seqrank`` metrics to report; ``None``: all.
        faithful_count0: passed to :func:`seqrank.evaluation.metrics.aggregate`.
    Returns:
        ``{"seqrank": aggregate(...), "irsr": {"sa_sor", "sa_sor_count"},
        "assr": {"sor", "sor_count", "mae", "mae_count"}}`` restricted to ``protocols``; the
        counts are the numbers of images each value averages.
    """
    check_protocols(protocols)
    with_gt = [s for s in per_image if "irsr" in s or "assr" in s]
    # aggregate() already logs the skipped images when protocol seqrank runs.
    if len(with_gt) < len(per_image) and "seqrank" not in protocols:
        logger.warning(
            "Skipped %d image(s) without salient ground truth", len(per_image) - len(with_gt)
        )
    out = {}
    if "seqrank" in protocols:
        out["seqrank"] = aggregate(
            [s["seqrank"] for s in per_image],
            metrics=seqrank_metrics,
            faithful_count0=faithful_count0,
        )
    if "irsr" in protocols:
        values = [s["irsr"] for s in with_gt]
        out["irsr"] = {"sa_sor": irsr_sa_sor(values), "sa_sor_count": _count(values)}
    if "assr" in protocols:
        rhos = [s["assr"][0] for s in with_gt]
        maes = [s["assr"][1] for s in with_gt]
        out["assr"] = {
            "sor": assr_sor(rhos),
            "sor_count": _count(rhos),
            "mae": assr_mae(maes),
            "mae_count": float(len(maes)),
        }
    return out


def _count(values: List[Optional[float]]) -> float:
    return float(sum(v is not None for v in values))
