"""Box conversions. SeqRank's "xyhw" boxes are ``(cx, cy, h, w)``: height comes before width."""

import torch


def xyhw_to_xyxy(boxes):
    """``... x 4`` (cx, cy, h, w) -> ``... x 4`` (x1, y1, x2, y2)."""
    cx, cy, h, w = boxes.unbind(-1)
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)


def xyxy_to_xyhw(boxes):
    """``... x 4`` (x1, y1, x2, y2) -> ``... x 4`` (cx, cy, h, w)."""
    x1, y1, x2, y2 = boxes.unbind(-1)
    return torch.stack([(x1 + x2) / 2, (y1 + y2) / 2, y2 - y1, x2 - x1], dim=-1)


def masks_to_unit_boxes(masks):
    """GT boxes of binary masks, normalised to [0, 1] (xyxy).

    Args:
        masks: ``K x S_h x S_w`` {0, 1}.
    Returns:
        ``K x 4``. Uses inclusive max pixel indices divided by the map size, as the original
        (boxes come out about one pixel small). Empty masks give an all-zero box instead of failing.
    """
    k, h, w = masks.shape
    boxes = masks.new_zeros((k, 4))
    if k == 0:
        return boxes
    fg = masks > 0
    rows_any = fg.any(dim=2)
    cols_any = fg.any(dim=1)
    nonempty = rows_any.any(dim=1)
    ar_h = torch.arange(h, device=masks.device, dtype=masks.dtype)
    ar_w = torch.arange(w, device=masks.device, dtype=masks.dtype)
    big = float(max(h, w) + 1)
    y1 = torch.where(rows_any, ar_h, big).amin(dim=1)
    y2 = torch.where(rows_any, ar_h, -1.0).amax(dim=1)
    x1 = torch.where(cols_any, ar_w, big).amin(dim=1)
    x2 = torch.where(cols_any, ar_w, -1.0).amax(dim=1)
    scale = masks.new_tensor([w, h, w, h])
    boxes = torch.stack([x1, y1, x2, y2], dim=1) / scale
    boxes = torch.where(nonempty[:, None], boxes, torch.zeros_like(boxes))
    return boxes.clamp(0.0, 1.0)
