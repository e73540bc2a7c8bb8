"""The ``irsr`` and ``assr`` protocols (METRICS.md §4) on the cases of §5 and on their own rules."""

import logging
import math
import warnings

import numpy as np
import pytest

from seqrank.evaluation.metrics import aggregate, image_metrics
from seqrank.evaluation.protocols import (
    ASSR_GREY,
    PROTOCOLS,
    assr_mae_from_maps,
    assr_mae_image,
    assr_predicted_ranks,
    assr_rank_map,
    assr_saliency_ranks,
    assr_sor,
    assr_sor_image,
    irsr_match,
    irsr_sa_sor,
    irsr_sa_sor_image,
    resize_binary,
    score_image,
    summarize_protocols,
)
from tests.evaluation.test_metrics import same


def strip(cols, width=20):
    """1 x width map that is 1 on ``cols``."""
    m = np.zeros((1, width))
    m[0, list(cols)] = 1
    return m


A, B, C, X = (strip(range(s, s + 5)) for s in (0, 5, 10, 15))

# The ten cases of METRICS.md §5 with their irsr SA-SOR and assr Spearman rho (None = not counted).
CASES = [
    ([A, B, C], [A, B, C], 1.0, 1.0),
    ([C, B, A], [A, B, C], -1.0, -1.0),
    ([A, B], [A, B, C], 1.0, 1.0),
    ([B, C], [A, B, C], -0.5, 1.0),
    ([A, X, B, C], [A, B, C], 0.981981, 1.0),
    ([A], [A], None, 1.0),
    ([], [A, B], 0.0, None),
    ([strip([0], 4), strip([2, 3], 4)], [strip([0, 1], 4), strip([2, 3], 4)], 1.0, 1.0),
    ([strip(range(18)), strip(range(4))], [strip(range(10)), strip(range(10, 20))], 1.0, None),
    ([B, A], [A, B], -1.0, -1.0),
]


def close(a, b, tol=1e-6):
    return a is b if a is None or b is None else abs(a - b) <= tol


@pytest.mark.parametrize("case", range(len(CASES)), ids=[f"T{k + 1}" for k in range(len(CASES))])
def test_cases_per_image(case):
    preds, gts, irsr_value, assr_rho = CASES[case]
    assert close(irsr_sa_sor_image(preds, gts), irsr_value)
    assert close(assr_sor_image(preds, gts), assr_rho)


def test_cases_aggregated():
    irsr = [irsr_sa_sor_image(p, g) for p, g, _, _ in CASES]
    assert irsr_sa_sor(irsr) == pytest.approx(0.27578, abs=5e-6)
    assert sum(v is not None for v in irsr) == 9
    rhos = [assr_sor_image(p, g) for p, g, _, _ in CASES]
    assert assr_sor(rhos) == pytest.approx(0.75)
    assert sum(v is not None for v in rhos) == 8


# --------------------------------------------------------------------------- irsr rules


def test_irsr_match_rules():
    assert irsr_match(np.array([[0.7, 0.7]])).tolist() == [1]  # ties to the last index
    assert irsr_match(np.array([[0.5]])).tolist() == [0]  # >= 0.5, no epsilon
    assert irsr_match(np.array([[0.49]])).tolist() == [-1]
    # GT 1 takes pred 0 with the higher IoU; GT 0 gets no second choice.
    assert irsr_match(np.array([[0.6, 0.55], [0.9, 0.2]])).tolist() == [-1, 0]
    assert irsr_match(np.array([[0.6, 0.0], [0.6, 0.0]])).tolist() == [0, -1]


def test_irsr_ranks_over_matched_or_all_predictions():
    # m <= n: only matched predictions are ranked, so unmatched X leaves no gap.
    assert irsr_sa_sor_image([A, X, B], [A, B, C]) == pytest.approx(1.0)
    # m > n: all predictions are ranked: A=4, B=1, C unmatched=0 against GT 3, 2, 1.
    assert irsr_sa_sor_image([A, X, X, B], [A, B, C]) == pytest.approx(4 / np.sqrt(2 * 78 / 9))


def test_irsr_rank_scores_and_gt_values():
    assert irsr_sa_sor_image([A, B, C], [A, B, C], pred_rank_scores=[0.1, 0.9, 0.5]) == (
        pytest.approx(-0.5)
    )
    tied = pytest.approx(np.sqrt(3) / 2)
    assert irsr_sa_sor_image([A, B, C], [A, B, C], pred_rank_scores=[0.9, 0.9, 0.1]) == tied
    assert irsr_sa_sor_image([A, B, C], [A, B, C], gt_rank_values=[5, 5, 1]) == tied


