"""FoveaModule: salient instance segmentation by box-guided query refinement.

Shapes: B = batch, Q = number of queries, C = embedding dim, H x W = a feature map's size,
H2 x W2 = the mask feature's (res2) size, gh x gw = an ROI grid, G = gh * gw.
Boxes are "xyhw" = (cx, cy, h, w) in [0, 1] (height before width).
"""

import torch
from detectron2.config import configurable
from torch import nn
from torchvision.ops import roi_align

from .box_ops import xyhw_to_xyxy
from .components import MLP, Attention, MLPBlock, init_weights_
from .precision import float32_decision
from .registry import SALIENCY_INSTANCE_SEG

__all__ = ["ROISample", "LookByMultiQ", "FoveaHead", "FoveaModule"]


class ROISample(nn.Module):
    """roi_align of each query's box on a feature map, plus a learned per-cell ``grid_embedding``.

    ``forward(feat: B x C x H x W, boxes: B x Q x 4 xyhw in [0, 1]) -> B x Q x C x gh x gw``.
    """

    def __init__(self, embed_dim, grid_size):
        super().__init__()
        self.grid_size = tuple(int(g) for g in grid_size)
        self.grid_embedding = nn.Parameter(torch.randn(embed_dim, *self.grid_size))

    def forward(self, feat, boxes):
        b, _, h, w = feat.shape
        nq = boxes.shape[1]
        scale = torch.tensor([w, h, w, h], dtype=boxes.dtype, device=boxes.device)
        xyxy = xyhw_to_xyxy(boxes).clamp(0.0, 1.0) * scale
        batch_idx = torch.arange(b, dtype=xyxy.dtype, device=xyxy.device)
        batch_idx = batch_idx.view(b, 1, 1).expand(b, nq, 1)
        rois = torch.cat([batch_idx, xyxy], dim=-1).flatten(0, 1).to(feat.dtype)
        out = roi_align(
            feat,
            rois,
            output_size=self.grid_size,
            spatial_scale=1.0,
            sampling_ratio=-1,
            aligned=False,
        )
        return (out + self.grid_embedding).unflatten(0, (b, nq))


class LookByMultiQ(nn.Module):
    """One refinement block: every query spawns G sub-queries from its ROI cells, which attend to
    the feature map and are averaged back into one query, followed by self-attention and an FFN.

    ``forward(q, qpe: B x Q x C, feat, feat_pe: B x C x H x W, roi_feat: B x Q x C x gh x gw)
    -> B x Q x C``. The input ``q`` only enters through ``linear1`` (no residual path).
    """

    def __init__(
        self,
        embed_dim,
        num_heads,
        hidden_dim,
        dropout_attn=0.0,
        dropout_ffn=0.0,
        fused_attention=False,
    ):
        super().__init__()
        self.linear1 = nn.Sequential(nn.Linear(embed_dim, embed_dim), nn.LayerNorm(embed_dim))
        self.linear2 = nn.Sequential(nn.Linear(embed_dim, embed_dim), nn.LayerNorm(embed_dim))
        self.linear3 = nn.Sequential(nn.Linear(embed_dim, embed_dim), nn.LayerNorm(embed_dim))

        self.cross_attn = Attention(embed_dim, num_heads, fused=fused_attention)
        self.norm1 = nn.LayerNorm(embed_dim)
        self.dropout1 = nn.Dropout(dropout_attn)

        self.self_attn = Attention(embed_dim, num_heads, fused=fused_attention)
        self.norm2 = nn.LayerNorm(embed_dim)
        self.dropout2 = nn.Dropout(dropout_attn)

        self.ffn = MLPBlock(embed_dim, hidden_dim)
        self.norm3 = nn.LayerNorm(embed_dim)
        self.dropout3 = nn.Dropout(dropout_ffn)
        init_weights_(self)

    def forward(self, q, qpe, feat, feat_pe, roi_feat):
        b, nq, c = q.shape
        g = roi_feat.shape[-2] * roi_feat.shape[-1]

        # Sub-query n * G + p = query n combined with its ROI cell p (row-major over the grid).
        rois = self.linear2(roi_feat.flatten(3).transpose(2, 3))
        qs = (self.linear1(q).unsqueeze(2) + rois).flatten(1, 2)
        qpes = qpe.repeat_interleave(g, dim=1)

        k = feat.flatten(2).transpose(1, 2)
        kpe = feat_pe.flatten(2).transpose(1, 2)
        qs = self.norm1(qs + self.dropout1(self.cross_attn(qs + qpes, k + kpe, k)))

        q = self.linear3(qs.reshape(b, nq, g, c).mean(dim=2))
        q = self.norm2(q + self.dropout2(self.self_attn(q + qpe, q + qpe, q)))
        return self.norm3(q + self.dropout3(self.ffn(q)))


