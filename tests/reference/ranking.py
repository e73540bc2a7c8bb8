"""The original's ranking loop, kept as a test oracle for :meth:`SeqRank.rank`.

Every image of the batch steps until all have stopped; each ranked mask is upsampled as it is
picked. Letters: B = batch, Q = queries, C = embedding dim, h x w = mask-logit size, H x W =
original image size.
"""

import torch

from seqrank.modeling.box_ops import xyhw_to_xyxy
from seqrank.modeling.meta_arch import STOP_THRESHOLD
from seqrank.modeling.postprocessing import empty_result, threshold_masks

__all__ = ["append", "rank_reference", "run_reference"]


@torch.no_grad()
def rank_reference(model, batched_inputs, q, qpe, z, zpe, out):
    """The original loop on ``model``'s ranking module (no token cache); same arguments and
    results as ``model.rank``. ``q, qpe``: B x Q x C; ``z, zpe``: B x hw x C; ``out``: the
    foveal head's logits."""
    bsz, num_q = out["scores"].shape[:2]
    pred_masks = out["masks"].float()
    pred_boxes = out["bboxes"].float().sigmoid()
    obj_probs = out["scores"].float().sigmoid()[..., 0]
    results = [empty_result(x, b) for b, x in enumerate(batched_inputs)]
    q_vis = torch.zeros_like(out["scores"], dtype=torch.float32)
    active = torch.ones(bsz, dtype=torch.bool, device=q.device)
    for step in range(num_q):
        logits = model.step_logits(q, qpe, z, zpe, q_vis)
        pick = logits.argmax(dim=1)
        batch_idx = torch.arange(bsz, device=q.device)
        q_vis[batch_idx, pick, 0] = float(step + 1)
        sal = logits[batch_idx, pick].sigmoid()
        obj = obj_probs[batch_idx, pick]
        active &= (obj >= STOP_THRESHOLD) & (sal >= STOP_THRESHOLD)
        for b in torch.nonzero(active).flatten().tolist():
            append(
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


def append(result, inputs, mask_logits, box_xyhw, obj, sal):
    """Add one pick to ``result``: ``mask_logits`` h x w, ``box_xyhw`` 4 (unit cx, cy, h, w)."""
    height, width = int(inputs["height"]), int(inputs["width"])
    result["masks"].append(threshold_masks(mask_logits[None], height, width)[0].numpy())
    scale = box_xyhw.new_tensor([width, height, width, height])
    result["bboxes"].append((xyhw_to_xyxy(box_xyhw) * scale).tolist())
    result["scores"].append(float(obj))
    result["saliency"].append(float(sal))
    result["num"] += 1


def run_reference(model, batched_inputs):
    """``model(batched_inputs)`` in eval mode with the original loop and no speed-ups: plain
    attention, no inference mode, no token cache."""
    switches = (model.fast_inference, model.fused_attention, model.cache_tokens)
    model.set_fast_inference(False)
    try:
        with torch.no_grad():
            encoded = model.encode(batched_inputs)
        return rank_reference(model, batched_inputs, *encoded[:-1])
    finally:
        model.set_fast_inference(*switches)
