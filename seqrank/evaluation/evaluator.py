"""SOREvaluator: SeqRank's salient-object-ranking evaluation as a detectron2 DatasetEvaluator.

Per image it scores the predicted masks (rank order) against the GT masks at original resolution
and keeps a results-file record (RLE masks, boxes, scores); ``evaluate`` gathers both to rank 0,
writes ``<dataset>_coco_format.pth`` and ``<dataset>_metrics.json`` and logs a table.

With ``TEST.EVAL_SAVE`` it also writes the original's grey rank map of each image,
``<output_dir>/results/<dataset>/<image_name>_count_<n>.png`` (see
:func:`seqrank.utils.colormap.render_rank_map`). Each process writes the maps of the images it
evaluates, in ``process``: in multi-process evaluation every image is seen by exactly one process,
so no map travels through the gather and rank 0 does not wait for the writing.
"""

import copy
import logging
import math
import os
import re
from collections import OrderedDict, defaultdict

import cv2
from detectron2.evaluation import DatasetEvaluator
from detectron2.utils import comm
from tabulate import tabulate

from ..utils.atomic_io import atomic_write_bytes, atomic_write_json
from ..utils.colormap import render_rank_map
from .bitmaps import summarize_maps, unpack_rows
from .metrics import aggregate, select_metrics, summary_metrics
from .results_file import make_record, save_results

__all__ = [
    "RankMapWriter",
    "SOREvaluator",
    "metrics_table",
]

logger = logging.getLogger(__name__)


def _as_array(masks):
    return masks.cpu().numpy() if hasattr(masks, "cpu") else masks


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


_COUNT_NAME = re.compile(r"^(?P<name>.+)_count_\d+\.png$")


class RankMapWriter:
    """Writes ``TEST.EVAL_SAVE``'s grey rank maps, ``<folder>/<image_name>_count_<n>.png``.

    A map left by an earlier run for the same image under another ``n`` is removed when the
    image's new map is written, so a folder never holds two maps of one image.
    """

    def __init__(self, folder):
        self.folder = folder
        self._stale = None

    def _existing(self):
        if self._stale is None:
            os.makedirs(self.folder, exist_ok=True)
            self._stale = defaultdict(list)
            for entry in os.listdir(self.folder):
                match = _COUNT_NAME.match(entry)
                if match:
                    self._stale[match.group("name")].append(entry)
        return self._stale

    def write(self, image_name, masks, height, width):
        """``masks``: K x H x W maps in rank order (thresholded at 0.5)."""
        filename = f"{image_name}_count_{len(masks)}.png"
        ok, png = cv2.imencode(".png", render_rank_map(masks, height, width))
        if not ok:
            raise RuntimeError(f"cannot encode the rank map of {image_name}")
        for old in self._existing().pop(str(image_name), []):
            if old != filename:
                os.remove(os.path.join(self.folder, old))
        atomic_write_bytes(os.path.join(self.folder, filename), png.tobytes())


class SOREvaluator(DatasetEvaluator):
    """Evaluates SeqRank predictions under the ``seqrank`` protocol (docs/METRICS.md).

    ``metrics``: the metric names to report, in that order (``TEST.METRICS_OF_INTEREST``; unknown
    names are dropped with a warning); ``None`` reports every metric. ``eval_save``: also write
    the grey rank maps of ``TEST.EVAL_SAVE`` (see :class:`RankMapWriter`).
    """

    def __init__(
        self,
        dataset_name,
        output_dir=None,
        threshold=0.5,
        distributed=True,
        metrics=None,
        eval_save=False,
    ):
        self.dataset_name = dataset_name
        self.output_dir = output_dir
        self.threshold = threshold
        self.distributed = distributed
        self.metrics = select_metrics(metrics)
        self.eval_save = eval_save
        self.reset()

    @classmethod
    def from_cfg(cls, cfg, dataset_name, output_dir=None):
        return cls(
            dataset_name,
            output_dir or cfg.OUTPUT_DIR,
            threshold=cfg.TEST.THRESHOLD,
            metrics=cfg.TEST.METRICS_OF_INTEREST,
            eval_save=cfg.TEST.EVAL_SAVE,
        )

    def reset(self):
        self._records = []
        self._per_image = []
        self._skipped = []
        self._rank_maps = None
        if self.eval_save and self.output_dir:
            folder = os.path.join(self.output_dir, "results", self.dataset_name)
            self._rank_maps = RankMapWriter(folder)

    def process(self, inputs, outputs):
        for inp, out in zip(inputs, outputs):
            gts = _as_array(inp["masks"])
            gt_maps = summarize_maps(gts) if len(gts) else None
            pred_masks = [_as_array(m) for m in out.get("masks", [])]
            preds = None
            if pred_masks or gt_maps is not None:
                shape = gt_maps.shape if gt_maps is not None else None
                preds = summarize_maps(pred_masks, shape)
            record = make_record(out, preds)
            name = inp.get("image_name", record["image_name"])
            record["image_name"] = name
            self._records.append(record)
            if self._rank_maps is not None:
                self._save_rank_map(name, inp, preds)
            if gt_maps is None:
                self._skipped.append(name)
            else:
                self._per_image.append(summary_metrics(preds, gt_maps, self.threshold))

    def _save_rank_map(self, name, inp, preds):
        if preds is not None and len(preds.words):
            masks = unpack_rows(preds.words, preds.width)
            height, width = masks.shape[1:]
        else:
            masks = []
            height, width = inp.get("height"), inp.get("width")
            if (height is None or width is None) and preds is not None:
                height, width = preds.shape
        self._rank_maps.write(name, masks, height, width)

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
        metrics = aggregate(per_image, metrics=self.metrics)
        if self.output_dir:
            self._write(records, metrics)
        logger.info("\n" + metrics_table(metrics, f"SOR metrics on {self.dataset_name}"))
        return OrderedDict(copy.deepcopy(metrics))

    def _write(self, records, metrics):
        os.makedirs(self.output_dir, exist_ok=True)
        results = {rec["image_name"]: rec for rec in records}
        res_path = os.path.join(self.output_dir, f"{self.dataset_name}_coco_format.pth")
        save_results(res_path, results)
        atomic_write_json(
            os.path.join(self.output_dir, f"{self.dataset_name}_metrics.json"), metrics
        )
        logger.info("Wrote %s and %s_metrics.json", res_path, self.dataset_name)
