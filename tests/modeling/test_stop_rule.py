"""The inference loop's decisions (ARCHITECTURE.md section 9.2) on scripted logits.

A stub ranking module returns, for each image and step, the saliency logits of a script, so every
rule of the loop is checked on values chosen around its threshold: an image stops for good at its
first pick whose objectness or saliency is below 0.001, and after Q steps at the latest (all
queries used). Both loops (the original's, a test oracle in tests/reference/ranking.py, and the
project's, which drops stopped images from the batch) are run.

Letters: B = images, Q = queries, h x w = mask-logit size, H x W = image size.
"""

import functools
import math

import numpy as np
import pytest
import torch
from torch import nn

from seqrank.modeling.meta_arch import STOP_THRESHOLD, SeqRank
from tests.reference.ranking import rank_reference

NUM_QUERIES = 4
HEIGHT, WIDTH = 6, 8
# (cx, cy, h, w) of every predicted box: x in [0.3, 0.7] x W, y in [0.4, 0.6] x H.
BOX_XYHW = (0.5, 0.5, 0.2, 0.4)
BOX_XYXY = [0.3 * WIDTH, 0.4 * HEIGHT, 0.7 * WIDTH, 0.6 * HEIGHT]
HIGH = 0.9
# Just above and just below the stop threshold of 0.001.
ABOVE, BELOW = 0.0011, 0.0009


def logit(p):
    return math.log(p / (1.0 - p))


class ScriptedRanking(nn.Module):
    """Stands in for the SequentialRankingModule.

    ``scripts[b][i] = (query, saliency)``: at step i image b's ``query`` gets the saliency logit
    ``logit(saliency)``, every other query 5 lower. The image is read from ``q[:, 0, 0]`` and the
    step from ``q_vis`` (its largest entry is the number of steps taken), so the script follows
    each image when the fast path drops stopped ones from the batch.
    """

    def __init__(self, scripts, dtype=torch.float32):
        super().__init__()
        self.scripts = scripts
        self.dtype = dtype
        self.calls = self.calls_with_cache = 0
        self.cached = False

    def token_cache(self, z, zpe):
        """Per-image tensors, as the real module's cache of projected image tokens."""
        self.cached = True
        return [z.clone(), zpe.clone()]

    def forward(self, q, z, qpe, zpe, q_vis, token_cache=None):
        self.calls += 1
        self.calls_with_cache += token_cache is not None
        assert q_vis.dtype == torch.float32  # ranks so far, in float (ARCHITECTURE.md 9.2)
        logits = torch.empty(q.shape[0], q.shape[1], 1, dtype=self.dtype)
        rows = [q, qpe, z, zpe] + (token_cache or [])
        for row in range(q.shape[0]):
            image = int(q[row, 0, 0])
            # Every per-image input (and the cache) must still hold this image's row.
            assert all(int(t[row, 0, 0]) == image for t in rows)
            step = int(q_vis[row].max())
            query, saliency = self.scripts[image][step]
            logits[row] = logit(saliency) - 5.0
            logits[row, query] = logit(saliency)
        return logits


def make_model(scripts, exclude_ranked=False, fast=True, dtype=torch.float32):
    model = SeqRank(
        backbone=nn.Identity(),
        neck=nn.Identity(),
        instance_seg=nn.Identity(),
        gaze_shift=ScriptedRanking(scripts, dtype),
        pe_layer=nn.Identity(),
        pixel_mean=[0.0, 0.0, 0.0],
        pixel_std=[1.0, 1.0, 1.0],
        criterion=None,
        exclude_ranked=exclude_ranked,
        fast_inference=fast,
    )
    return model.eval()


def query_masks():
    """Q x 2 x 4 mask logits: query k is positive on column pair k of the 2 x 4 grid only."""
    masks = torch.full((NUM_QUERIES, 2, 4), -5.0)
    for k in range(NUM_QUERIES):
        masks[k, :, k] = 5.0
    return masks


def expected_mask(query):
    """The H x W mask of ``query`` after bilinear upsampling, sigmoid and ``> 0.5``."""
    mask = np.zeros((HEIGHT, WIDTH), np.float32)
    mask[:, 2 * query : 2 * query + 2] = 1.0
    return mask