def test_irsr_special_images():
    assert irsr_sa_sor_image([A], []) is None
    assert irsr_sa_sor_image([A, B], [A]) is None  # one GT object: excluded
    assert irsr_sa_sor_image([], [A, B]) == 0.0
    assert irsr_sa_sor_image([X], [A, B]) == 0.0  # nothing matched: constant 0 ranks
    assert irsr_sa_sor_image([A, B], [A, B], pred_rank_scores=[0.5, 0.5]) == 0.0
    assert irsr_sa_sor_image([A, B], [A, B], gt_rank_values=[1, 1]) is None  # NaN: excluded
    assert math.isnan(irsr_sa_sor([None, None]))


# --------------------------------------------------------------------------- assr rules


def test_resize_replicates_strips_exactly():
    big = resize_binary([A, strip([1, 2], 4)])
    assert big.shape == (2, 480, 640)
    assert big[0].all(axis=0)[:160].all() and not big[0][:, 160:].any()
    assert big[1][:, 160:480].all() and not big[1][:, :160].any() and not big[1][:, 480:].any()


def test_assr_rank_map_painting():
    masks = np.stack([strip(range(10)), strip(range(5, 15))] + [X] * 4).astype(bool)
    grey = assr_rank_map(masks)
    assert grey[0, :5].tolist() == [255] * 5
    assert grey[0, 5:15].tolist() == [229] * 10  # the lower rank overwrites on overlap
    assert grey[0, 15:].tolist() == [153] * 5  # ranks beyond 5 are not painted


def test_assr_predicted_ranks_mode_and_coverage():
    grey = np.array([[255] * 5 + [229] * 5 + [0] * 6 + [204] * 2 + [0, 0]], dtype=np.uint8)
    gt = np.stack(
        [strip(range(10)), strip([12, 13, 14, 15, 16, 17]), strip([15, 16, 17]), strip([18, 19])]
    ).astype(bool)
    # tie -> smallest grey; 2 of 6 covered -> 0; 2 of 3 covered (> int(1.5)) -> 204; none -> 0.
    assert assr_predicted_ranks(grey, gt).tolist() == [229, 0, 204, 0]


def test_assr_drops_gt_rank_zero_and_excludes_constant_rho():
    assert assr_sor_image([A, B, C], [A, B, C], gt_rank_values=[3, 0, 1]) == pytest.approx(1.0)
    assert assr_sor_image([A, B, C], [A, B, C], gt_rank_values=[0, 0, 1]) == 1.0
    assert assr_sor_image([A], []) is None
    assert math.isnan(assr_sor([None]))


def test_assr_mae_on_graded_maps():
    assert assr_mae_image([A, B, C], [A, B, C]) == 0.0
    assert assr_mae_image([A, B], [A, B, C]) == pytest.approx(0.25 * 204 / 255)
    assert assr_mae_image([C, B, A], [A, B, C]) == pytest.approx(0.5 * 51 / 255)
    assert assr_mae_image([], [A]) == pytest.approx(0.25)


# --------------------------------------------------------------------------- all protocols


def evaluate_protocols(samples, protocols=PROTOCOLS, faithful_count0=False):
    """Score ``(preds, gts[, gt_rank_values[, pred_rank_scores]])`` samples and aggregate."""
    per_image = []
    for preds, gts, *extra in samples:
        extra = list(extra) + [None] * (2 - len(extra))
        per_image.append(score_image(preds, gts, protocols, 0.5, *extra))
    return summarize_protocols(per_image, protocols, faithful_count0=faithful_count0)


def test_evaluate_protocols():
    samples = [(p, g) for p, g, _, _ in CASES] + [([A], [])]
    out = evaluate_protocols(samples)
    expected = aggregate([image_metrics(p, g) for p, g in samples], faithful_count0=True)
    assert out["seqrank"]["sa_sor"] == -0.0518 and out["seqrank"]["sor"] == 0.7
    assert {k: v for k, v in out["seqrank"].items() if not k.startswith(("top4", "top5"))} == {
        k: v for k, v in expected.items() if not k.startswith(("top4", "top5"))
    }
    assert out["irsr"]["sa_sor"] == pytest.approx(0.27578, abs=5e-6)
    assert out["irsr"]["sa_sor_count"] == 9.0
    assert out["assr"]["sor"] == pytest.approx(0.75) and out["assr"]["sor_count"] == 8.0
    assert out["assr"]["mae_count"] == 10.0
    only = evaluate_protocols(samples, protocols=("irsr",), faithful_count0=True)
    assert list(only) == ["irsr"]
    with pytest.raises(ValueError):
        evaluate_protocols(samples, protocols=("sor",))


