"""Protocol ``seqrank`` metrics: the hand-checkable cases of METRICS.md §5, a loop reference."""

import math

import numpy as np
import pytest

from seqrank.evaluation.bitmaps import binary_flat, pairwise_iou, stack_maps, summarize_maps
from seqrank.evaluation.metrics import (
    METRIC_NAMES,
    aggregate,
    image_metrics,
    sa_sor,
    sor,
    summary_metrics,
    topk_metrics,
)
from tests.reference.metrics import reference_image_metrics

UNION_KEYS = ("mae", "acc", "fbeta", "iou")


def union_metrics(preds, gts):
    """The rank-blind union metrics of :func:`image_metrics` (or of :func:`summary_metrics`
    when given summaries)."""
    if isinstance(gts, np.ndarray):
        found = image_metrics(preds, gts)
    else:
        found = summary_metrics(preds, gts)
    return {key: found[key] for key in UNION_KEYS}


NAN = float("nan")


def strip(cols, width=20):
    """1 x width map that is 1 on ``cols``."""
    m = np.zeros((1, width))
    m[0, list(cols)] = 1
    return m


A, B, C, X = (strip(range(s, s + 5)) for s in (0, 5, 10, 15))

# case -> (preds, gts, expected values; NAN means NaN, None means not counted)
CASES = {
    "T1": (
        [A, B, C],
        [A, B, C],
        dict(sa_sor=1.0, sor=1.0, mae=0.0, ap=1.0, ar=1.0, top1=1.0, top2=1.0, top3=1.0),
    ),
    "T2": ([C, B, A], [A, B, C], dict(sa_sor=-1.0, sor=0.0, mae=0.0, top1=0.0, top2=1.0, top3=0.0)),
    "T3": ([A, B], [A, B, C], dict(sa_sor=1.0, sor=1.0, mae=0.25, ar=0.666667, top3=0.0)),
    "T4": ([B, C], [A, B, C], dict(sa_sor=-0.5, sor=1.0, mae=0.25, top1=0.0, top2=0.0, top3=0.0)),
    "T5": ([A, X, B, C], [A, B, C], dict(sa_sor=0.981981, sor=1.0, mae=0.25, ap=0.75, top2=0.0)),
    "T6": ([A], [A], dict(sa_sor=NAN, sor=1.0, mae=0.0, top2=None)),
    "T7": ([], [A, B], dict(sa_sor=NAN, sor=NAN, mae=0.5, top1=0.0, top2=0.0, fbeta=0.0)),
    "T8": (
        [strip([0], 4), strip([2, 3], 4)],
        [strip([0, 1], 4), strip([2, 3], 4)],
        dict(sa_sor=-1.0, sor=1.0, mae=0.25, ap=0.5, ar=0.5, top1=0.0),
    ),
    "T9": (
        [strip(range(18)), strip(range(4))],
        [strip(range(10)), strip(range(10, 20))],
        dict(sa_sor=NAN, sor=1.0, mae=0.1, ap=0.0, ar=0.0, top1=1.0),
    ),
    "T10": ([B, A], [A, B], dict(sa_sor=-1.0, sor=0.0, mae=0.0)),
}


def same(a, b, tol=1e-6):
    if a is None or b is None:
        return a is b
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return abs(a - b) <= tol


@pytest.mark.parametrize("name", sorted(CASES, key=lambda k: int(k[1:])))
def test_hand_checkable_case(name):
    preds, gts, expected = CASES[name]
    result = image_metrics(preds, gts)
    assert list(result) == list(METRIC_NAMES)
    for key, value in expected.items():
        assert same(result[key], value), (name, key, result[key], value)


def test_aggregate_over_cases():
    per_image = [image_metrics(p, g) for p, g, _ in CASES.values()]
    agg = aggregate(per_image)
    keys = [k for name in METRIC_NAMES for k in (name, f"{name}_count")]
    assert list(agg) == keys
    assert agg["sa_sor"] == -0.0518 and agg["sa_sor_count"] == 10.0
    assert agg["sor"] == 0.7 and agg["sor_count"] == 10.0
    assert agg["mae"] == 0.16
    assert agg["top3"] == 0.2 and agg["top3_count"] == 5.0
    assert agg["ap"] == 0.725 and agg["ar"] == 0.6833
    assert all(isinstance(agg[f"{n}_count"], float) for n in METRIC_NAMES)