def rank(scripts, objectness, exclude_ranked=False, fast=True, box_xyhw=BOX_XYHW, **kwargs):
    """Run the loop on B images; ``objectness[b][k]`` is query k's objectness probability and
    ``box_xyhw`` every query's box. ``dtype``: of the head outputs and ranking logits;
    ``cache_tokens``: passed to ``set_fast_inference``; ``masks``: Q x 2 x 4 mask logits."""
    dtype = kwargs.get("dtype", torch.float32)
    model = make_model(scripts, exclude_ranked, fast, dtype)
    if "cache_tokens" in kwargs:
        model.set_fast_inference(fast, cache_tokens=kwargs["cache_tokens"])
    bsz = len(scripts)
    q = torch.zeros(bsz, NUM_QUERIES, 2)
    q[:, :, 0] = torch.arange(bsz, dtype=torch.float32)[:, None]
    z = torch.zeros(bsz, 3, 2)
    z[:, :, 0] = torch.arange(bsz, dtype=torch.float32)[:, None]
    box_logits = torch.tensor([logit(v) for v in box_xyhw])
    out = {
        "scores": torch.tensor([[[logit(p)] for p in row] for row in objectness]),
        "masks": kwargs.get("masks", query_masks()).expand(bsz, -1, -1, -1).clone(),
        "bboxes": box_logits.expand(bsz, NUM_QUERIES, 4).clone(),
    }
    out = {key: value.to(dtype) for key, value in out.items()}
    inputs = [{"height": HEIGHT, "width": WIDTH} for _ in range(bsz)]
    for record, name in zip(inputs, kwargs.get("names", ())):
        record["image_name"] = name
    loop = model.rank if fast else functools.partial(rank_reference, model)
    return loop(inputs, q, q.clone(), z, z.clone(), out), model.gaze_shift


def assert_picks(result, queries, objectness, saliency):
    """``result`` holds exactly the given picks, with their masks, boxes and scores."""
    assert result["num"] == len(queries)
    assert len(result["masks"]) == len(result["bboxes"]) == len(queries)
    for mask, query in zip(result["masks"], queries):
        assert mask.dtype == np.bool_
        np.testing.assert_array_equal(mask, expected_mask(query))
    for box in result["bboxes"]:
        np.testing.assert_allclose(box, BOX_XYXY, rtol=1e-6)
    np.testing.assert_allclose(result["scores"], objectness, rtol=1e-5)
    np.testing.assert_allclose(result["saliency"], saliency, rtol=1e-5)


PATHS = pytest.mark.parametrize("fast", [True, False], ids=["fast", "reference"])


def test_threshold_is_the_originals():
    assert STOP_THRESHOLD == 0.001


@PATHS
def test_stops_at_the_first_pick_with_objectness_below_threshold(fast):
    script = [(0, HIGH), (1, HIGH), (2, HIGH), (3, HIGH)]
    objectness = [0.5, ABOVE, BELOW, 0.8]
    (result,), _ = rank([script], [objectness], fast=fast)
    assert_picks(result, [0, 1], [0.5, ABOVE], [HIGH, HIGH])


@PATHS
def test_stops_at_the_first_pick_with_saliency_below_threshold(fast):
    script = [(0, HIGH), (1, ABOVE), (2, BELOW), (3, HIGH)]
    (result,), _ = rank([script], [[0.5, 0.6, 0.7, 0.8]], fast=fast)
    assert_picks(result, [0, 1], [0.5, 0.6], [HIGH, ABOVE])


@PATHS
def test_stop_is_permanent(fast):
    # Objectness and saliency are high again after the stop: nothing more is added.
    script = [(2, HIGH), (0, BELOW), (1, HIGH), (3, HIGH)]
    (result,), ranking = rank([script], [[0.5, 0.6, 0.7, 0.8]], fast=fast)
    assert_picks(result, [2], [0.7], [HIGH])
    assert ranking.calls == 2


@PATHS
def test_first_pick_below_threshold_gives_an_empty_result(fast):
    script = [(1, BELOW)] * NUM_QUERIES
    (result,), _ = rank([script], [[0.5] * NUM_QUERIES], fast=fast)
    assert result == {
        "image_name": 0,
        "masks": [],
        "bboxes": [],
        "scores": [],
        "saliency": [],
        "num": 0,
    }


