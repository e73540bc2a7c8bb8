"""Scoring a results file against a registered dataset under one or more SOR protocols.

Per image the GT masks are rasterised from the dataset JSON (no image is read) and the predicted
RLE masks decoded; metrics are computed image by image so memory stays flat on full benchmarks.
"""

import logging

from tqdm import tqdm

from ..data.annotations import check_record_size, rasterize_annotations
from .protocols import PROTOCOLS, check_protocols, score_image, summarize_protocols
from .results_file import MaskLimits, ResultsFileError, decode_masks

__all__ = ["evaluate_results", "PROTOCOLS"]

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
    check_protocols(protocols)
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
        per_image.append(score_image(preds, list(gts), protocols, threshold))
    return summarize_protocols(per_image, protocols, seqrank_metrics), missing
