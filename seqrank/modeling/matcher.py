"""Hungarian matching of queries to GT objects on sampled points.

Letters: Q = queries, K = GT objects of one image, h x w = logit size, S = GT mask size.
"""

import numpy as np
import scipy.optimize
import torch

from .losses import in_float32, mask_cost_matrix
from .point_sampling import draw_points, sample_logits

__all__ = ["match_cost", "match_image"]

# Replaces NaN / infinite costs. Any finite value does: such costs come from a diverged model,
# whose losses are not finite either.
NON_FINITE_COST = 1e6


@torch.no_grad()
@in_float32
def match_cost(pred_masks, pred_scores, gt_masks, num_points, ce_weight, dice_weight):
    """The ``Q x K`` matching cost of one image, in float32 whatever the autocast context.

    Args:
        pred_masks: ``Q x h x w`` logits; pred_scores: ``Q x 1`` objectness logits;
        gt_masks: ``K x S_h x S_w`` {0,1} (K >= 1).
    Returns:
        The mask loss on points (drawn separately from the loss) minus the objectness
        probability; CLS_COST is not applied here (as the original).
    """
    size = gt_masks.shape[-2:]
    rows, cols = draw_points(size[0], size[1], num_points, gt_masks.device)
    pred = sample_logits(pred_masks.float(), rows, cols, size)
    tgt = gt_masks[:, rows, cols].float()
    cost = mask_cost_matrix(pred, tgt, ce_weight, dice_weight) - pred_scores.float().sigmoid()
    # A diverged model's NaN logits must reach the losses, where the trainer's non-finite-loss
    # check names the iteration, instead of stopping scipy ("invalid numeric entries").
    return torch.nan_to_num(
        cost, nan=NON_FINITE_COST, posinf=NON_FINITE_COST, neginf=-NON_FINITE_COST
    )


def match_image(pred_masks, pred_scores, gt_masks, num_points, ce_weight, dice_weight):
    """Match the queries of one image to its GT objects (arguments as :func:`match_cost`).

    Returns:
        (query indices, target indices) as int64 numpy arrays, ascending in query index.
    """
    if gt_masks.shape[0] == 0:
        empty = np.zeros((0,), dtype=np.int64)
        return empty, empty
    cost = match_cost(pred_masks, pred_scores, gt_masks, num_points, ce_weight, dice_weight)
    qi, ti = scipy.optimize.linear_sum_assignment(cost.cpu().numpy())
    return qi.astype(np.int64), ti.astype(np.int64)
