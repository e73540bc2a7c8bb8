"""Positional encodings selected by ``MODEL.PE`` (registry ``POSITION_ENCODING``).

Every module maps a feature map ``x: B x C x H x W`` to a ``B x C x H x W`` encoding that depends
only on B, H and W (and on the module's parameters), with C = ``MODEL.COMMON.EMBED_DIM``.
"""

import math

import torch
import torch.nn.functional as F
from detectron2.config import configurable
from torch import nn

from .registry import POSITION_ENCODING

__all__ = ["LearnablePE", "PositionEmbeddingSine", "PositionEmbeddingRandom"]


class LearnablePE(nn.Module):
    """A learned C x S x S map (``ape``), bilinearly resized to the input's H x W ("APE")."""

    @configurable
    def __init__(self, embed_dim, size=25):
        super().__init__()
        self.ape = nn.Parameter(torch.empty(embed_dim, size, size))
        nn.init.trunc_normal_(self.ape, mean=0.0, std=1.0, a=-2.0, b=2.0)

    @classmethod
    def from_config(cls, cfg):
        return {"embed_dim": cfg.MODEL.COMMON.EMBED_DIM}

    def forward(self, x):
        pe = F.interpolate(
            self.ape.unsqueeze(0), size=x.shape[-2:], mode="bilinear", align_corners=False
        )
        return pe.expand(x.shape[0], -1, -1, -1)


class PositionEmbeddingSine(nn.Module):
    """DETR sine encoding: C = 2 * num_pos_feats channels, ``[pos_y, pos_x]`` ("SINE").

    Row / column indices are counted from 1 (cumulative sum of an all-ones mask); with
    ``normalize`` they are divided by the last index (+ eps) and multiplied by ``scale``.
    """

    @configurable
    def __init__(self, num_pos_feats=64, temperature=10000, normalize=False, scale=None):
        super().__init__()
        if scale is not None and not normalize:
            raise ValueError("normalize should be True if scale is passed")
        self.num_pos_feats = num_pos_feats
        self.temperature = temperature
        self.normalize = normalize
        self.scale = 2 * math.pi if scale is None else scale

    @classmethod
    def from_config(cls, cfg):
        return {"num_pos_feats": cfg.MODEL.COMMON.EMBED_DIM // 2, "normalize": True}

    def _encode(self, embed, dim_t):
        """B x H x W -> B x H x W x num_pos_feats, sin / cos interleaved."""
        pos = embed[:, :, :, None] / dim_t
        return torch.stack((pos[..., 0::2].sin(), pos[..., 1::2].cos()), dim=4).flatten(3)

    def forward(self, x):
        b, _, h, w = x.shape
        not_mask = torch.ones(b, h, w, device=x.device, dtype=torch.float32)
        y_embed = not_mask.cumsum(1)
        x_embed = not_mask.cumsum(2)
        if self.normalize:
            eps = 1e-6
            y_embed = y_embed / (y_embed[:, -1:, :] + eps) * self.scale
            x_embed = x_embed / (x_embed[:, :, -1:] + eps) * self.scale

        dim_t = torch.arange(self.num_pos_feats, dtype=torch.float32, device=x.device)
        dim_t = self.temperature ** (
            2 * torch.div(dim_t, 2, rounding_mode="floor") / self.num_pos_feats
        )

        pos = torch.cat((self._encode(y_embed, dim_t), self._encode(x_embed, dim_t)), dim=3)
        return pos.permute(0, 3, 1, 2).to(x.dtype)


class PositionEmbeddingRandom(nn.Module):
    """SAM random Fourier encoding: C = 2 * num_pos_feats channels, ``sin || cos`` ("RANDOM").

    Pixel centres ``(i + 0.5) / size`` are mapped to [-1, 1], stacked as (x, y), projected by a
    fixed Gaussian 2 x num_pos_feats matrix (persistent buffer) and multiplied by 2 pi.
    """

    @configurable
    def __init__(self, num_pos_feats=64, scale=None):
        super().__init__()
        if scale is None or scale <= 0.0:
            scale = 1.0
        self.register_buffer(
            "positional_encoding_gaussian_matrix", scale * torch.randn((2, num_pos_feats))
        )

    @classmethod
    def from_config(cls, cfg):
        return {"num_pos_feats": cfg.MODEL.COMMON.EMBED_DIM // 2}

    def _pe_encoding(self, coords):
        """... x 2 coordinates in [0, 1] -> ... x C."""
        coords = 2 * coords - 1
        coords = coords @ self.positional_encoding_gaussian_matrix
        coords = 2 * math.pi * coords
        return torch.cat([torch.sin(coords), torch.cos(coords)], dim=-1)

    def forward(self, x):
        b, _, h, w = x.shape
        matrix = self.positional_encoding_gaussian_matrix
        grid = torch.ones((h, w), device=matrix.device, dtype=matrix.dtype)
        y_embed = (grid.cumsum(dim=0) - 0.5) / h
        x_embed = (grid.cumsum(dim=1) - 0.5) / w
        pe = self._pe_encoding(torch.stack([x_embed, y_embed], dim=-1))
        return pe.permute(2, 0, 1).unsqueeze(0).expand(b, -1, -1, -1).to(x.dtype)


# The registry derives names from ``__name__``; MODEL.PE uses the original short names instead.
for _name, _module in (
    ("APE", LearnablePE),
    ("SINE", PositionEmbeddingSine),
    ("RANDOM", PositionEmbeddingRandom),
):
    POSITION_ENCODING._do_register(_name, _module)
