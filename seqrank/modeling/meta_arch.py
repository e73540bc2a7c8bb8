"""The SeqRank meta-architecture: foveal segmentation + sequential (peripheral) ranking.

Letters: B = batch, Q = queries, C = embedding dim, S = input size (square), h x w = mask-logit
size (res2), K = GT objects of an image, H x W = original image size.
"""

import logging

import numpy as np
import torch
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY, build_backbone
from torch import nn

from .box_ops import masks_to_unit_boxes, xyhw_to_xyxy
from .losses import (
    box_loss_per_pair,
    in_float32,
    mask_loss_per_pair,
    objectness_loss,
    saliency_step_loss,
)
from .matcher import match_image
from .point_sampling import draw_points, sample_logits
from .registry import build_gaze_shift, build_instance_seg, build_neck, build_position_encoding

__all__ = ["SeqRank"]

logger = logging.getLogger(__name__)

# The original hard-codes both stop thresholds; TEST.THRESHOLD is only used by the metrics.
STOP_THRESHOLD = 0.001
# Upsampled float32 mask values alive at once when the ranked masks are thresholded (128 MiB).
MASK_CHUNK_VALUES = 1 << 25


def _tokens(x):
    """``B x C x h x w`` -> ``B x hw x C`` (row-major)."""
    return x.flatten(2).transpose(1, 2)


def to_device(tensors, device):
    """Host tensors -> the same tensors on ``device`` (views of one flat buffer on CUDA).

    On CUDA they are packed into one pinned buffer and copied with one non-blocking transfer
    (the caching host allocator keeps the buffer until the copy is done); elsewhere each is moved
    as is.
    """
    device = torch.device(device)
    if device.type != "cuda" or not tensors or any(t.device.type != "cpu" for t in tensors):
        return [t.to(device) for t in tensors]
    dtype = tensors[0].dtype
    flat = torch.empty(sum(t.numel() for t in tensors), dtype=dtype, pin_memory=True)
    torch.cat([t.reshape(-1).to(dtype) for t in tensors], out=flat)
    flat = flat.to(device, non_blocking=True)
    sizes = [t.numel() for t in tensors]
    return [part.view(t.shape) for part, t in zip(flat.split(sizes), tensors)]


