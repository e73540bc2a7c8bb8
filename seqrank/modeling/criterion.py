"""SeqRank's training objective: matching, per-pair mask and box losses, objectness and the
teacher-forced sequence loss (docs/ARCHITECTURE.md, "Training objective").

Letters: B = batch, Q = queries, C = embedding dim, h x w = mask-logit size, S x S = GT mask size,
K = GT objects of an image, M = matched pairs, P = sampled points.
"""

import numpy as np
import torch
from detectron2.config import configurable
from torch import nn

from .box_ops import masks_to_unit_boxes
from .losses import (
    box_loss_per_pair,
    in_float32,
    mask_loss_per_pair,
    objectness_loss,
    saliency_step_loss,
)
from .matcher import match_image
from .point_sampling import draw_points, sample_logits

__all__ = ["SeqRankCriterion"]


@in_float32
def _point_mask_loss(pred_masks, targets, rows, cols, size, ce_weight, dice_weight):
    """Mean mask loss of M matched pairs on P points, sampled in float32 under any autocast.

    ``pred_masks``: M x h x w logits; ``targets``: M x P GT values at (rows, cols) of the S grid.
    """
    logits = sample_logits(pred_masks, rows, cols, size)
    return mask_loss_per_pair(logits, targets, ce_weight, dice_weight).mean()


class SeqRankCriterion(nn.Module):
    """Computes the loss dict of one batch (as Mask2Former's ``SetCriterion``).

    It holds no parameters or buffers, so it adds nothing to the model's state dict. The ranking
    module is passed to each call (the sequence loss runs it teacher-forced) rather than held, for
    the same reason.
    """

    @configurable
    def __init__(self, *, weights, num_points, aux_enabled):
        """``weights``: mask_ce, mask_dice, bbox_l1, bbox_giou (matching costs and loss weights),
        obj_pos, obj_neg, cls, sal, aux; ``num_points``: P; ``aux_enabled``: add the losses of the
        foveal head's intermediate predictions."""
        super().__init__()
        self.weights = dict(weights)
        self.num_points = num_points
        self.aux_enabled = aux_enabled

    @classmethod
    def from_config(cls, cfg):
        loss = cfg.LOSS
        return {
            "weights": {
                "mask_ce": loss.MASK_CE_COST,
                "mask_dice": loss.MASK_DICE_COST,
                "bbox_l1": loss.BBOX_L1_COST,
                "bbox_giou": loss.BBOX_GIOU_COST,
                "obj_pos": loss.OBJ_POS,
                "obj_neg": loss.OBJ_NEG,
                "cls": loss.CLS_COST,
                "sal": loss.SAL_COST,
                "aux": loss.AUX_WEIGHT,
            },
            "num_points": loss.NUM_POINTS,
            "aux_enabled": loss.AUX != "disable",
        }

    def forward(self, encoded, gt_masks, gaze_shift):
        """Loss dict of a batch.

        Args:
            encoded: the model's trunk outputs (``q, qpe, z, zpe, out, aux``; ``SeqRank.encode``).
            gt_masks: B float tensors ``K x S x S`` on the model's device, in rank order.
            gaze_shift: the ranking module, ``(q, z, qpe, zpe, q_vis) -> (B x Q x 1, aux)``.
        """
        q, qpe, z, zpe, out, aux = encoded
        size = tuple(out["masks"].shape[-2:]) if not gt_masks else tuple(gt_masks[0].shape[-2:])
        gt_boxes = [masks_to_unit_boxes(m) for m in gt_masks]
        indices = self.match(out, gt_masks)
        bi, qi, ti = indices

        q_corr = torch.zeros_like(out["scores"])
        q_corr[bi, qi, 0] = (ti + 1).to(q_corr.dtype)
        w = self.weights
        mask_loss, bbox_loss = self.pair_losses(out, gt_masks, gt_boxes, indices, size)
        aux_mask = aux_bbox = out["scores"].float().sum() * 0.0
        if self.aux_enabled and aux:
            for pred in aux:
                m, b = self.pair_losses(pred, gt_masks, gt_boxes, indices, size)
                aux_mask, aux_bbox = aux_mask + m, aux_bbox + b
        obj_loss = objectness_loss(out["scores"], q_corr > 0.5, w["obj_pos"], w["obj_neg"])
        n_max = max(len(m) for m in gt_masks)
        sal_loss = self.sequence_loss(gaze_shift, q, qpe, z, zpe, q_corr, n_max)
        return {
            "mask_loss": mask_loss,
            "bbox_loss": bbox_loss,
            "obj_loss": obj_loss * w["cls"],
            "sal_loss": sal_loss * w["sal"],
            "aux_mask_loss": aux_mask * w["aux"],
            "aux_bbox_loss": aux_bbox * w["aux"],
        }

    def match(self, out, gt_masks):
        """Hungarian matching per image -> ``(batch, query, target)`` index tensors (M each)."""
        w = self.weights
        device = out["scores"].device
        parts = []
        for b, masks in enumerate(gt_masks):
            qi, ti = match_image(
                out["masks"][b],
                out["scores"][b],
                masks,
                self.num_points,
                w["mask_ce"],
                w["mask_dice"],
            )
            parts.append((np.full_like(qi, b), qi, ti))
        bi, qi, ti = (torch.as_tensor(np.concatenate(p), device=device) for p in zip(*parts))
        return bi, qi, ti

    def pair_losses(self, pred, gt_masks, gt_boxes, indices, size):
        """Mean mask and box losses over matched pairs (zero, with a graph, when none).

        ``pred``: ``{"masks": B x Q x h x w, "bboxes": B x Q x 4}`` logits; ``gt_boxes``: B tensors
        ``K x 4`` (unit cx, cy, h, w); ``size``: the GT mask size (S, S).
        """
        bi, qi, ti = indices
        zero = pred["masks"].float().sum() * 0.0 + pred["bboxes"].float().sum() * 0.0
        if bi.numel() == 0:
            return zero, zero
        w = self.weights
        rows, cols = draw_points(size[0], size[1], self.num_points, pred["masks"].device)
        pairs = list(zip(bi.tolist(), ti.tolist()))
        targets = torch.stack([gt_masks[b][t][rows, cols] for b, t in pairs])
        mask_loss = _point_mask_loss(
            pred["masks"][bi, qi], targets, rows, cols, size, w["mask_ce"], w["mask_dice"]
        )
        boxes = torch.stack([gt_boxes[b][t] for b, t in pairs])
        pred_boxes = pred["bboxes"][bi, qi].float().sigmoid()
        bbox_loss = box_loss_per_pair(pred_boxes, boxes, w["bbox_l1"], w["bbox_giou"]).mean()
        return mask_loss, bbox_loss

    @staticmethod
    def sequence_loss(gaze_shift, q, qpe, z, zpe, q_corr, n_max):
        """Teacher-forced ranking: at step i the first i GT objects are given, the (i+1)-th is asked
        for; the extra step i = n_max teaches the module to stop. ``q_corr``: B x Q x 1, the GT
        rank (1-based) of each matched query, 0 elsewhere."""
        loss = q.float().sum() * 0.0
        for i in range(n_max + 1):
            q_vis = q_corr * (q_corr <= i).to(q_corr.dtype)
            answer = q_corr == i + 1
            logits = gaze_shift(q, z, qpe, zpe, q_vis)[0]
            loss = loss + saliency_step_loss(logits, answer)
        return loss
