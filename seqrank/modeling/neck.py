"""Feature-pyramid necks ``FPN`` and ``FrcPN`` (registry ``NECK_HEAD``).

Both map the backbone dict ``{res2: B x C2 x H2 x W2, ..., res5: B x C5 x H5 x W5}`` to the same
keys and spatial sizes with C = ``MODEL.COMMON.EMBED_DIM`` channels. Fusion runs top-down: res5 is
fused into res4, the result into res3, that into res2; res5 itself is only projected.
"""

import torch
import torch.nn.functional as F
from detectron2.config import configurable
from torch import nn

from .components import LayerNorm2D, init_weights_
from .registry import NECK_HEAD

__all__ = ["FPN", "FrcPN", "FPNLayer", "FRC"]


def conv_gelu_norm(in_channels, out_channels):
    """1x1 conv, GELU, channel LayerNorm (keys ``0.*`` and ``2.norm.*``)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=1),
        nn.GELU(),
        LayerNorm2D(out_channels),
    )


def resize_like(x, ref):
    """Bilinear (align_corners=False) resize of ``x`` to the H x W of ``ref``."""
    return F.interpolate(x, size=ref.shape[-2:], mode="bilinear", align_corners=False)


class FPNLayer(nn.Module):
    """``conv(scale(up(high)) + low)``; ``scale`` is a 3x3 conv on the upsampled coarse map."""

    def __init__(self, dim):
        super().__init__()
        self.scale = nn.Conv2d(dim, dim, kernel_size=3, padding=1)
        self.conv = conv_gelu_norm(dim, dim)

    def forward(self, high, low):
        return self.conv(self.scale(resize_like(high, low)) + low)


class FRC(nn.Module):
    """Feature fusion that averages the upsampled coarse map only over "same side" neighbours.

    For every pixel of ``low`` and each of its 3x3 neighbours (zero padding included), a neighbour
    counts when it lies on the same side of the local 3x3 mean as the centre pixel. The upsampled
    ``high`` features of the counted neighbours are averaged, added to ``low`` and projected.
    """

    # Maps fused per pass. The 9-neighbour tensors of a whole res2 map (B x C x 9 x H x W, 370 MB
    # for an 800 x 800 input) were written and read about 15 times from memory; two maps' worth
    # stays in cache (the neck 2.5-3.6x faster on a CPU, benchmarks/README.md). Every value is
    # computed as before (each reduction over the 9 neighbours runs the same kernel on the same
    # H x W layout): bit-identical output.
    maps_per_pass = 2

    def __init__(self, in_dim, out_dim):
        super().__init__()
        self.conv1 = conv_gelu_norm(in_dim, out_dim)
        self.conv2 = conv_gelu_norm(out_dim, out_dim)
        init_weights_(self)

    @staticmethod
    def neighbours(x):
        """B x C x H x W -> B x C x 9 x H x W (3x3 neighbourhood in row-major order, zero padded;
        the values ``nn.Unfold(3, padding=1)`` gives)."""
        h, w = x.shape[-2:]
        padded = F.pad(x, (1, 1, 1, 1))
        shifted = [padded[..., i : i + h, j : j + w] for i in range(3) for j in range(3)]
        return torch.stack(shifted, dim=2)

    def similarity_mask(self, low):
        """B x C x 9 x H x W float mask (1 = neighbour on the centre's side of the local mean)."""
        nbr = self.neighbours(low)
        thr = nbr.mean(dim=2, keepdim=True)
        return ((nbr - thr > 0) == (low.unsqueeze(2) - thr > 0)).to(low.dtype)

    def fuse(self, up, low):
        """Mean of the counted neighbours of ``up`` (B x C x H x W, like ``low``)."""
        mask = self.similarity_mask(low)
        return (self.neighbours(up) * mask).sum(dim=2) / (mask.sum(dim=2) + 1e-6)

    def forward(self, high, low):
        """high: B x C x h x w (the coarser level), low: B x C x H x W -> B x C x H x W."""
        up = resize_like(self.conv1(high), low)
        b, c, h, w = low.shape
        maps, ups = low.reshape(b * c, 1, h, w), up.reshape(b * c, 1, h, w)
        fused = torch.empty_like(maps)
        for start in range(0, b * c, self.maps_per_pass):
            part = slice(start, start + self.maps_per_pass)
            fused[part] = self.fuse(ups[part], maps[part])
        return self.conv2(fused.view(b, c, h, w) + low)


class _PyramidNeck(nn.Module):
    """Lateral 1x1 projections plus three top-down fusion layers stored in ``self._fusions``."""

    def __init__(self, in_channels, embed_dim, feature_keys):
        super().__init__()
        assert len(in_channels) == len(feature_keys) == 4, "the necks expect res2..res5"
        self.feature_keys = list(feature_keys)
        self.lateral_conv = nn.ModuleList(conv_gelu_norm(c, embed_dim) for c in in_channels)

    @classmethod
    def from_config(cls, cfg):
        return {
            "in_channels": list(cfg.MODEL.BACKBONE.NUM_FEATURES),
            "embed_dim": cfg.MODEL.COMMON.EMBED_DIM,
            "feature_keys": list(cfg.MODEL.BACKBONE.FEATURE_KEYS),
        }

    def _fusion_layers(self):
        raise NotImplementedError

    def forward(self, features):
        """features: dict key -> B x C_i x H_i x W_i; returns dict key -> B x C x H_i x W_i."""
        lat = [conv(features[k]) for conv, k in zip(self.lateral_conv, self.feature_keys)]
        lat = lat[::-1]
        for k, fuse in enumerate(self._fusion_layers()):
            lat[k + 1] = fuse(lat[k], lat[k + 1])
        return dict(zip(self.feature_keys, lat[::-1]))


@NECK_HEAD.register()
class FPN(_PyramidNeck):
    """Top-down FPN; lateral convs use xavier init, ``fpn_layers`` keep PyTorch defaults."""

    @configurable
    def __init__(self, in_channels, embed_dim, feature_keys=("res2", "res3", "res4", "res5")):
        super().__init__(in_channels, embed_dim, feature_keys)
        self.fpn_layers = nn.ModuleList(FPNLayer(embed_dim) for _ in range(len(in_channels) - 1))
        init_weights_(self.lateral_conv)

    def _fusion_layers(self):
        return self.fpn_layers


@NECK_HEAD.register()
class FrcPN(_PyramidNeck):
    """Top-down pyramid with FRC fusion; lateral convs keep PyTorch default init (as originally)."""

    @configurable
    def __init__(self, in_channels, embed_dim, feature_keys=("res2", "res3", "res4", "res5")):
        super().__init__(in_channels, embed_dim, feature_keys)
        self.frcs = nn.ModuleList(FRC(embed_dim, embed_dim) for _ in range(len(in_channels) - 1))

    def _fusion_layers(self):
        return self.frcs
