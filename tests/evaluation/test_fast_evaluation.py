"""The evaluator's fast paths: bit-packed maps, vectorised RLE and the Spearman shortcut."""

import math

import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch
from scipy.stats import spearmanr

from seqrank.evaluation import SOREvaluator, image_metrics, make_record
from seqrank.evaluation.evaluator import encode_rle
from seqrank.evaluation.metrics import METRIC_NAMES, quiet_numerics, spearman, summarize_maps
from tests.evaluation.test_metrics import ref_image_metrics, same


def _coco_rles(bits):
    return [mask_util.encode(np.asfortranarray(b.astype(np.uint8))) for b in bits]


@pytest.mark.parametrize("seed", range(3))
def test_rle_matches_pycocotools(seed):
    rng = np.random.default_rng(seed)
    for trial in range(150):
        h, w = rng.integers(1, 140 if trial % 3 == 0 else 10, size=2)
        bits = rng.random((int(rng.integers(0, 4)), h, w)) < rng.random()
        if trial % 7 == 0:
            bits[:] = False
        if trial % 11 == 0:
            bits[:] = True
        assert encode_rle(bits) == _coco_rles(bits), (h, w)


def test_make_record_rle_round_trip():
    masks = [np.zeros((5, 70), np.float32), np.ones((5, 70), np.float32)]
    masks[0][1:3, 60:] = 1
    record = make_record({"masks": masks, "num": 2})
    assert record["num"] == 2
    for rle, mask in zip(record["masks"], masks):
        np.testing.assert_array_equal(mask_util.decode(rle), mask.astype(np.uint8))


def test_spearman_is_bit_identical_to_scipy():
    rng = np.random.default_rng(0)
    for _ in range(3000):
        n = int(rng.integers(2, 12))
        x = rng.integers(0, int(rng.integers(1, 12)), n)
        y = rng.integers(0, int(rng.integers(1, 12)), n)
        with quiet_numerics():
            expected = spearmanr(x, y)[0]
        got = spearman(x, y)
        assert got == expected or (math.isnan(got) and math.isnan(expected))


def _ellipses(rng, count, h, w):
    yy, xx = np.mgrid[:h, :w]
    out = []
    for _ in range(count):
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        ry, rx = rng.uniform(2, h / 2), rng.uniform(2, w / 2)
        out.append((((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1).astype(np.float32))
    return out


@pytest.mark.parametrize("kind", ["float32", "bool", "float64 -0.0", "probabilities"])
def test_binary_and_general_paths_equal_the_loop_reference(kind):
    rng = np.random.default_rng(1)
    for _ in range(40):
        h, w = int(rng.integers(6, 40)), int(rng.integers(6, 90))  # widths around 64 bits
        gts = _ellipses(rng, int(rng.integers(1, 5)), h, w)
        preds = _ellipses(rng, int(rng.integers(0, 5)), h, w)
        if kind == "bool":
            preds = [p.astype(bool) for p in preds]
        elif kind == "float64 -0.0":
            preds = [np.where(p > 0, p, -0.0).astype(np.float64) for p in preds]
        elif kind == "probabilities":
            preds = [p * rng.uniform(0.4, 1.0) for p in preds]
        got = image_metrics(preds, gts)
        expected = ref_image_metrics([np.asarray(p, np.float64) for p in preds], gts)
        for key in METRIC_NAMES:
            assert same(got[key], expected[key], 1e-12), (kind, key, got[key], expected[key])


def test_binary_detection():
    ones = np.ones((2, 3, 4), np.float32)
    assert summarize_maps(ones).union is None
    assert summarize_maps(ones * 0.9).union is not None
    assert summarize_maps(np.full((1, 3, 4), 255, np.uint8)).union is not None
    assert summarize_maps([], shape=(3, 4)).words.shape == (0, 3, 1)


def test_evaluator_matches_per_image_functions():
    rng = np.random.default_rng(2)
    evaluator = SOREvaluator("fast", output_dir=None, distributed=False)
    expected = []
    for i in range(6):
        gts = _ellipses(rng, int(rng.integers(0, 4)), 24, 70)
        preds = _ellipses(rng, int(rng.integers(0, 4)), 24, 70)
        inp = {"image_name": f"im{i}", "masks": torch.from_numpy(np.array(gts).reshape(-1, 24, 70))}
        out = {"image_name": f"im{i}", "masks": preds, "num": len(preds)}
        evaluator.process([inp], [out])
        assert evaluator._records[-1]["masks"] == _coco_rles(np.array(preds) > 0.5)
        if gts:
            expected.append(ref_image_metrics(preds, gts))
    for got, ref in zip(evaluator._per_image, expected):
        for key in METRIC_NAMES:
            assert same(got[key], ref[key], 1e-12), key
