"""Matcher costs and losses run in float32 under any autocast (AMP must not overflow them)."""

import pytest
import torch

from seqrank.modeling.losses import in_float32, mask_cost_matrix, mask_loss_per_pair
from seqrank.modeling.matcher import match_cost, match_image

AUTOCAST = [torch.float16, torch.bfloat16]
NUM_POINTS = 12544


def _confident_case():
    """The issue's case: a GT object covering 62 % of the image, mask logits of +-12."""
    size, low = 192, 48
    gt = torch.zeros(3, size, size)
    side = round(0.62**0.5 * size)
    gt[0, :side, :side] = 1
    gt[1, -30:, -30:] = 1
    gt[2, -60:-40, :25] = 1
    assert abs(float(gt[0].mean()) - 0.62) < 0.005
    pred = torch.full((6, low, low), -12.0)
    pred[0, : side // 4, : side // 4] = 12.0
    pred[1] = 12.0
    pred[2, -8:, -8:] = 12.0
    pred[3, -15:-10, :6] = 12.0
    scores = torch.tensor([[2.0], [1.0], [0.5], [0.0], [-1.0], [-3.0]])
    return pred, scores, gt


def _cost_and_assignment(dtype):
    pred, scores, gt = _confident_case()
    args = (NUM_POINTS, 5.0, 5.0)
    with torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
        # Model outputs under autocast are half precision; the matcher must cope with that too.
        if dtype is not None:
            pred, scores = pred.to(dtype), scores.to(dtype)
        torch.manual_seed(3)
        cost = match_cost(pred, scores, gt, *args)
        torch.manual_seed(3)
        assignment = match_image(pred, scores, gt, *args)
    return cost, assignment


@pytest.mark.parametrize("dtype", AUTOCAST, ids=["fp16", "bf16"])
def test_matcher_under_autocast_is_finite_and_assigns_as_fp32(dtype):
    cost32, (q32, t32) = _cost_and_assignment(None)
    cost, (qi, ti) = _cost_and_assignment(dtype)
    assert cost.dtype == torch.float32 and torch.isfinite(cost).all()
    assert qi.tolist() == q32.tolist() and ti.tolist() == t32.tolist()
    assert q32.tolist() == [0, 2, 3]
    # +-12 is exact in both half formats, so the float32 cost is the fp32 one.
    assert torch.equal(cost, cost32)


@pytest.mark.parametrize("dtype", AUTOCAST, ids=["fp16", "bf16"])
def test_point_losses_stay_float32_under_autocast(dtype):
    gen = torch.Generator().manual_seed(0)
    logits = (torch.rand(4, NUM_POINTS, generator=gen) > 0.38).float() * 24 - 12
    targets = (torch.rand(2, NUM_POINTS, generator=gen) > 0.38).float()
    expected_cost = mask_cost_matrix(logits, targets, 5.0, 5.0)
    expected_loss = mask_loss_per_pair(logits[:2], targets, 5.0, 5.0)
    with torch.autocast("cpu", dtype=dtype):
        cost = mask_cost_matrix(logits.to(dtype), targets, 5.0, 5.0)
        loss = mask_loss_per_pair(logits[:2].to(dtype), targets.to(dtype), 5.0, 5.0)
    assert cost.dtype == loss.dtype == torch.float32
    assert torch.equal(cost, expected_cost) and torch.equal(loss, expected_loss)


def test_in_float32_is_the_identity_outside_autocast():
    seen = {}

    @in_float32
    def probe(a, b, n, c=None):
        seen.update(a=a, b=b, c=c, autocast=torch.is_autocast_enabled("cpu"))
        return n

    a, b, c = torch.ones(2), torch.ones(2, dtype=torch.float64), torch.ones(2, dtype=torch.bool)
    assert probe(a, b, 3, c=c) == 3
    assert seen["a"] is a and seen["b"] is b and seen["c"] is c and not seen["autocast"]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        probe(a.bfloat16(), b, 3, c=c.half())
    assert seen["a"].dtype == seen["c"].dtype == torch.float32 and not seen["autocast"]


@pytest.mark.parametrize("dtype", AUTOCAST, ids=["fp16", "bf16"])
def test_training_losses_under_autocast_are_float32_and_close_to_fp32(dtype):
    from tests.conftest import PARITY
    from tests.helpers import parity_model

    _, model = parity_model()
    batch = torch.load(PARITY / "train_batch.pth", weights_only=True)
    model.train()
    torch.manual_seed(0)
    with torch.no_grad():
        full = model(batch)
    torch.manual_seed(0)
    with torch.no_grad(), torch.autocast("cpu", dtype=dtype):
        mixed = model(batch)
    for key, value in mixed.items():
        assert value.dtype == torch.float32 and torch.isfinite(value), key
        assert float(value) == pytest.approx(float(full[key]), rel=0.05, abs=0.05), key
