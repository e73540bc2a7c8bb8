"""Per-image results of the ranking loop (seqrank/modeling/postprocessing.py) against values
computed here. Letters: K masks, h x w logits, H x W image."""

import pytest
import torch
import torch.nn.functional as F

from seqrank.modeling import postprocessing
from seqrank.modeling.postprocessing import threshold_masks

K, H, W = 5, 13, 17


def expected_masks(logits, height=H, width=W):
    """K x H x W bool: bilinear upsampling of the K x h x w logits, sigmoid, strictly > 0.5."""
    size = (height, width)
    return F.interpolate(logits[None].float(), size=size, mode="bilinear")[0].sigmoid() > 0.5


@pytest.mark.parametrize("chunk", [None, 2 * H * W, 1], ids=["one-chunk", "2-per-chunk", "1"])
def test_threshold_masks_equal_the_upsampled_sigmoid_above_one_half(monkeypatch, chunk):
    if chunk is not None:
        monkeypatch.setattr(postprocessing, "MASK_CHUNK_VALUES", chunk)
    logits = torch.randn(K, 6, 8, generator=torch.Generator().manual_seed(0)) * 3
    logits[1] = 0.0  # probability exactly 0.5 everywhere: background
    # The masks are written into a new tensor: fill the memory it is likely to get with ones,
    # so that a mask left unwritten shows.
    junk = torch.ones(K, H, W, dtype=torch.bool)
    del junk
    masks = threshold_masks(logits, H, W)
    assert masks.dtype == torch.bool and masks.device.type == "cpu"
    assert masks.shape == (K, H, W)
    assert torch.equal(masks, expected_masks(logits))
    assert not masks[1].any() and masks.any()


def test_threshold_masks_of_half_precision_logits_upsample_in_float32():
    logits = torch.randn(K, 6, 8, generator=torch.Generator().manual_seed(1)).to(torch.bfloat16)
    assert torch.equal(threshold_masks(logits, H, W), expected_masks(logits.float()))


def test_threshold_masks_of_a_portrait_image():
    logits = torch.randn(K, 8, 6, generator=torch.Generator().manual_seed(2)) * 3
    masks = threshold_masks(logits, W, H)
    assert masks.shape == (K, W, H)
    assert torch.equal(masks, expected_masks(logits, W, H))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_threshold_masks_of_cuda_logits_come_back_to_the_host():
    logits = torch.randn(K, 6, 8, generator=torch.Generator().manual_seed(3)) * 3
    logits[1] = 0.0
    masks = threshold_masks(logits.cuda(), H, W)
    assert masks.device.type == "cpu" and masks.dtype == torch.bool
    # Upsampled on the GPU as well: its rounding may differ from the CPU's near 0.5.
    assert torch.equal(masks, expected_masks(logits.cuda()).cpu())
    assert not masks[1].any()