@PATHS
def test_stops_when_every_query_was_used(fast):
    script = [(3, HIGH), (1, 0.8), (0, 0.7), (2, 0.6)]
    (result,), ranking = rank([script], [[0.5, 0.6, 0.7, 0.8]], fast=fast)
    assert_picks(result, [3, 1, 0, 2], [0.8, 0.6, 0.5, 0.7], [HIGH, 0.8, 0.7, 0.6])
    assert ranking.calls == NUM_QUERIES


@PATHS
def test_without_exclusion_a_query_can_be_picked_again_up_to_q_steps(fast):
    script = [(1, HIGH)] * NUM_QUERIES
    (result,), ranking = rank([script], [[0.5, 0.6, 0.7, 0.8]], fast=fast)
    assert_picks(result, [1] * NUM_QUERIES, [0.6] * NUM_QUERIES, [HIGH] * NUM_QUERIES)
    assert ranking.calls == NUM_QUERIES


@PATHS
def test_exclude_ranked_takes_the_best_unranked_query(fast):
    # The script keeps favouring query 1; with EXCLUDE_RANKED it is masked once ranked, and the
    # others (all equal, 5 lower) are taken in index order (argmax takes the first maximum).
    script = [(1, HIGH)] * NUM_QUERIES
    (result,), ranking = rank([script], [[0.5, 0.6, 0.7, 0.8]], exclude_ranked=True, fast=fast)
    low = 1.0 / (1.0 + math.exp(5.0 - logit(HIGH)))
    assert_picks(result, [1, 0, 2, 3], [0.6, 0.5, 0.7, 0.8], [HIGH, low, low, low])
    assert ranking.calls == NUM_QUERIES


@PATHS
def test_images_of_a_batch_stop_independently(fast):
    scripts = [
        [(0, HIGH), (1, HIGH), (2, HIGH), (3, HIGH)],  # objectness of query 1 is too low
        [(3, 0.7), (2, 0.6), (1, 0.5), (0, BELOW)],  # saliency too low at step 3
        [(2, BELOW), (0, HIGH), (1, HIGH), (3, HIGH)],  # stops at once
    ]
    objectness = [[0.5, BELOW, 0.5, 0.5], [0.1, 0.2, 0.3, 0.4], [0.9, 0.9, 0.9, 0.9]]
    results, ranking = rank(scripts, objectness, fast=fast)
    assert [r["image_name"] for r in results] == [0, 1, 2]
    assert_picks(results[0], [0], [0.5], [HIGH])
    assert_picks(results[1], [3, 2, 1], [0.4, 0.3, 0.2], [0.7, 0.6, 0.5])
    assert_picks(results[2], [], [], [])
    assert ranking.calls == NUM_QUERIES
    # The fast path computes the token cache once and passes it to every step.
    assert ranking.cached == fast and ranking.calls_with_cache == (ranking.calls if fast else 0)


def test_fast_path_without_token_cache():
    scripts = [[(0, HIGH), (2, 0.5), (1, BELOW), (3, HIGH)], [(3, HIGH), (1, BELOW)] * 2]
    results, ranking = rank(scripts, [[0.5, 0.6, 0.7, 0.8]] * 2, cache_tokens=False)
    assert_picks(results[0], [0, 2], [0.5, 0.7], [HIGH, 0.5])
    assert_picks(results[1], [3], [0.8], [HIGH])
    assert not ranking.cached and ranking.calls_with_cache == 0


@PATHS
def test_reduced_precision_outputs_are_ranked_in_float32(fast):
    # Head outputs and ranking logits in bfloat16 (as under autocast): probabilities, boxes and
    # masks are computed from those values in float32.
    def in_fp32(p):
        return torch.tensor(logit(p), dtype=torch.bfloat16).float().sigmoid().item()

    script = [(0, HIGH), (3, 0.3), (1, BELOW), (2, HIGH)]
    (result,), _ = rank([script], [[0.5, 0.6, 0.7, 0.8]], fast=fast, dtype=torch.bfloat16)
    box = torch.tensor([logit(v) for v in BOX_XYHW], dtype=torch.bfloat16).float().sigmoid()
    cx, cy, h, w = box.tolist()
    expected_box = [(cx - w / 2) * WIDTH, (cy - h / 2) * HEIGHT]
    expected_box += [(cx + w / 2) * WIDTH, (cy + h / 2) * HEIGHT]
    assert result["num"] == 2
    for mask, query in zip(result["masks"], [0, 3]):
        assert mask.dtype == np.bool_
        np.testing.assert_array_equal(mask, expected_mask(query))
    np.testing.assert_allclose(result["bboxes"], [expected_box] * 2, rtol=1e-6)
    np.testing.assert_allclose(result["scores"], [in_fp32(0.5), in_fp32(0.8)], rtol=1e-6)
    np.testing.assert_allclose(result["saliency"], [in_fp32(HIGH), in_fp32(0.3)], rtol=1e-6)