def test_image_without_gt_is_skipped(caplog):
    assert image_metrics([A], []) is None
    with_empty = [image_metrics(p, g) for p, g, _ in CASES.values()] + [image_metrics([A], [])]
    skipped = aggregate(with_empty, faithful_count0=True)
    assert skipped == aggregate(with_empty[:-1], faithful_count0=True)
    assert "Skipped 1 image" in caplog.text


def test_count0_metric_is_nan_by_default_and_one_when_faithful():
    per_image = [image_metrics(p, g) for p, g, _ in CASES.values()]
    default = aggregate(per_image)
    faithful = aggregate(per_image, faithful_count0=True)
    assert math.isnan(default["top5"]) and default["top5_count"] == 0.0
    assert faithful["top5"] == 1.0 and faithful["top5_count"] == 0.0
    assert {k: v for k, v in default.items() if k not in ("top4", "top5")} == {
        k: v for k, v in faithful.items() if k not in ("top4", "top5")
    }


def test_aggregate_subset_and_nan_counts_as_zero():
    per_image = [{"sor": NAN}, {"sor": 1.0}, {"sor": None}]
    assert aggregate(per_image, metrics=["sor"]) == {"sor": 0.5, "sor_count": 2.0}


def test_input_forms_and_empty_predictions():
    gts = np.stack([A, B])
    as_list = image_metrics([A, B], [A, B])
    assert as_list == image_metrics(np.stack([A, B]), gts)
    assert as_list == image_metrics([a.astype(bool) for a in (A, B)], gts)
    empty_list = image_metrics([], gts)
    empty_array = image_metrics(np.zeros((0, 1, 20)), gts)
    zero_map = image_metrics([np.zeros((1, 20))], gts)
    for key in METRIC_NAMES:
        assert same(empty_list[key], empty_array[key], 0)
        assert same(empty_list[key], zero_map[key], 0)


def test_binarisation_is_strict():
    # 0.5 is background; the MAE still sees the raw values of the union maps.
    half = A * 0.5
    result = image_metrics([half], [A])
    assert result["iou"] == 0.0 and result["top1"] == 0.0
    assert result["mae"] == pytest.approx(0.125)


def test_no_warning_when_every_image_has_gt(caplog):
    aggregate([image_metrics(p, g) for p, g, _ in CASES.values()])
    assert "Skipped" not in caplog.text


def test_stack_maps_and_binary_flat():
    maps = stack_maps([np.array([[0, 1]], dtype=bool), np.array([[0.5, 0.75]])])
    assert maps.dtype == np.float64 and maps.tolist() == [[[0.0, 1.0]], [[0.5, 0.75]]]
    assert stack_maps([np.ones((1, 2), dtype=bool)]).dtype == np.float64
    assert stack_maps([], shape=(2, 3)).shape == (0, 2, 3)
    with pytest.raises(ValueError, match="^cannot infer the map size of an empty sequence$"):
        stack_maps([])
    assert binary_flat(maps).tolist() == [[False, True], [False, True]]  # 0.5 is background


def test_union_metrics_of_raw_and_summarised_maps():
    precision, recall = 10 / (10 + 1e-6), 10 / (15 + 1e-6)
    expected = {
        "mae": 0.25,
        "acc": 0.75,
        "fbeta": 1.3 * precision * recall / (0.3 * precision + recall + 1e-6),
        "iou": 10 / (15 + 1e-6),
    }
    got = union_metrics(np.stack([A, B]), np.stack([A, B, C]))
    assert got == pytest.approx(expected, rel=1e-12, abs=0)
    assert union_metrics(summarize_maps([A, B]), summarize_maps([A, B, C])) == got
    # Non-binary maps: the MAE takes the raw union (0.7 on A, 0.2 elsewhere), the rest > 0.5.
    soft = union_metrics(np.stack([A * 0.7 + 0.2 * (1 - A)]), np.stack([A, B]))
    assert soft["mae"] == pytest.approx((5 * 0.3 + 5 * 0.8 + 10 * 0.2) / 20, rel=1e-12)
    assert soft["iou"] == pytest.approx(5 / (10 + 1e-6), rel=1e-12)


