"""Rank statistics of the SOR metrics: Pearson and Spearman correlations and average ranks,
bit-identical to numpy's ``corrcoef`` and scipy's ``spearmanr`` / ``rankdata`` on the short
samples the metrics have (a handful of ranks per image), without their per-call overhead."""

import math

import numpy as np

__all__ = ["average_ranks", "pearson", "spearman"]


def pearson(x: np.ndarray, y: np.ndarray, i: int, j: int) -> float:
    """Element (i, j) of ``np.corrcoef(x, y)`` for >= 2 samples, NaN for a constant input.

    The same numpy operations on the same arrays as ``np.corrcoef`` (mean, centring, ``dot``
    with the conjugate transpose, scaling, the two divisions by the standard deviations, the
    clip), so the result is bit-identical; only the argument checks and wrappers of ``np.cov``
    are skipped, which on a handful of ranks cost more than the maths. With two or more samples
    only floating-point errors can warn, which ``errstate`` silences much more cheaply than
    :func:`seqrank.evaluation.metrics.quiet_numerics`.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        data = np.array((x, y), dtype=np.float64)
        data -= data.mean(axis=1)[:, None]
        cov = np.dot(data, data.T.conj())
        cov *= np.true_divide(1, data.shape[1] - 1)
        std = np.sqrt(np.diag(cov))
        value = float(cov[i, j] / std[i] / std[j])
    return value if math.isnan(value) else min(1.0, max(-1.0, value))


def average_ranks(x) -> np.ndarray:
    """1-based ranks of ``x`` with ties sharing their mean rank (``rankdata`` "average").

    Plain Python: the samples here are a handful of ranks, where numpy's call overhead dominates.
    """
    values = np.asarray(x).tolist()
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        for i in order[start : end + 1]:
            ranks[i] = (start + end + 2) / 2.0
        start = end + 1
    return np.array(ranks, dtype=np.float64)


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """``scipy.stats.spearmanr(x, y)[0]`` for two 1-D samples, without its per-call overhead.

    The ranks are exact half-integers, so the Pearson correlation below takes the same steps on
    the same numbers as scipy (``np.corrcoef`` of the ranks, element [1, 0]); NaN for a constant
    input.
    """
    rx, ry = average_ranks(x), average_ranks(y)
    if (rx == rx[0]).all() or (ry == ry[0]).all():
        return float("nan")
    return pearson(rx, ry, 1, 0)
