"""SOREvaluator: SeqRank's salient-object-ranking evaluation as a detectron2 DatasetEvaluator.

Per image it scores the predicted masks (rank order) against the GT masks at original resolution
and keeps a results-file record (RLE masks, boxes, scores); ``evaluate`` gathers both to rank 0,
writes ``<dataset>_coco_format.pth`` and ``<dataset>_metrics.json`` and logs a table.
"""

import copy
import json
import logging
import math
import os
from collections import OrderedDict

import numpy as np
import pycocotools.mask as mask_util
from detectron2.evaluation import DatasetEvaluator
from detectron2.utils import comm
from tabulate import tabulate

from ..utils.results_file import save_results
from .metrics import aggregate, image_metrics

__all__ = ["SOREvaluator", "make_record", "metrics_table", "write_json_atomic"]

logger = logging.getLogger(__name__)


def _as_masks(masks):
    return [np.asarray(m) for m in masks]


def make_record(output):
    """Results-file record of one prediction dict (format of DATA_FORMATS.md)."""
    masks = _as_masks(output.get("masks", []))
    rles = [mask_util.encode(np.asfortranarray((m > 0.5).astype(np.uint8))) for m in masks]
    return {
        "image_name": output.get("image_name", ""),
        "masks": rles,
        "bboxes": [list(map(float, b)) for b in output.get("bboxes", [])],
        "scores": [float(s) for s in output.get("scores", [])],
        "saliency": [float(s) for s in output.get("saliency", [])],
        "num": int(output.get("num", len(rles))),
    }


def metrics_table(metrics, title="SOR metrics"):
    """A readable table: one row per metric with its value and image count."""
    rows = []
    for key, value in metrics.items():
        if key.endswith("_count"):
            continue
        shown = (
            "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else value
        )
        rows.append([key, shown, int(metrics.get(key + "_count", 0))])
    return f"{title}:\n" + tabulate(rows, headers=["metric", "value", "images"], floatfmt=".4f")


def _json_safe(obj):
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, float) and math.isnan(obj):
        return None
    return obj


def write_json_atomic(path, obj):
    """Write JSON via a temporary file and rename, so a crash never leaves a truncated file.

    NaN values are written as ``null`` (strict JSON)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(_json_safe(obj), f, indent=1)
    os.replace(tmp, path)


class SOREvaluator(DatasetEvaluator):
    """Evaluates SeqRank predictions under the ``seqrank`` protocol (METRICS.md §1-3)."""

    def __init__(self, dataset_name, output_dir=None, threshold=0.5, distributed=True):
        self.dataset_name = dataset_name
        self.output_dir = output_dir
        self.threshold = threshold
        self.distributed = distributed
        self.reset()

    @classmethod
    def from_cfg(cls, cfg, dataset_name, output_dir=None):
        return cls(dataset_name, output_dir or cfg.OUTPUT_DIR, threshold=cfg.TEST.THRESHOLD)

    def reset(self):
        self._records = []
        self._per_image = []
        self._skipped = []

    def process(self, inputs, outputs):
        for inp, out in zip(inputs, outputs):
            record = make_record(out)
            name = inp.get("image_name", record["image_name"])
            record["image_name"] = name
            self._records.append(record)
            gts = _as_masks(
                inp["masks"].cpu().numpy() if hasattr(inp["masks"], "cpu") else inp["masks"]
            )
            per_image = image_metrics(_as_masks(out.get("masks", [])), gts, self.threshold)
            if per_image is None:
                self._skipped.append(name)
            else:
                self._per_image.append(per_image)

    def _gathered(self):
        if not (self.distributed and comm.get_world_size() > 1):
            return self._records, self._per_image, self._skipped
        comm.synchronize()
        parts = comm.gather((self._records, self._per_image, self._skipped), dst=0)
        if not comm.is_main_process():
            return None
        records, per_image, skipped = [], [], []
        for rec, per, skip in parts:
            records += rec
            per_image += per
            skipped += skip
        return records, per_image, skipped

    def evaluate(self):
        gathered = self._gathered()
        if gathered is None:
            return {}
        records, per_image, skipped = gathered
        if skipped:
            logger.warning(
                "%s: %d image(s) without salient GT objects were skipped by the metrics: %s",
                self.dataset_name,
                len(skipped),
                ", ".join(map(str, skipped[:10])) + (" ..." if len(skipped) > 10 else ""),
            )
        metrics = aggregate(per_image)
        if self.output_dir:
            self._write(records, metrics)
        logger.info("\n" + metrics_table(metrics, f"SOR metrics on {self.dataset_name}"))
        return OrderedDict(copy.deepcopy(metrics))

    def _write(self, records, metrics):
        os.makedirs(self.output_dir, exist_ok=True)
        results = {rec["image_name"]: rec for rec in records}
        res_path = os.path.join(self.output_dir, f"{self.dataset_name}_coco_format.pth")
        save_results(res_path, results)
        write_json_atomic(
            os.path.join(self.output_dir, f"{self.dataset_name}_metrics.json"), metrics
        )
        logger.info("Wrote %s and %s_metrics.json", res_path, self.dataset_name)