def test_graded_ground_truth_counts_in_the_mae():
    # Binary predictions, a graded GT map: the MAE takes the GT's raw values (0.8 on A) ...
    soft = A * 0.8
    assert image_metrics([A], [soft])["mae"] == pytest.approx(5 * 0.2 / 20, rel=1e-12)
    # ... also against the all-zero map that stands for no prediction (20 columns: the
    # unpacked width is not a whole number of 64-bit words).
    assert image_metrics([], [soft])["mae"] == pytest.approx(5 * 0.8 / 20, rel=1e-12)


def test_each_rule_on_its_iou_boundary():
    # sa_sor pairs IoU > 0.5; top-k counts IoU >= 0.5; sor and the matcher (ap, ar) take
    # IoU > thres. Hand-made IoU matrices put a value exactly on each boundary.
    iou = np.array([[0.5, 0.0], [0.0, 0.9]])
    rows = cols = np.array([0, 1])
    # GT 1 pairs with prediction 1 (ranks 1, 1); GT 2 is unpaired (ranks 2, 0): rho = -1.
    assert sa_sor(iou, rows, cols) == pytest.approx(-1.0, abs=1e-12)
    assert topk_metrics(iou)["top1"] == 1.0
    # GT 2 and GT 3 hit predictions 1 and 3 (ranks 2-3 / 1-3): rho 1. With GT 1 hitting
    # prediction 2 on the boundary as well, rho would be 0.5.
    iou = np.array([[0.0, 0.5, 0.0], [0.9, 0.0, 0.0], [0.0, 0.0, 0.9]])
    assert sor(iou, thres=0.5) == 1.0
    # A pair whose IoU equals the threshold is not matched.
    exact = 5 / (5 + 1e-6)  # IoU of A with itself, as image_metrics computes it
    on_boundary = image_metrics([A], [A], thres=exact)
    assert on_boundary["ap"] == on_boundary["ar"] == pytest.approx(0.0, abs=1e-11)
    assert math.isnan(on_boundary["sor"])
    assert image_metrics([A], [A], thres=0.99)["ap"] == 1.0


def test_pairwise_iou_epsilon():
    gt = binary_flat(np.stack([A, B]))
    iou = pairwise_iou(gt, binary_flat(np.stack([A, strip(range(5, 10)) * 0])))
    assert iou.tolist() == [[5 / (5 + 1e-6), 0.0], [0.0, 0.0]]
    assert pairwise_iou(gt, gt, eps=0.0).tolist() == [[1.0, 0.0], [0.0, 1.0]]
    empty = np.zeros((1, 20), dtype=bool)
    assert pairwise_iou(empty, empty, eps=0.0).tolist() == [[0.0]]  # empty union: 0, not NaN


# --------------------------------------------------------------------------- loop reference


def random_image(rng, h=12, w=16):
    """GT rectangles plus predictions that are noisy, shuffled copies and random extras."""

    def rect():
        m = np.zeros((h, w))
        y, x = rng.integers(0, h - 2), rng.integers(0, w - 2)
        m[y : y + rng.integers(2, h - y + 1), x : x + rng.integers(2, w - x + 1)] = 1
        return m

    gts = [rect() for _ in range(rng.integers(1, 7))]
    preds = []
    for g in gts:
        if rng.random() < 0.75:
            preds.append(np.where(rng.random(g.shape) < 0.1, 1 - g, g) * rng.uniform(0.6, 1))
    preds += [rect() for _ in range(rng.integers(0, 3))]
    order = rng.permutation(len(preds))
    return [preds[k] for k in order], gts


def test_vectorised_equals_loop_reference():
    rng = np.random.default_rng(0)
    for trial in range(300):
        preds, gts = random_image(rng)
        thres = 0.3 if trial % 3 == 0 else 0.5
        got, ref = image_metrics(preds, gts, thres), reference_image_metrics(preds, gts, thres)
        for key in METRIC_NAMES:
            assert same(got[key], ref[key], 1e-12), (key, got[key], ref[key])