def test_evaluate_protocols_uses_given_rank_values():
    samples = [([A, B, C], [A, B, C], None, [0.1, 0.9, 0.5])]
    assert evaluate_protocols(samples, protocols=("irsr",))["irsr"]["sa_sor"] == (
        pytest.approx(-0.5)
    )
    samples = [([A, B, C], [A, B, C], [1, 2, 3])]
    assert evaluate_protocols(samples, protocols=("assr",))["assr"]["sor"] == pytest.approx(0.0)


# --------------------------------------------------------------------------- rules in detail


def test_irsr_ties_take_the_minimum_rank():
    # Four objects: min ranks [4, 2, 2, 1] are not an affine image of the average ranks
    # [4, 2.5, 2.5, 1], so the tie rule shows in the Pearson value (0.92338 vs 0.94868).
    four = [A, B, C, X]
    min_rank = 4.5 / np.sqrt(5 * 4.75)
    scores = [0.9, 0.5, 0.5, 0.1]
    assert irsr_sa_sor_image(four, four, pred_rank_scores=scores) == pytest.approx(min_rank)
    assert irsr_sa_sor_image(four, four, gt_rank_values=[5, 3, 3, 1]) == pytest.approx(min_rank)
    samples = [(four, four, [5, 3, 3, 1])]
    assert evaluate_protocols(samples, protocols=("irsr",))["irsr"]["sa_sor"] == (
        pytest.approx(min_rank)
    )


def test_maps_are_binarised_strictly_above_one_half():
    half = np.full((1, 20), 0.5)
    assert not resize_binary([half]).any()
    assert irsr_sa_sor_image([half, B], [A, B]) == irsr_sa_sor_image([B], [A, B])


def test_assr_coverage_must_exceed_half_of_the_object():
    grey = np.array([[255, 255, 0, 0, 229, 229, 229, 0]], dtype=np.uint8)
    gt = np.zeros((2, 1, 8), dtype=bool)
    gt[0, 0, :4] = True  # 2 of 4 pixels covered: not more than int(0.5 * 4)
    gt[1, 0, 3:7] = True  # 3 of 4
    assert assr_predicted_ranks(grey, gt).tolist() == [0, 229]


def test_assr_rank_map_is_uint8():
    assert assr_rank_map(np.stack([A, B]).astype(bool)).dtype == np.uint8


def test_assr_uses_the_given_map_size():
    # Nearest-neighbour 20 -> 7 columns keeps source columns 0, 2, 5, 8, 11, 14, 17: C (10-14)
    # covers 2 of 7 columns instead of a quarter of them.
    assert resize_binary([C], size=(7, 1))[0].tolist() == [[0, 0, 0, 0, 1, 1, 0]]
    assert assr_mae_image([A, B], [A, B, C], size=(7, 1)) == pytest.approx(2 / 7 * 204 / 255)
    assert assr_sor_image([C, B, A], [A, B, C], size=(7, 1)) == pytest.approx(-1.0)


def test_evaluate_protocols_count0_and_keys():
    samples = [([A], [A]), ([A, B], [A, B])]
    default = evaluate_protocols(samples)
    assert math.isnan(default["seqrank"]["top5"]) and default["seqrank"]["top5_count"] == 0.0
    faithful = evaluate_protocols(samples, faithful_count0=True)
    assert faithful["seqrank"]["top5"] == 1.0
    assert set(default["irsr"]) == {"sa_sor", "sa_sor_count"}
    assert set(default["assr"]) == {"sor", "sor_count", "mae", "mae_count"}
    with pytest.raises(ValueError, match=r"unknown protocol\(s\) \['sor'\]; choose from"):
        evaluate_protocols(samples, protocols=("sor",))


@pytest.mark.parametrize(
    "protocols, samples, warnings",
    [
        (("irsr",), [([A], [A, B]), ([A], [])], 1),
        (("irsr", "assr"), [([A], [A, B])], 0),
        (("seqrank", "irsr"), [([A], [A, B]), ([A], [])], 1),  # logged once, by aggregate()
        (("seqrank",), [([A], [A, B])], 0),
    ],
)
def test_images_without_gt_are_logged_once(caplog, protocols, samples, warnings):
    with caplog.at_level(logging.WARNING):
        evaluate_protocols(samples, protocols=protocols)
    logged = [r for r in caplog.records if "without salient ground truth" in r.message]
    assert len(logged) == warnings
    assert all("Skipped 1 image(s)" in r.message for r in logged)


