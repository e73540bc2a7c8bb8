"""Rank statistics (seqrank/evaluation/stats.py) on their own: the ranks themselves, integer
samples and the degenerate samples. The bit-identity of the correlations on random samples is
tested in test_fast_evaluation.py."""

import math
import warnings

import numpy as np
import pytest
from scipy.stats import rankdata

from seqrank.evaluation.stats import average_ranks, pearson, spearman


def test_average_ranks_equal_rankdata():
    rng = np.random.default_rng(0)
    for _ in range(200):
        x = rng.integers(0, int(rng.integers(1, 8)), int(rng.integers(1, 10)))
        ranks = average_ranks(x)
        assert ranks.dtype == np.float64
        np.testing.assert_array_equal(ranks, rankdata(x, method="average"))


def test_pearson_of_integer_samples_equals_corrcoef():
    x = np.array([3, 1, 2, 5])
    y = np.array([1, 1, 4, 2])
    for i, j in ((0, 1), (1, 0)):
        assert pearson(x, y, i, j) == float(np.corrcoef(x, y)[i, j])


def test_constant_sample_gives_nan_without_a_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert math.isnan(pearson(np.array([2.0, 2.0, 2.0]), np.array([1.0, 2.0, 3.0]), 0, 1))
        assert math.isnan(spearman(np.array([1, 2, 3]), np.array([4, 4, 4])))


@pytest.mark.parametrize("x, y", [([1], [2]), ([0.5], [0.5])])
def test_spearman_of_one_sample_is_nan(x, y):
    assert math.isnan(spearman(np.array(x), np.array(y)))