def threshold_masks(mask_logits, height, width):
    """``K x h x w`` logits -> ``K x H x W`` bool host tensor: bilinear upsampling, sigmoid > 0.5.

    The thresholding runs on the logits' device, in chunks of at most ``MASK_CHUNK_VALUES``
    upsampled values, and only the booleans are copied to the host (a quarter of the float32
    bytes). The values equal the original's ``(sigmoid(upsample(logits)) > 0.5).float()``.
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


@in_float32
def _point_mask_loss(pred_masks, targets, rows, cols, size, ce_weight, dice_weight):
    """Mean mask loss of M matched pairs on P points, sampled in float32 under any autocast.

    ``pred_masks``: M x h x w logits; ``targets``: M x P GT values at (rows, cols) of the S grid.
    """
    logits = sample_logits(pred_masks, rows, cols, size)
    return mask_loss_per_pair(logits, targets, ce_weight, dice_weight).mean()


@META_ARCH_REGISTRY.register()
class SeqRank(nn.Module):
    """Detects salient objects with the foveal head and ranks them one at a time.

    Training returns the loss dict of ARCHITECTURE.md §9.1; inference returns, per image, a dict
    ``{image_name, masks: [H x W bool], bboxes: [[x1, y1, x2, y2]], scores, saliency,
    num}`` in predicted rank order.

    ``fast_inference`` (default on; :meth:`set_fast_inference`) selects the optimised inference
    path: fused attention (SDPA) in eval mode, ``torch.inference_mode``, ranking steps computed
    only for the images that have not stopped, and one mask upsampling per image. It gives the
    same rankings as the reference path (the original's loop, kept for comparison) up to float
    rounding. Training always uses the plain attention maths.
    """

    @configurable
    def __init__(
        self,
        *,
        backbone,
        neck,
        instance_seg,
        gaze_shift,
        pe_layer,
        pixel_mean,
        pixel_std,
        loss_weights,
        num_points,
        aux_enabled,
        mask_key="res2",
        gaze_key="res5",
        exclude_ranked=False,
        fast_inference=True,
    ):
        super().__init__()
        self.backbone = backbone
        self.neck = neck
        self.instance_seg = instance_seg
        self.gaze_shift = gaze_shift
        self.pe_layer = pe_layer
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(1, -1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(1, -1, 1, 1), False)
        self.loss_weights = dict(loss_weights)
        self.num_points = num_points
        self.aux_enabled = aux_enabled
        self.mask_key = mask_key
        self.gaze_key = gaze_key
        self.exclude_ranked = exclude_ranked
        self.set_fast_inference(fast_inference)

    @classmethod
    def from_config(cls, cfg):
        loss = cfg.LOSS
        return {
            "backbone": build_backbone(cfg),
            "neck": build_neck(cfg),
            "instance_seg": build_instance_seg(cfg),
            "gaze_shift": build_gaze_shift(cfg),
            "pe_layer": build_position_encoding(cfg),
            "pixel_mean": list(cfg.MODEL.PIXEL_MEAN),
            "pixel_std": list(cfg.MODEL.PIXEL_STD),
            "loss_weights": {
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
            "mask_key": cfg.MODEL.SIS_HEAD.MASK_KEY,
            "gaze_key": cfg.MODEL.GAZE_SHIFT_HEAD.KEY,
            "exclude_ranked": cfg.MODEL.SEQRANK.EXCLUDE_RANKED,
            "fast_inference": cfg.MODEL.SEQRANK.get("FAST_INFERENCE", True),
        }

    def set_fast_inference(self, enabled=True, fused_attention=None, cache_tokens=None):
        """Switch between the optimised and the reference inference path; returns ``self``.

        ``fused_attention`` (SDPA in eval mode) and ``cache_tokens`` (the ranking blocks'
        projections of the image tokens computed once per image, not once per step) default to
        ``enabled``; set them apart for ablations, e.g. to compare the ranking loops on
        bit-identical features.
        """
        self.fast_inference = bool(enabled)
        self.fused_attention = self.fast_inference if fused_attention is None else fused_attention
        self.cache_tokens = self.fast_inference if cache_tokens is None else cache_tokens
        self._select_attention()
        return self

    def train(self, mode=True):
        super().train(mode)
        self._select_attention()
        return self

    def _select_attention(self):
        # Every attention module with a fused path (``use_sdpa``) takes it in fast eval only.
        fused = bool(self.fused_attention) and not self.training
        for module in self.modules():
            if hasattr(module, "use_sdpa"):
                module.use_sdpa = fused

    @property
    def device(self):
        return self.pixel_mean.device

    def encode(self, batched_inputs):
        """Shared trunk: normalised images -> neck features, PEs and the foveal head outputs."""
        images = torch.stack(to_device([x["image"] for x in batched_inputs], self.device))
        images = (images - self.pixel_mean) / self.pixel_std
        feats = self.neck(self.backbone(images))
        feats_pe = {k: self.pe_layer(v) for k, v in feats.items()}
        q, qpe, out, aux = self.instance_seg(feats, feats_pe)
        z = _tokens(feats[self.gaze_key])
        zpe = _tokens(feats_pe[self.gaze_key])
        return q, qpe, z, zpe, out, aux

    def forward(self, batched_inputs):
        if self.training:
            return self.losses(batched_inputs, *self.encode(batched_inputs))
        if self.fast_inference:
            with torch.inference_mode():
                return self.rank(batched_inputs, *self.encode(batched_inputs)[:-1])
        return self.rank(batched_inputs, *self.encode(batched_inputs)[:-1])

    # ------------------------------------------------------------------ training
    def losses(self, batched_inputs, q, qpe, z, zpe, out, aux):
        gt_masks = [m.float() for m in to_device([x["masks"] for x in batched_inputs], self.device)]
        size = tuple(out["masks"].shape[-2:]) if not gt_masks else tuple(gt_masks[0].shape[-2:])
        gt_boxes = [masks_to_unit_boxes(m) for m in gt_masks]
        bi, qi, ti = self._match(out, gt_masks)

        q_corr = torch.zeros_like(out["scores"])
        q_corr[bi, qi, 0] = (ti + 1).to(q_corr.dtype)
        w = self.loss_weights
        mask_loss, bbox_loss = self._pair_losses(out, gt_masks, gt_boxes, (bi, qi, ti), size)
        aux_mask = aux_bbox = out["scores"].float().sum() * 0.0
        if self.aux_enabled and aux:
            for pred in aux:
                m, b = self._pair_losses(pred, gt_masks, gt_boxes, (bi, qi, ti), size)
                aux_mask, aux_bbox = aux_mask + m, aux_bbox + b
        obj_loss = objectness_loss(out["scores"], q_corr > 0.5, w["obj_pos"], w["obj_neg"])
        sal_loss = self._sequence_loss(q, qpe, z, zpe, q_corr, max(len(m) for m in gt_masks))
        return {
            "mask_loss": mask_loss,
            "bbox_loss": bbox_loss,
            "obj_loss": obj_loss * w["cls"],
            "sal_loss": sal_loss * w["sal"],
            "aux_mask_loss": aux_mask * w["aux"],
            "aux_bbox_loss": aux_bbox * w["aux"],
        }

    def _match(self, out, gt_masks):
        w = self.loss_weights
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
        bi, qi, ti = (torch.as_tensor(np.concatenate(p), device=self.device) for p in zip(*parts))
        return bi, qi, ti

    def _pair_losses(self, pred, gt_masks, gt_boxes, indices, size):
        """Mean mask and box losses over matched pairs (zero, with a graph, when none)."""
        bi, qi, ti = indices
        zero = pred["masks"].float().sum() * 0.0 + pred["bboxes"].float().sum() * 0.0
        if bi.numel() == 0:
            return zero, zero
        w = self.loss_weights
        rows, cols = draw_points(size[0], size[1], self.num_points, self.device)
        targets = torch.stack(
            [gt_masks[b][t][rows, cols] for b, t in zip(bi.tolist(), ti.tolist())]
        )
        mask_loss = _point_mask_loss(
            pred["masks"][bi, qi], targets, rows, cols, size, w["mask_ce"], w["mask_dice"]
        )
        boxes = torch.stack([gt_boxes[b][t] for b, t in zip(bi.tolist(), ti.tolist())])
        pred_boxes = pred["bboxes"][bi, qi].float().sigmoid()
        bbox_loss = box_loss_per_pair(pred_boxes, boxes, w["bbox_l1"], w["bbox_giou"]).mean()
        return mask_loss, bbox_loss

    def _sequence_loss(self, q, qpe, z, zpe, q_corr, n_max):
        """Teacher-forced ranking: at step i the first i GT objects are given, the (i+1)-th is asked
        for; the extra step i = n_max teaches the module to stop."""
        loss = q.float().sum() * 0.0
        for i in range(n_max + 1):
            q_vis = q_corr * (q_corr <= i).to(q_corr.dtype)
            answer = q_corr == i + 1
            logits = self.gaze_shift(q, z, qpe, zpe, q_vis)[0]
            loss = loss + saliency_step_loss(logits, answer)
        return loss

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def rank(self, batched_inputs, q, qpe, z, zpe, out):
        """Sequential inference (ARCHITECTURE.md §9.2): up to Q ranking steps, each image stops
        permanently at its first step whose objectness or saliency falls below 0.001."""
        if self.fast_inference:
            return self._rank_active(batched_inputs, q, qpe, z, zpe, out)
        return self._rank_reference(batched_inputs, q, qpe, z, zpe, out)

    def _step_logits(self, q, qpe, z, zpe, q_vis, token_cache=None):
        """B x Q saliency logits of one ranking step (ranked queries masked if asked to)."""
        extra = {} if token_cache is None else {"token_cache": token_cache}
        logits = self.gaze_shift(q, z, qpe, zpe, q_vis, **extra)[..., 0].float()
        if self.exclude_ranked:
            logits = logits.masked_fill(q_vis[..., 0] > 0.5, float("-inf"))
        return logits

    def _rank_reference(self, batched_inputs, q, qpe, z, zpe, out):
        """The original loop: every image of the batch steps until all have stopped."""
        bsz, num_q = out["scores"].shape[:2]
        pred_masks = out["masks"].float()
        pred_boxes = out["bboxes"].float().sigmoid()
        obj_probs = out["scores"].float().sigmoid()[..., 0]
        results = [self._empty_result(x, b) for b, x in enumerate(batched_inputs)]
        q_vis = torch.zeros_like(out["scores"], dtype=torch.float32)
        active = torch.ones(bsz, dtype=torch.bool, device=self.device)
        for step in range(num_q):
            logits = self._step_logits(q, qpe, z, zpe, q_vis)
            pick = logits.argmax(dim=1)
            batch_idx = torch.arange(bsz, device=self.device)
            q_vis[batch_idx, pick, 0] = float(step + 1)
            sal = logits[batch_idx, pick].sigmoid()
            obj = obj_probs[batch_idx, pick]
            active &= (obj >= STOP_THRESHOLD) & (sal >= STOP_THRESHOLD)
            for b in torch.nonzero(active).flatten().tolist():
                self._append(
                    results[b],
                    batched_inputs[b],
                    pred_masks[b, pick[b]],
                    pred_boxes[b, pick[b]],
                    obj[b],
                    sal[b],
                )
            if not bool(active.any()):
                break
        return results

    def _rank_active(self, batched_inputs, q, qpe, z, zpe, out):
        """Same decisions as :meth:`_rank_reference`, but a stopped image leaves the batch (its
        rows of every per-image tensor are dropped), each step reads the device once (picks,
        scores and stop flags in one copy) and each image's masks are upsampled at the end."""
        bsz, num_q = out["scores"].shape[:2]
        obj_probs = out["scores"].float().sigmoid()[..., 0]
        q_vis = torch.zeros_like(out["scores"], dtype=torch.float32)
        images = list(range(bsz))
        picks = [[] for _ in range(bsz)]
        cache = None
        if self.cache_tokens and hasattr(self.gaze_shift, "token_cache"):
            cache = self.gaze_shift.token_cache(z, zpe)
        for step in range(num_q):
            logits = self._step_logits(q, qpe, z, zpe, q_vis, cache)
            pick = logits.argmax(dim=1)
            rows = torch.arange(len(images), device=self.device)
            q_vis[rows, pick, 0] = float(step + 1)
            sal = logits[rows, pick].sigmoid()
            obj = obj_probs[rows, pick]
            keep = (obj >= STOP_THRESHOLD) & (sal >= STOP_THRESHOLD)
            # The step's only host sync; float64 holds the indices and float32 scores exactly.
            host = torch.stack([pick.double(), obj.double(), sal.double(), keep.double()]).cpu()
            kept = []
            for row, (p, o, s, k) in enumerate(zip(*host.tolist())):
                if k:
                    picks[images[row]].append((int(p), o, s))
                    kept.append(row)
            if len(kept) < len(images):
                if not kept:
                    break
                # The kept rows in order, found on the device (indexing with a host list syncs).
                order = torch.sort(keep.to(torch.uint8), descending=True, stable=True).indices
                order = order[: len(kept)]
                images = [images[row] for row in kept]
                q, qpe, z, zpe, q_vis, obj_probs = (
                    t[order] for t in (q, qpe, z, zpe, q_vis, obj_probs)
                )
                cache = None if cache is None else [t[order] for t in cache]
        return [
            self._result(x, b, out["masks"][b], out["bboxes"][b], picks[b])
            for b, x in enumerate(batched_inputs)
        ]

    def _result(self, inputs, index, mask_logits, box_logits, picks):
        """Result dict of one image from its K picks ``(query, objectness, saliency)``;
        ``mask_logits``: Q x h x w, ``box_logits``: Q x 4."""
        result = self._empty_result(inputs, index)
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

    @staticmethod
    def _empty_result(inputs, index):
        return {
            "image_name": inputs.get("image_name", index),
            "masks": [],
            "bboxes": [],
            "scores": [],
            "saliency": [],
            "num": 0,
        }

    @staticmethod
    def _append(result, inputs, mask_logits, box_xyhw, obj, sal):
        height, width = int(inputs["height"]), int(inputs["width"])
        result["masks"].append(threshold_masks(mask_logits[None], height, width)[0].numpy())
        scale = box_xyhw.new_tensor([width, height, width, height])
        result["bboxes"].append((xyhw_to_xyxy(box_xyhw) * scale).tolist())
        result["scores"].append(float(obj))
        result["saliency"].append(float(sal))
        result["num"] += 1
