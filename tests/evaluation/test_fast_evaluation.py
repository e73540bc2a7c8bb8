"""The evaluator's fast paths: bit-packed maps, vectorised RLE and the Spearman shortcut."""

import math

import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch
from scipy.stats import spearmanr

from seqrank.evaluation import SOREvaluator, image_metrics, make_record
from seqrank.evaluation.bitmaps import intersections, nonzero_count, pack_rows, summarize_maps
from seqrank.evaluation.metrics import METRIC_NAMES, quiet_numerics
from seqrank.evaluation.results_file import encode_rle
from seqrank.evaluation.stats import pearson, spearman
from tests.evaluation.test_metrics import same
from tests.reference.metrics import reference_image_metrics


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
        expected = reference_image_metrics([np.asarray(p, np.float64) for p in preds], gts)
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
            expected.append(reference_image_metrics(preds, gts))
    for got, ref in zip(evaluator._per_image, expected):
        for key in METRIC_NAMES:
            assert same(got[key], ref[key], 1e-12), key


@pytest.mark.parametrize("width", [64, 128, 640])
def test_rows_without_padding_take_the_flat_packing(width):
    rng = np.random.default_rng(width)
    bits = rng.random((3, 7, width)) < 0.4
    bits[1, :, :] = False
    bits[2, 0, 0] = True
    padded = np.packbits(bits, axis=-1).view(np.uint64)
    np.testing.assert_array_equal(pack_rows(bits), padded)
    strided = np.repeat(bits, 2, axis=2)[:, :, ::2]  # same values, not contiguous
    np.testing.assert_array_equal(pack_rows(strided), padded)
    assert encode_rle(bits) == _coco_rles(bits)


def test_pearson_is_bit_identical_to_corrcoef():
    rng = np.random.default_rng(3)
    for _ in range(3000):
        n = int(rng.integers(2, 14))
        x = rng.integers(0, int(rng.integers(1, 12)), n).astype(np.float64)
        y = rng.permutation(x) if rng.random() < 0.3 else rng.integers(0, 9, n).astype(float)
        for i, j in ((0, 1), (1, 0)):
            with quiet_numerics():
                expected = float(np.corrcoef(x, y)[i, j])
            got = pearson(x, y, i, j)
            assert got == expected or (math.isnan(got) and math.isnan(expected)), (x, y)


def test_stacked_and_listed_maps_summarize_alike():
    rng = np.random.default_rng(4)
    maps = np.stack(_ellipses(rng, 4, 30, 128))
    for variant in (maps, maps * 0.7):
        stacked, listed = summarize_maps(variant), summarize_maps(list(variant))
        np.testing.assert_array_equal(stacked.words, listed.words)
        np.testing.assert_array_equal(stacked.areas, listed.areas)
        assert (stacked.union is None) == (listed.union is None) == (variant is maps)


def test_nonzero_count_counts_bit_patterns_for_every_layout():
    rng = np.random.default_rng(5)
    maps = (rng.random((3, 9, 70)) < 0.3).astype(np.float32)
    maps[0, 0, :3] = [-0.0, np.nan, 0.5]
    ints = np.nan_to_num(maps)
    variants = [maps, maps[1], maps[:, :, ::2], maps.transpose(0, 2, 1), maps.astype(np.float64)]
    variants += [ints.astype(np.int32), ints.astype(np.uint32), ints.astype(np.uint8) > 0]
    for m in variants:
        expected = np.count_nonzero(m.view(f"u{m.itemsize}") if m.dtype != bool else m)
        assert nonzero_count(m) == expected, (m.dtype, m.shape, m.strides)
    assert nonzero_count(np.zeros((0, 4, 4), np.float32)) == 0
    assert nonzero_count(np.array([["a"]])) is None
    # -0.0 is not 1.0 yet nonzero: such maps take the general path, with the same metrics
    signed = np.where(maps[1:] > 0, maps[1:], np.float32(-0.0))
    assert summarize_maps(signed).union is not None


def test_intersections_on_the_shared_support_equal_the_full_count():
    rng = np.random.default_rng(6)
    overlaps = 0
    for trial in range(30):
        h, w = 40, 200
        gts = np.zeros((int(rng.integers(1, 4)), h, w), bool)
        preds = np.zeros((int(rng.integers(1, 4)), h, w), bool)
        for m in gts:
            y, x = rng.integers(0, h - 5), rng.integers(0, w - 20)
            m[y : y + rng.integers(1, 6), x : x + rng.integers(1, 20)] = True
        for m in preds:  # shifted copies of GT objects
            m[:] = np.roll(gts[rng.integers(len(gts))], rng.integers(-3, 4, 2), axis=(0, 1))
        if trial == 0:
            preds[:] = False  # empty support
        g = summarize_maps(gts).flat_words()
        p = summarize_maps(preds).flat_words()
        support = np.bitwise_or.reduce(g, axis=0) & np.bitwise_or.reduce(p, axis=0)
        assert 2 * np.count_nonzero(support) < support.size
        flat_g, flat_p = gts.reshape(len(gts), -1), preds.reshape(len(preds), -1)
        expected = flat_g.astype(np.int64) @ flat_p.T.astype(np.int64)
        overlaps += int((expected > 1).sum())
        np.testing.assert_array_equal(intersections(g, p, support), expected)
        np.testing.assert_array_equal(intersections(g, p), expected)
    assert overlaps > 5