@PATHS
def test_boxes_are_scaled_to_the_image_and_not_clamped(fast):
    # (cx, cy, h, w) = (0.9, 0.1, 0.4, 0.6) reaches past the right and top edges of the 6 x 8
    # image: x in [0.6, 1.2] x 8, y in [-0.1, 0.3] x 6, kept as they are (as in the original).
    script = [(0, HIGH), (1, BELOW)] + [(2, HIGH)] * 2
    (result,), _ = rank([script], [[0.5] * NUM_QUERIES], fast=fast, box_xyhw=(0.9, 0.1, 0.4, 0.6))
    np.testing.assert_allclose(result["bboxes"], [[4.8, -0.6, 9.6, 1.8]], rtol=1e-5)


@PATHS
def test_masks_are_upsampled_bilinearly_and_thresholded_strictly(fast):
    # Bilinear 4 -> 8 columns samples source x = j / 2 - 0.25. Query 0, [-5, 1, 1, -5]: only
    # columns 3 and 4 are positive (nearest-neighbour would give 2-5). Query 1, [3, -1, -1, -1]:
    # columns 0 and 1; column 2 is exactly 0.25 * 3 - 0.75 * 1 = 0, i.e. probability 0.5, which
    # is not foreground.
    masks = torch.full((NUM_QUERIES, 2, 4), -5.0)
    masks[0, :] = torch.tensor([-5.0, 1.0, 1.0, -5.0])
    masks[1, :] = torch.tensor([3.0, -1.0, -1.0, -1.0])
    script = [(0, HIGH), (1, HIGH), (2, BELOW), (3, HIGH)]
    (result,), _ = rank([script], [[0.5] * NUM_QUERIES], fast=fast, masks=masks)
    first, second = (np.zeros((HEIGHT, WIDTH), np.float32) for _ in range(2))
    first[:, 3:5] = 1
    second[:, 0:2] = 1
    assert result["num"] == 2
    np.testing.assert_array_equal(result["masks"][0], first)
    np.testing.assert_array_equal(result["masks"][1], second)


@PATHS
def test_results_carry_the_image_name_or_the_batch_index(fast):
    scripts = [[(0, HIGH)] + [(1, BELOW)] * 3, [(1, BELOW)] * 4]
    results, _ = rank(scripts, [[0.5] * NUM_QUERIES] * 2, fast=fast, names=["cat.jpg"])
    assert [r["image_name"] for r in results] == ["cat.jpg", 1]
    assert [r["num"] for r in results] == [1, 0]


def test_a_large_batch_keeps_each_image_on_its_rows():
    # 70 images stopping at random steps. The stopped ones leave the batch through a sort of
    # the keep flags that must be stable (torch.sort is not, on 64 rows or more): otherwise the
    # rows of one image would be ranked as another's.
    rng = np.random.default_rng(0)
    scripts = [
        [(int(rng.integers(NUM_QUERIES)), HIGH if rng.random() < 0.7 else BELOW) for _ in range(4)]
        for _ in range(70)
    ]
    objectness = rng.uniform(0.1, 0.9, (70, NUM_QUERIES)).tolist()
    fast, _ = rank(scripts, objectness)
    reference, _ = rank(scripts, objectness, fast=False)
    assert sorted({r["num"] for r in fast}) == [0, 1, 2, 3, 4]
    for got, expected in zip(fast, reference):
        assert got["num"] == expected["num"]
        assert got["scores"] == expected["scores"] and got["saliency"] == expected["saliency"]
        for mask, expected_mask_ in zip(got["masks"], expected["masks"]):
            np.testing.assert_array_equal(mask, expected_mask_)
