"""The SOD metrics come from pysodmetrics (installed without its numpy<2.3.5 pin) and the MAE of
protocol seqrank equals the SOD field's MAE on binary maps."""

import numpy as np
import py_sod_metrics
import pytest

from seqrank.evaluation.metrics import image_metrics
from seqrank.evaluation.sod import SOD_METRICS, SODScorer, sod_aggregate


def _maps(seed=0, count=5, h=40, w=56):
    """(grey map, binary GT) pairs: smooth maps, a rank map, an empty and a constant map."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[:h, :w]
    pairs = []
    for k in range(count):
        gt = np.zeros((h, w), np.uint8)
        gt[5 + k : 25 + k, 10 : 30 + 3 * k] = 255
        cy, cx = rng.uniform(10, 30), rng.uniform(10, 45)
        blob = np.exp(-((ys - cy) ** 2 + (xs - cx) ** 2) / rng.uniform(40, 200))
        pairs.append(((blob * 255).astype(np.uint8), gt))
    rank = np.zeros((h, w), np.uint8)
    rank[5:25, 10:30], rank[30:38, 5:20] = 255, 127
    pairs += [(rank, pairs[0][1]), (np.zeros((h, w), np.uint8), pairs[1][1])]
    pairs.append((np.full((h, w), 200, np.uint8), pairs[2][1]))
    return pairs


def test_scorer_matches_the_library_run_over_the_same_images():
    pairs = _maps()
    scorer = SODScorer()
    ours = sod_aggregate([scorer(pred, gt > 0) for pred, gt in pairs])
    lib = {
        "mae": py_sod_metrics.MAE(),
        "sm": py_sod_metrics.Smeasure(),
        "em": py_sod_metrics.Emeasure(),
        "wfm": py_sod_metrics.WeightedFmeasure(),
        "fm": py_sod_metrics.FmeasureV2(
            metric_handlers={"fm": py_sod_metrics.FmeasureHandler(True, False, beta=0.3)}
        ),
    }
    for pred, gt in pairs:
        for metric in lib.values():
            metric.step(pred, gt)
    expected = {
        "mae": lib["mae"].get_results()["mae"],
        "s_measure": lib["sm"].get_results()["sm"],
        "e_measure": lib["em"].get_results()["em"]["curve"].mean(),
        "weighted_f": lib["wfm"].get_results()["wfm"],
        "max_f": lib["fm"].get_results()["fm"]["dynamic"].max(),
    }
    for name in SOD_METRICS:
        assert ours[name] == pytest.approx(float(expected[name]), rel=1e-12, abs=1e-12), name
        assert ours[f"{name}_count"] == len(pairs)
    assert 0 < ours["s_measure"] < 1 and 0 < ours["max_f"] <= 1


def test_scorer_keeps_no_per_image_state():
    scorer = SODScorer()
    pred, gt = _maps()[0]
    first = scorer(pred, gt)
    for _ in range(3):
        scorer(pred, gt)
    assert scorer._mae.maes == [] and scorer._f.dynamic_results == []
    again = scorer(pred, gt)
    assert first["s_measure"] == again["s_measure"]
    assert np.array_equal(first["f_curve"], again["f_curve"])


@pytest.mark.parametrize("case", ["partial", "empty", "full", "overlapping"])
def test_seqrank_mae_is_the_sod_mae_of_the_binary_union_maps(case):
    h, w = 30, 40
    gts = np.zeros((2, h, w), np.float32)
    gts[0, 2:12, 3:20], gts[1, 15:28, 10:35] = 1, 1
    preds = {
        "partial": [gts[1], np.roll(gts[0], 4, axis=1)],
        "empty": [],
        "full": [np.ones((h, w), np.float32)],
        "overlapping": [gts[0], np.maximum(gts[0], np.roll(gts[1], -3, axis=0))],
    }[case]
    ours = image_metrics(preds, gts)["mae"]
    union = np.max(np.stack(preds), axis=0) if preds else np.zeros((h, w))
    mae = py_sod_metrics.MAE()
    mae.step((union * 255).astype(np.uint8), (gts.max(axis=0) * 255).astype(np.uint8))
    assert ours == pytest.approx(float(mae.get_results()["mae"]), abs=1e-15)


def test_images_without_gt_are_skipped_and_no_image_gives_nan():
    out = sod_aggregate([None, None])
    assert all(np.isnan(out[m]) and out[f"{m}_count"] == 0 for m in SOD_METRICS)