class FoveaHead(nn.Module):
    """Prediction head shared by all refinement stages.

    ``forward(q: B x Q x C, mask_feature: B x C x H2 x W2)`` returns a dict of logits:
    ``masks`` B x Q x H2 x W2, ``scores`` B x Q x 1, ``bboxes`` B x Q x 4 (sigmoid gives xyhw).
    In eval mode the objectness ``scores`` are computed in float32 under any autocast.
    """

    def __init__(self, embed_dim):
        super().__init__()
        self.decoder_norm = nn.LayerNorm(embed_dim)
        self.score_head = nn.Linear(embed_dim, 1)
        self.mask_embed = MLP(embed_dim, embed_dim, embed_dim, 3)
        self.bbox_head = MLP(embed_dim, embed_dim, 4, 3)
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def forward(self, q, mask_feature):
        # The original also builds an attention mask from the masks here; nothing reads it.
        qn = self.decoder_norm(q)
        return {
            "masks": torch.einsum("bqc,bchw->bqhw", self.mask_embed(qn), mask_feature),
            "scores": float32_decision(self.score_head, qn),
            "bboxes": self.bbox_head(qn),
        }


@SALIENCY_INSTANCE_SEG.register()
class FoveaModule(nn.Module):
    """Learned queries refined by ``num_blocks`` LookByMultiQ blocks cycling over ``key_features``.

    ``forward(feats, feats_pe)`` takes the neck outputs and their encodings (dicts key ->
    B x C x H x W) and returns ``(q, qpe, out, aux)``: the last block's queries (B x Q x C, before
    ``decoder_norm``), the query encodings (B x Q x C), the final prediction dict and the list of
    the ``num_blocks`` earlier predictions (the first one made from the raw learned queries).
    """

    @configurable
    def __init__(
        self,
        *,
        num_queries,
        embed_dim,
        num_heads,
        hidden_dim,
        num_blocks,
        key_features,
        mask_key,
        grid_sizes,
        dropout_attn=0.0,
        dropout_ffn=0.0,
        fused_attention=False,
    ):
        super().__init__()
        assert len(key_features) == len(grid_sizes), "one ROI grid per key feature"
        self.key_features = list(key_features)
        self.mask_key = mask_key

        self.q = nn.Parameter(torch.zeros(1, num_queries, embed_dim))
        self.qpe = nn.Parameter(torch.randn(1, num_queries, embed_dim))
        self.roi_layers = nn.ModuleList(ROISample(embed_dim, g) for g in grid_sizes)
        self.level_embed = nn.Embedding(len(key_features), embed_dim)
        self.lookByMultiQ_layers = nn.ModuleList(
            LookByMultiQ(
                embed_dim, num_heads, hidden_dim, dropout_attn, dropout_ffn, fused_attention
            )
            for _ in range(num_blocks)
        )
        self.head = FoveaHead(embed_dim)

    @classmethod
    def from_config(cls, cfg):
        common = cfg.MODEL.COMMON
        sis = cfg.MODEL.SIS_HEAD
        return {
            "num_queries": common.NUM_QUERIES,
            "embed_dim": common.EMBED_DIM,
            "num_heads": common.NUM_HEADS,
            "hidden_dim": common.HIDDEN_DIM,
            "num_blocks": sis.NUM_BLOCKS,
            "key_features": list(sis.KEY_FEATURES),
            "mask_key": sis.MASK_KEY,
            "grid_sizes": [tuple(g) for g in cfg.MODEL.MODULES.MULTIQ.GRID_SIZES],
            "dropout_attn": common.DROPOUT_ATTN,
            "dropout_ffn": common.DROPOUT_FFN,
            "fused_attention": cfg.MODEL.SEQRANK.FAST_INFERENCE,
        }

    def forward(self, feats, feats_pe):
        mask_feature = feats[self.mask_key]
        b = mask_feature.shape[0]
        q = self.q.expand(b, -1, -1)
        qpe = self.qpe.expand(b, -1, -1)

        preds = [self.head(q, mask_feature)]
        for idx, block in enumerate(self.lookByMultiQ_layers):
            lvl = idx % len(self.key_features)
            key = self.key_features[lvl]
            # The ROI is sampled from the feature map *with* its level embedding.
            feat = feats[key] + self.level_embed.weight[lvl][None, :, None, None]
            roi = self.roi_layers[lvl](feat, preds[-1]["bboxes"].sigmoid())
            q = block(q, qpe, feat, feats_pe[key], roi)
            preds.append(self.head(q, mask_feature))
        return q, qpe, preds[-1], preds[:-1]
