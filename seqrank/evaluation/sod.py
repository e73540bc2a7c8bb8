"""The salient object detection (SOD) field's metrics of a grey map, from ``pysodmetrics``.

A rank or saliency map (H x W uint8, 0-255) is scored against the binary GT saliency map (the
union of the GT objects) exactly as SOD papers do with ``pysodmetrics`` (``py_sod_metrics``): the
map is min-max normalised, the GT binarised at 128. Reported per image and aggregated:

* ``mae``: mean absolute error;
* ``s_measure``: structure measure (Fan et al., ICCV 2017, alpha = 0.5);
* ``e_measure``: mean enhanced-alignment measure over the 256 thresholds (Fan et al., IJCAI 2018);
* ``weighted_f``: weighted F-measure (Margolin et al., CVPR 2014, beta = 1);
* ``max_f``: maximum over the 256 thresholds of the F-measure curve (beta^2 = 0.3) averaged
  over the images, a dataset-level statistic (per image: ``f_curve``).

pysodmetrics 1.6.2 declares ``numpy<2.3.5``; it is installed without its dependency pins (see
requirements-nodeps.txt) because the project's numpy 2.4 runs it unchanged, which
tests/evaluation/test_sod.py checks against the library's own aggregation.
"""

import math
import warnings
from typing import Dict, List, Optional

import numpy as np

__all__ = ["SOD_METRICS", "SODScorer", "sod_aggregate", "PYSODMETRICS_PIN"]

SOD_METRICS = ("mae", "s_measure", "e_measure", "weighted_f", "max_f")
PYSODMETRICS_PIN = "pysodmetrics==1.6.2"
F_BETA2 = 0.3


def _library():
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import py_sod_metrics
    except ImportError as exc:
        raise ImportError(
            f"the SOD metrics need pysodmetrics ({exc}); install it with "
            f"'pip install --no-deps {PYSODMETRICS_PIN}' (requirements-nodeps.txt) after "
            "requirements.txt"
        ) from exc
    return py_sod_metrics


class SODScorer:
    """Per-image SOD metrics of grey maps, one pysodmetrics evaluator per metric."""

    def __init__(self):
        lib = _library()
        self._mae = lib.MAE()
        self._sm = lib.Smeasure()
        self._em = lib.Emeasure()
        self._wfm = lib.WeightedFmeasure()
        self._f = lib.FmeasureHandler(with_dynamic=True, with_adaptive=False, beta=F_BETA2)
        self._fm = lib.FmeasureV2(metric_handlers={"fm": self._f})

    def __call__(self, pred: np.ndarray, gt: np.ndarray) -> Dict[str, object]:
        """Metrics of one H x W uint8 map against the H x W GT (bool or uint8 0/255)."""
        gt = gt.astype(np.uint8) * 255 if gt.dtype == bool else gt
        for metric in (self._mae, self._sm, self._em, self._wfm, self._fm):
            metric.step(pred, gt)
        # The evaluators keep every image; take this one back so memory stays flat.
        curve = self._em.changeable_ems.pop()
        self._em.adaptive_ems.pop()
        return {
            "mae": float(self._mae.maes.pop()),
            "s_measure": float(self._sm.sms.pop()),
            "e_measure": float(np.mean(curve)),
            "weighted_f": float(self._wfm.weighted_fms.pop()),
            "f_curve": np.asarray(self._f.dynamic_results.pop(), dtype=np.float64),
        }


def sod_aggregate(per_image: List[Optional[Dict[str, object]]]) -> Dict[str, float]:
    """Dataset values of :data:`SOD_METRICS` (plain means; ``max_f`` from the mean curve) and
    ``<metric>_count``; ``None`` entries (images without GT objects) are skipped."""
    images = [r for r in per_image if r is not None]
    out = {}
    for name in SOD_METRICS:
        if not images:
            value = math.nan
        elif name == "max_f":
            value = float(np.max(np.mean([r["f_curve"] for r in images], axis=0)))
        else:
            value = float(np.mean([r[name] for r in images]))
        out[name] = value
        out[f"{name}_count"] = float(len(images))
    return out
