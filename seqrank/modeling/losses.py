"""SeqRank losses (mask, box, objectness, sequential saliency) and the pairwise mask cost.

Letters: B = batch, Q = queries, K = GT objects of one image, M = matched pairs, P = points.

Every loss and cost here runs in float32 whatever the autocast context (:func:`in_float32`): sums
over thousands of points overflow float16 (12544 logits of +12 sum to about 1.5e5 > 65504) and
lose matcher decisions in bfloat16. The original computes them elementwise in float32 under
autocast; outside autocast nothing changes.
"""

import functools

import torch
import torch.nn.functional as F
from torchvision.ops import generalized_box_iou_loss

from .box_ops import xyhw_to_xyxy, xyxy_to_xyhw

__all__ = [
    "box_loss_per_pair",
    "in_float32",
    "mask_cost_matrix",
    "mask_loss_per_pair",
    "objectness_loss",
    "saliency_step_loss",
]


def in_float32(fn):
    """Decorator: run ``fn`` with autocast off and its half-precision tensor arguments in float32.

    float16 / bfloat16 tensors among the positional and keyword arguments are cast to float32
    (others are left alone); autocast is disabled for the device type of the first tensor
    argument. Without autocast and with float32 inputs this is the identity, so fp32 results are
    unchanged bit for bit.
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        args = [_as_float32(a) for a in args]
        kwargs = {k: _as_float32(v) for k, v in kwargs.items()}
        tensors = [a for a in list(args) + list(kwargs.values()) if torch.is_tensor(a)]
        device_type = tensors[0].device.type if tensors else "cpu"
        with torch.autocast(device_type, enabled=False):
            return fn(*args, **kwargs)

    return wrapper


def _as_float32(value):
    if torch.is_tensor(value) and value.dtype in (torch.float16, torch.bfloat16):
        return value.float()
    return value


@in_float32
def mask_loss_per_pair(pred_logits, targets, ce_weight, dice_weight):
    """BCE + dice for aligned pairs.

    Args:
        pred_logits, targets: ``M x P``.
    Returns:
        ``M``: ``ce_weight * mean BCE + dice_weight * (1 - dice)`` with the +1 smoothing of the
        original.
    """
    ce = F.binary_cross_entropy_with_logits(pred_logits, targets, reduction="none").mean(dim=1)
    prob = pred_logits.sigmoid()
    dice = 1.0 - (2.0 * (prob * targets).sum(1) + 1.0) / (prob.sum(1) + targets.sum(1) + 1.0)
    return ce * ce_weight + dice * dice_weight


@in_float32
def mask_cost_matrix(pred_logits, targets, ce_weight, dice_weight):
    """The same loss for every (query, target) pair at once.

    Args:
        pred_logits: ``Q x P``; targets: ``K x P``.
    Returns:
        ``Q x K``, equal to ``mask_loss_per_pair`` on each pair; the BCE is split into its
        target-independent part (softplus) and a matrix product, so no ``Q*K x P`` tensor exists.
    """
    num_points = pred_logits.shape[1]
    ce = (F.softplus(pred_logits).sum(1, keepdim=True) - pred_logits @ targets.T) / num_points
    prob = pred_logits.sigmoid()
    numer = 2.0 * (prob @ targets.T) + 1.0
    denom = prob.sum(1, keepdim=True) + targets.sum(1)[None, :] + 1.0
    return ce * ce_weight + (1.0 - numer / denom) * dice_weight


@in_float32
def box_loss_per_pair(pred_xyhw, gt_xyxy, l1_weight, giou_weight):
    """L1 in (cx, cy, h, w) space plus GIoU loss (1 - GIoU) on xyxy, per pair.

    Args:
        pred_xyhw: ``M x 4`` in [0, 1]; gt_xyxy: ``M x 4`` in [0, 1].
    Returns:
        ``M``.
    """
    pred_xyxy = xyhw_to_xyxy(pred_xyhw)
    l1 = (xyxy_to_xyhw(pred_xyxy) - xyxy_to_xyhw(gt_xyxy)).abs().mean(dim=1)
    giou = generalized_box_iou_loss(pred_xyxy, gt_xyxy, reduction="none")
    return l1 * l1_weight + giou * giou_weight


@in_float32
def objectness_loss(logits, positive, pos_weight, neg_weight):
    """Weighted BCE over all ``B x Q x 1`` objectness logits (mean)."""
    pos = positive.to(logits.dtype)
    loss_pos = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits), reduction="none")
    loss_neg = F.binary_cross_entropy_with_logits(
        logits, torch.zeros_like(logits), reduction="none"
    )
    return (pos * loss_pos * pos_weight + (1.0 - pos) * loss_neg * neg_weight).mean()


@in_float32
def saliency_step_loss(logits, answer):
    """BCE of one ranking step: ``answer`` (``B x Q x 1`` {0,1}) marks the query to pick next.

    NaN entries are zeroed as in the original, then the mean over ``B x Q`` is returned.
    """
    ans = answer.to(logits.dtype)
    loss_pos = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits), reduction="none")
    loss_neg = F.binary_cross_entropy_with_logits(
        logits, torch.zeros_like(logits), reduction="none"
    )
    err = ans * loss_pos + (1.0 - ans) * loss_neg
    return torch.nan_to_num(err, nan=0.0).mean()