def test_empty_inputs_give_nan_without_numpy_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert math.isnan(assr_sor([None])) and math.isnan(irsr_sa_sor([]))


def test_assr_mae_of_other_dtypes_equals_the_uint8_value():
    # 640 x 480 maps whose |difference| sums to more than float32 holds exactly: the general
    # path must subtract and average in float64 to give the same value as the uint8 path.
    rng = np.random.default_rng(0)
    greys = np.array((0,) + ASSR_GREY, dtype=np.uint8)
    pred = rng.choice(greys, size=(480, 640))
    gt = rng.choice(greys, size=(480, 640))
    exact = float(np.abs(pred.astype(np.int64) - gt).sum()) / pred.size / 255.0
    assert assr_mae_from_maps(pred, gt) == exact
    as_float = pred.astype(np.float32), gt.astype(np.float32)
    for p, g in (as_float, (as_float[0], gt), (pred, as_float[1]), (pred / 1.0, gt)):
        assert assr_mae_from_maps(p, g) == exact


def test_assr_predicted_ranks_on_maps_of_any_pixel_count():
    # 5 x 13 = 65 pixels: the flat map is padded to whole 64-pixel words.
    grey = np.zeros((5, 13), dtype=np.uint8)
    grey[0, :] = 229
    grey[4, 10:] = 178
    gt = np.zeros((2, 5, 13), dtype=bool)
    gt[0, 0, :] = True
    gt[1, 3:, 11:] = True  # 4 pixels, 2 of them grey: not more than half
    gt_one = gt.copy()
    gt_one[1, 3, 11:] = False  # 2 pixels, both grey
    assert assr_predicted_ranks(grey, gt).tolist() == [229, 0]
    assert assr_predicted_ranks(grey, gt_one).tolist() == [229, 178]


def test_assr_saliency_ranks_rules():
    # Objects: mean 0.3 (2 px), 0.9 (1 px), no pixel, 0.6 (3 px), saliency 0 (2 px), on a
    # map in [0, 1]. Order by mean: 1, 3, 0, then 2 and 4 unranked.
    saliency = np.zeros((3, 6))
    masks = np.zeros((5, 3, 6), dtype=bool)
    masks[0, 0, :2], saliency[0, :2] = True, [0.2, 0.4]
    masks[1, 1, 0], saliency[1, 0] = True, 0.9
    masks[3, 2, :3], saliency[2, :3] = True, [0.6, 0.5, 0.7]
    masks[4, 1, 4:] = True
    assert assr_saliency_ranks(saliency, masks).tolist() == [3, 5, 0, 4, 0]
    # The empty object first: it must not disturb the order of the others.
    assert assr_saliency_ranks(saliency, masks[[2, 0, 1, 3, 4]]).tolist() == [0, 3, 5, 4, 0]


def test_assr_saliency_means_are_exact_sums():
    # float32 maps: object 1 sums to 2**24 + 1, which float32 cannot hold (it rounds to 2**24,
    # a tie with object 0 that the index would break the other way).
    saliency = np.array([[2.0**24, 0.0, 2.0**24, 1.0]], dtype=np.float32)
    masks = np.array([[[1, 1, 0, 0]], [[0, 0, 1, 1]]], dtype=bool)
    assert assr_saliency_ranks(saliency, masks).tolist() == [1, 2]


def test_score_image_threshold():
    # One prediction of IoU 0.8 with the GT: matched at the default 0.5, not at 0.95.
    preds, gts = [strip(range(8))], [strip(range(10))]
    default = score_image(preds, gts, ("seqrank",))["seqrank"]
    assert all(same(v, image_metrics(preds, gts)[k], 0) for k, v in default.items())
    assert default["ap"] == 1.0
    strict = score_image(preds, gts, ("seqrank",), threshold=0.95)["seqrank"]
    assert all(same(v, image_metrics(preds, gts, 0.95)[k], 0) for k, v in strict.items())
    assert strict["ap"] < 1e-11


def test_summarize_protocols_defaults_and_metric_selection():
    per_image = [score_image([A], [A]), score_image([A, B], [A, B])]
    default = summarize_protocols(per_image)
    assert math.isnan(default["seqrank"]["top5"])  # count 0: NaN unless faithful_count0
    chosen = summarize_protocols(per_image, ("seqrank",), seqrank_metrics=["sor", "mae"])
    assert list(chosen["seqrank"]) == ["sor", "sor_count", "mae", "mae_count"]
