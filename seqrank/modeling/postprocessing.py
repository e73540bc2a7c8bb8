"""Per-image results of the ranking loop: thresholded full-size masks and pixel boxes.

Letters: K = ranked objects of an image, Q = queries, h x w = mask-logit size, H x W = original
image size.
"""

import torch
import torch.nn.functional as F

from .box_ops import xyhw_to_xyxy
from .losses import in_float32

__all__ = ["MASK_CHUNK_VALUES", "empty_result", "image_result", "threshold_masks"]

# Upsampled float32 mask values alive at once when the ranked masks are thresholded (128 MiB).
MASK_CHUNK_VALUES = 1 << 25


@in_float32
def threshold_masks(mask_logits, height, width):
    """``K x h x w`` logits -> ``K x H x W`` bool host tensor: bilinear upsampling, sigmoid > 0.5.

    The thresholding runs on the logits' device, in chunks of at most ``MASK_CHUNK_VALUES``
    upsampled values, and only the booleans are copied to the host (a quarter of the float32
    bytes). The values equal the original's ``(sigmoid(upsample(logits)) > 0.5).float()``.
    It runs in float32 whatever the autocast context (reduced-precision inference).
    """
    k = mask_logits.shape[0]
    masks = torch.empty((k, height, width), dtype=torch.bool)
    step = max(1, MASK_CHUNK_VALUES // max(1, height * width))
    for start in range(0, k, step):
        chunk = F.interpolate(
            mask_logits[start : start + step].float()[None], size=(height, width), mode="bilinear"
        )[0].sigmoid_()
        if chunk.device == masks.device:
            torch.gt(chunk, 0.5, out=masks[start : start + step])
        else:
            masks[start : start + step] = chunk > 0.5
    return masks


def empty_result(inputs, index):
    """The result dict of an image with nothing ranked (``index``: its place in the batch, the
    name when the input has no ``image_name``)."""
    return {
        "image_name": inputs.get("image_name", index),
        "masks": [],
        "bboxes": [],
        "scores": [],
        "saliency": [],
        "num": 0,
    }


def image_result(inputs, index, mask_logits, box_logits, picks):
    """Result dict of one image from its K picks ``(query, objectness, saliency)``;
    ``mask_logits``: Q x h x w, ``box_logits``: Q x 4 (cx, cy, h, w logits)."""
    result = empty_result(inputs, index)
    if not picks:
        return result
    height, width = int(inputs["height"]), int(inputs["width"])
    query = torch.tensor([p[0] for p in picks], device=mask_logits.device)
    masks = threshold_masks(mask_logits[query], height, width).numpy()
    boxes = xyhw_to_xyxy(box_logits[query].float().sigmoid())
    boxes = boxes * boxes.new_tensor([width, height, width, height])
    result.update(
        masks=list(masks),
        bboxes=boxes.tolist(),
        scores=[p[1] for p in picks],
        saliency=[p[2] for p in picks],
        num=len(picks),
    )
    return result
