"""Per-image values and bootstrap confidence intervals of a method comparison.

I = images, B = bootstrap resamples.
"""

import math
from typing import Dict, List, Optional, Sequence

import numpy as np

from .compare import HEADLINE, Comparison
from .metrics import METRIC_NAMES
from .sod import SOD_METRICS

__all__ = ["add_bootstrap", "per_image_columns", "per_image_values"]


# --------------------------------------------------------------------------- per image


def per_image_columns(protocols: Sequence[str]) -> List[str]:
    """Column names of :func:`per_image_values`: ``<protocol>_<metric>``."""
    columns = []
    if "seqrank" in protocols:
        columns += [f"seqrank_{m}" for m in METRIC_NAMES]
    if "irsr" in protocols:
        columns.append("irsr_sa_sor")
    if "assr" in protocols:
        columns += ["assr_sor", "assr_mae"]
    if "sod" in protocols:
        columns += [f"sod_{m}" for m in SOD_METRICS if m != "max_f"]
    return columns


def per_image_values(scores: Dict[str, object]) -> Dict[str, Optional[float]]:
    """Flat per-image values of one :func:`score_image` dict.

    ``None`` = not counted by the protocol (absent, or an image it excludes); NaN = counted as 0
    (protocol ``seqrank``). ``assr_sor`` is ``(rho + 1) / 2``, so its mean is the dataset SOR.
    """
    out: Dict[str, Optional[float]] = {}
    if scores.get("seqrank") is not None:
        out.update({f"seqrank_{k}": v for k, v in scores["seqrank"].items()})
    if "irsr" in scores:
        out["irsr_sa_sor"] = scores["irsr"]
    if "assr" in scores:
        rho, mae = scores["assr"]
        out["assr_sor"] = None if rho is None else (rho + 1) / 2
        out["assr_mae"] = mae
    if scores.get("sod") is not None:
        out.update({f"sod_{k}": v for k, v in scores["sod"].items() if k in SOD_METRICS})
    return out


# --------------------------------------------------------------------------- bootstrap


def _headline_arrays(per_image, protocol, metric):
    """(values, counted) over the I images: the per-image terms of a dataset metric."""
    key = f"{protocol}_{metric}"
    flat = [per_image_values(s) for s in per_image]
    raw = [f.get(key) for f in flat]
    counted = np.array([v is not None for v in raw])
    values = np.array([0.0 if v is None or math.isnan(v) else float(v) for v in raw])
    return values, counted


def _resample_means(weights, values, counted):
    """B means of ``values`` over the counted images, each image weighted by its B draws."""
    w = weights * counted[None, :]
    total = w.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (w @ values) / total


def add_bootstrap(comparison: Comparison, resamples: int = 1000, seed: int = 0) -> None:
    """Add ``<metric>_ci95 = [low, high]`` (2.5 and 97.5 percentiles over ``resamples``
    resamplings of the images, with replacement) to each headline metric of each method.

    Every method and metric uses the same resamples (a paired bootstrap), drawn from
    ``numpy.random.default_rng(seed)``. A resample in which no image counts is left out.
    """
    n = len(comparison.images)
    if resamples <= 0 or n == 0:
        return
    rng = np.random.default_rng(seed)
    weights = rng.multinomial(n, np.full(n, 1.0 / n), size=resamples).astype(np.float64)
    for method in comparison.methods.values():
        for protocol, metric in HEADLINE:
            summary = method.summary.get(protocol)
            if summary is None or metric not in summary:
                continue
            if protocol == "sod" and metric == "max_f":
                stats = _max_f_resamples(weights, method.per_image)
            else:
                values, counted = _headline_arrays(method.per_image, protocol, metric)
                stats = _resample_means(weights, values, counted)
            stats = stats[np.isfinite(stats)]
            summary[f"{metric}_ci95"] = (
                [float(np.percentile(stats, 2.5)), float(np.percentile(stats, 97.5))]
                if len(stats)
                else [math.nan, math.nan]
            )


def _max_f_resamples(weights, per_image):
    curves = [s.get("sod") for s in per_image]
    counted = np.array([c is not None for c in curves])
    stacked = np.stack([c["f_curve"] if c is not None else np.zeros(256) for c in curves])
    w = weights * counted[None, :]
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_curves = (w @ stacked) / w.sum(axis=1, keepdims=True)
    return mean_curves.max(axis=1)
