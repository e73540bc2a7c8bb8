"""Box conversions: SeqRank's (cx, cy, h, w) boxes and the GT boxes of binary masks."""

import pytest
import torch

from seqrank.modeling.box_ops import masks_to_unit_boxes, xyhw_to_xyxy, xyxy_to_xyhw


def test_xyhw_to_xyxy_height_comes_before_width():
    boxes = torch.tensor([[0.5, 0.4, 0.2, 0.6], [0.25, 0.75, 0.5, 0.1]])  # cx, cy, h, w
    expected = torch.tensor([[0.2, 0.3, 0.8, 0.5], [0.2, 0.5, 0.3, 1.0]])
    torch.testing.assert_close(xyhw_to_xyxy(boxes), expected, rtol=0, atol=1e-7)


def test_xyxy_to_xyhw_height_comes_before_width():
    boxes = torch.tensor([[0.2, 0.3, 0.8, 0.5], [0.0, 0.5, 0.25, 1.0]])  # x1, y1, x2, y2
    expected = torch.tensor([[0.5, 0.4, 0.2, 0.6], [0.125, 0.75, 0.5, 0.25]])
    torch.testing.assert_close(xyxy_to_xyhw(boxes), expected, rtol=0, atol=1e-7)


def test_conversions_invert_each_other_on_any_leading_shape():
    boxes = torch.rand(2, 3, 4, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(xyxy_to_xyhw(xyhw_to_xyxy(boxes)), boxes, rtol=0, atol=1e-6)
    assert xyhw_to_xyxy(boxes).shape == (2, 3, 4)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_masks_to_unit_boxes_uses_inclusive_pixel_indices(dtype):
    masks = torch.zeros(5, 4, 8, dtype=dtype)
    masks[0, 1:3, 2:5] = 1  # rows 1-2, columns 2-4
    masks[1, 0, 7] = 1  # one pixel in the top right corner
    masks[2] = 1  # the whole map
    masks[3, 0, 0] = 1  # one pixel in the top left corner
    masks[4, 3, 0] = 1  # one pixel in the bottom left corner
    boxes = masks_to_unit_boxes(masks)
    # x / W and y / H of the first and last pixel (so a full map ends at (W-1)/W, (H-1)/H).
    expected = torch.tensor(
        [
            [2 / 8, 1 / 4, 4 / 8, 2 / 4],
            [7 / 8, 0.0, 7 / 8, 0.0],
            [0.0, 0.0, 7 / 8, 3 / 4],
            [0.0, 0.0, 0.0, 0.0],
            [0.0, 3 / 4, 0.0, 3 / 4],
        ],
        dtype=dtype,
    )
    torch.testing.assert_close(boxes, expected, rtol=0, atol=0)
    assert boxes.dtype == dtype


def test_masks_to_unit_boxes_equals_torchvision_divided_by_the_size():
    from torchvision.ops import masks_to_boxes

    generator = torch.Generator().manual_seed(1)
    masks = (torch.rand(5, 9, 13, generator=generator) > 0.8).float()
    expected = masks_to_boxes(masks) / torch.tensor([13.0, 9.0, 13.0, 9.0])
    torch.testing.assert_close(masks_to_unit_boxes(masks), expected, rtol=0, atol=1e-7)


def test_masks_to_unit_boxes_empty_inputs():
    masks = torch.zeros(2, 5, 6)
    masks[1, 4, 5] = 1
    boxes = masks_to_unit_boxes(masks)
    torch.testing.assert_close(boxes[0], torch.zeros(4), rtol=0, atol=0)  # empty mask
    torch.testing.assert_close(boxes[1], torch.tensor([5 / 6, 4 / 5, 5 / 6, 4 / 5]))
    assert masks_to_unit_boxes(torch.zeros(0, 5, 6)).shape == (0, 4)


@pytest.mark.parametrize("value", [0.5, 2.0])
def test_masks_to_unit_boxes_counts_every_positive_value(value):
    masks = torch.zeros(1, 4, 4)
    masks[0, 1, 2] = value
    torch.testing.assert_close(masks_to_unit_boxes(masks), torch.tensor([[0.5, 0.25, 0.5, 0.25]]))


def test_masks_to_unit_boxes_keep_the_masks_device():
    # The meta device stands in for a GPU: a tensor made on the CPU inside fails to mix with it.
    boxes = masks_to_unit_boxes(torch.zeros(3, 5, 7, device="meta"))
    assert boxes.device.type == "meta" and boxes.shape == (3, 4)
