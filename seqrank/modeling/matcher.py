"""Hungarian matching of queries to GT objects on sampled points.

Letters: Q = queries, K = GT objects of one image, h x w = logit size, S = GT mask size.
"""

import numpy as np
import scipy.optimize
import torch

from .losses import mask_cost_matrix
from .point_sampling import draw_points, sample_logits

# Replaces NaN / infinite costs. Any finite value does: such costs come from a diverged model,
# whose losses are not finite either.
NON_FINITE_COST = 1e6


@torch.no_grad()
def match_image(pred_masks, pred_scores, gt_masks, num_points, ce_weight, dice_weight):
    """Match the queries of one image to its GT objects.

    Args:
        pred_masks: ``Q x h x w`` logits; pred_scores: ``Q x 1`` objectness logits;
        gt_masks: ``K x S_h x S_w`` {0,1}.
    Returns:
        (query indices, target indices) as int64 numpy arrays, ascending in query index.
        The cost is the mask loss on points (drawn separately from the loss) minus the objectness
        probability; CLS_COST is not applied here (as the original).
    """
    num_gt = gt_masks.shape[0]
    if num_gt == 0:
        empty = np.zeros((0,), dtype=np.int64)
        return empty, empty
    size = gt_masks.shape[-2:]
    rows, cols = draw_points(size[0], size[1], num_points, gt_masks.device)
    pred = sample_logits(pred_masks.float(), rows, cols, size)
    tgt = gt_masks[:, rows, cols].float()
    cost = mask_cost_matrix(pred, tgt, ce_weight, dice_weight) - pred_scores.float().sigmoid()
    # A diverged model's NaN logits must reach the losses, where the trainer's non-finite-loss
    # check names the iteration, instead of stopping scipy ("invalid numeric entries").
    cost = torch.nan_to_num(
        cost, nan=NON_FINITE_COST, posinf=NON_FINITE_COST, neginf=-NON_FINITE_COST
    )
    qi, ti = scipy.optimize.linear_sum_assignment(cost.cpu().numpy())
    return qi.astype(np.int64), ti.astype(np.int64)
