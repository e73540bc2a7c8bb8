"""Scoring a results file against a registered dataset under one or more SOR protocols.

Per image the GT masks are rasterised from the dataset JSON (no image is read) and the predicted
RLE masks decoded; metrics are computed image by image so memory stays flat on full benchmarks.
"""

import logging

from tqdm import tqdm

from ..data.mapper import check_record_size, rasterize_annotations
from ..utils.results_file import MaskLimits, ResultsFileError, decode_masks
from .metrics import aggregate, image_metrics
from .protocols import (
    PROTOCOLS,
    assr_mae,
    assr_mae_image,
    assr_sor,
    assr_sor_image,
    irsr_sa_sor,
    irsr_sa_sor_image,
)

__all__ = ["evaluate_results", "summarize_protocols", "PROTOCOLS"]

logger = logging.getLogger(__name__)


def _predicted_masks(prediction, record, limits, where):
    masks = decode_masks(prediction, limits, where)
    expected = (record["height"], record["width"])
    if masks and masks[0].shape != expected:
        raise ResultsFileError(
            f"{where}: its masks are {masks[0].shape[0]} x {masks[0].shape[1]} but the image is "
            f"{expected[0]} x {expected[1]} (height x width) in the dataset"
        )
    return masks


def _score_image(preds, gts, protocols, threshold):
    scores = {}
    if "seqrank" in protocols:
        scores["seqrank"] = image_metrics(preds, gts, threshold)
    if len(gts) == 0:
        return scores
    if "irsr" in protocols:
        scores["irsr"] = irsr_sa_sor_image(preds, gts)
    if "assr" in protocols:
        scores["assr"] = (assr_sor_image(preds, gts), assr_mae_image(preds, gts))
    return scores


def summarize_protocols(per_image, protocols, seqrank_metrics=None):
    """Dataset metrics by protocol from per-image scores.

    ``per_image``: one dict per image with ``"seqrank"`` (an :func:`image_metrics` dict, or None
    for an image without GT), and for images with GT ``"irsr"`` (SA-SOR or None) and ``"assr"``
    (``(rho or None, mae)``), for the protocols in ``protocols``. ``seqrank_metrics``: names (in
    order) of the ``seqrank`` metrics to report; ``None``: all.
    """
    out = {}
    if "seqrank" in protocols:
        out["seqrank"] = aggregate([s["seqrank"] for s in per_image], metrics=seqrank_metrics)
    with_gt = [s for s in per_image if "irsr" in s or "assr" in s]
    if "irsr" in protocols:
        values = [s["irsr"] for s in with_gt]
        out["irsr"] = {
            "sa_sor": irsr_sa_sor(values),
            "sa_sor_count": float(sum(v is not None for v in values)),
        }
    if "assr" in protocols:
        rhos = [s["assr"][0] for s in with_gt]
        maes = [s["assr"][1] for s in with_gt]
        out["assr"] = {
            "sor": assr_sor(rhos),
            "sor_count": float(sum(v is not None for v in rhos)),
            "mae": assr_mae(maes),
            "mae_count": float(len(maes)),
        }
    return out


def evaluate_results(
    results,
    dataset_dicts,
    protocols=("seqrank",),
    threshold=0.5,
    seqrank_metrics=None,
    limits=None,
    source="results",
):
    """Score ``results`` ({image_name: record}) on ``dataset_dicts``.

    ``seqrank_metrics``: names (in order) of the ``seqrank`` metrics to report; ``None``: all.
    ``limits`` (:class:`MaskLimits`) bounds both the predicted and the GT masks of an image;
    ``source`` names the results file in messages.

    Returns:
        (metrics by protocol, names of dataset images absent from ``results``). Absent images
        count as empty predictions, as in the original evaluation tool.

    Raises:
        ResultsFileError: a record's masks exceed the limits or do not have the image's size.
        DatasetError: a dataset record's GT masks would exceed the limits.
    """
    unknown = set(protocols) - set(PROTOCOLS)
    if unknown:
        raise ValueError(f"unknown protocol(s) {sorted(unknown)}; choose from {PROTOCOLS}")
    limits = limits or MaskLimits()
    missing, per_image = [], []
    for record in tqdm(dataset_dicts, desc="scoring", unit="img", leave=False):
        name = record["image_name"]
        check_record_size(record, limits.max_mask_pixels, limits.max_record_pixels)
        if name in results:
            preds = _predicted_masks(results[name], record, limits, f"{source}: record '{name}'")
        else:
            missing.append(name)
            preds = []
        _, gts = rasterize_annotations(
            record["annotations"], record["height"], record["width"], name
        )
        per_image.append(_score_image(preds, list(gts), protocols, threshold))
    return summarize_protocols(per_image, protocols, seqrank_metrics), missing
