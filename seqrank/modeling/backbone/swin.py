"""Swin Transformer backbone in the Mask2Former / detectron2 layout ("D2SwinTransformer").

Reproduces the numerics of the original (see docs/ARCHITECTURE.md, "Backbones"): images are
padded to the patch size, tokens are padded to whole windows *after* ``norm1`` (padded tokens are
unmasked zero keys), the cyclic shift is never disabled, even on maps smaller than a window, and
shifted windows are separated with a -100.0 additive mask.

Shapes: B = batch, H x W = token grid of a stage, C = channels of a stage, ws = window size,
N = ws * ws tokens per window, nW = windows per image, B_ = B * nW, h = heads, hd = C / h.
"""

import torch
import torch.nn.functional as F
import torch.utils.checkpoint as checkpoint
from detectron2.modeling import BACKBONE_REGISTRY, Backbone, ShapeSpec
from timm.layers import DropPath, trunc_normal_
from torch import nn

from ...cli import ConfigError

__all__ = [
    "D2SwinTransformer",
    "SwinTransformer",
    "WindowAttention",
    "SwinTransformerBlock",
    "BasicLayer",
    "PatchMerging",
    "PatchEmbed",
    "relative_position_index",
    "shifted_window_mask",
]

MASK_VALUE = -100.0


class Mlp(nn.Module):
    """fc1 -> GELU -> dropout -> fc2 -> dropout on B x L x C tokens."""

    def __init__(self, in_features, hidden_features, drop=0.0):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_features, in_features)
        self.drop = nn.Dropout(drop)

    def forward(self, x):
        x = self.drop(self.act(self.fc1(x)))
        return self.drop(self.fc2(x))


def window_partition(x, window_size):
    """B x H x W x C (H, W multiples of ws) -> (B * nW) x ws x ws x C, windows row-major."""
    b, h, w, c = x.shape
    x = x.view(b, h // window_size, window_size, w // window_size, window_size, c)
    return x.permute(0, 1, 3, 2, 4, 5).contiguous().view(-1, window_size, window_size, c)


def window_reverse(windows, window_size, h, w):
    """Inverse of :func:`window_partition`: (B * nW) x ws x ws x C -> B x H x W x C."""
    b = windows.shape[0] // ((h // window_size) * (w // window_size))
    x = windows.view(b, h // window_size, w // window_size, window_size, window_size, -1)
    return x.permute(0, 1, 3, 2, 4, 5).contiguous().view(b, h, w, -1)


def relative_position_index(window_size):
    """N x N int64 index into the (2ws-1)^2 bias table for every (query, key) token pair."""
    coords = torch.stack(
        torch.meshgrid(torch.arange(window_size), torch.arange(window_size), indexing="ij")
    ).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window_size - 1)
    return rel[:, :, 0] * (2 * window_size - 1) + rel[:, :, 1]


def shifted_window_mask(h, w, window_size, shift_size, device=None):
    """nW x N x N additive mask (0 within a region, -100 across) for the shifted windows.

    ``h``, ``w`` are the padded sizes (multiples of ``window_size``).
    """
    img_mask = torch.zeros((1, h, w, 1), device=device)
    slices = (
        slice(0, -window_size),
        slice(-window_size, -shift_size),
        slice(-shift_size, None),
    )
    region = 0
    for hs in slices:
        for ws in slices:
            img_mask[:, hs, ws, :] = region
            region += 1
    labels = window_partition(img_mask, window_size).view(-1, window_size * window_size)
    diff = labels.unsqueeze(1) - labels.unsqueeze(2)
    return diff.masked_fill(diff != 0, MASK_VALUE).masked_fill(diff == 0, 0.0)


class WindowAttention(nn.Module):
    """Multi-head self-attention inside windows with a relative position bias.

    ``fused``: in eval mode, use ``F.scaled_dot_product_attention`` (same maths within float
    rounding); training and the default use the explicit softmax of the original.
    """

    def __init__(
        self,
        dim,
        window_size,
        num_heads,
        qkv_bias=True,
        qk_scale=None,
        attn_drop=0.0,
        proj_drop=0.0,
        fused=False,
    ):
        super().__init__()
        self.dim = dim
        self.window_size = window_size
        self.num_heads = num_heads
        head_dim = dim // num_heads
        # A falsy qk_scale (None or 0) falls back to the standard scaling, as in the original.
        self.scale = qk_scale or head_dim**-0.5
        self.fused = fused

        self.relative_position_bias_table = nn.Parameter(
            torch.zeros((2 * window_size - 1) ** 2, num_heads)
        )
        self.register_buffer("relative_position_index", relative_position_index(window_size))
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        trunc_normal_(self.relative_position_bias_table, std=0.02)

    @property
    def use_sdpa(self):
        """Whether the next forward takes the fused path (``fused`` and eval mode)."""
        return self.fused and not self.training

    def relative_position_bias(self):
        """h x N x N bias gathered from the table."""
        n = self.window_size * self.window_size
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        return bias.view(n, n, -1).permute(2, 0, 1).contiguous()

    def forward(self, x, mask=None):
        """x: B_ x N x C; mask: nW x N x N or None. Returns B_ x N x C."""
        b_, n, c = x.shape
        qkv = self.qkv(x).reshape(b_, n, 3, self.num_heads, c // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        if self.use_sdpa:
            out = self._attend_sdpa(q, k, v, mask)
        else:
            out = self._attend_plain(q, k, v, mask)
        x = out.transpose(1, 2).reshape(b_, n, c)
        return self.proj_drop(self.proj(x))

    def _attend_plain(self, q, k, v, mask):
        b_, heads, n, _ = q.shape
        attn = (q * self.scale) @ k.transpose(-2, -1)
        attn = attn + self.relative_position_bias().unsqueeze(0)
        if mask is not None:
            nw = mask.shape[0]
            attn = attn.view(b_ // nw, nw, heads, n, n) + mask.unsqueeze(1).unsqueeze(0)
            attn = attn.view(-1, heads, n, n)
        attn = self.attn_drop(attn.softmax(dim=-1))
        return attn @ v

    def _attend_sdpa(self, q, k, v, mask):
        b_, heads, n, _ = q.shape
        bias = self.relative_position_bias().unsqueeze(0)
        if mask is not None:
            nw = mask.shape[0]
            bias = (bias + mask.unsqueeze(1)).unsqueeze(0).expand(b_ // nw, -1, -1, -1, -1)
            bias = bias.reshape(b_, heads, n, n)
        drop = self.attn_drop.p if self.training else 0.0
        return F.scaled_dot_product_attention(
            q, k, v, attn_mask=bias.to(q.dtype), dropout_p=drop, scale=self.scale
        )


class SwinTransformerBlock(nn.Module):
    """(Shifted) window attention + MLP with pre-norm residuals on B x (H*W) x C tokens."""

    def __init__(
        self,
        dim,
        num_heads,
        window_size=7,
        shift_size=0,
        mlp_ratio=4.0,
        qkv_bias=True,
        qk_scale=None,
        drop=0.0,
        attn_drop=0.0,
        drop_path=0.0,
        fused_attention=False,
    ):
        super().__init__()
        if not 0 <= shift_size < window_size:
            raise ValueError(f"shift_size must be in [0, {window_size}), got {shift_size}")
        self.window_size = window_size
        self.shift_size = shift_size
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(
            dim, window_size, num_heads, qkv_bias, qk_scale, attn_drop, drop, fused_attention
        )
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop)

    def forward(self, x, h, w, attn_mask):
        """x: B x (H*W) x C; attn_mask: nW x N x N for the padded map (used only if shifted)."""
        b, _, c = x.shape
        ws, shift = self.window_size, self.shift_size
        shortcut = x
        x = self.norm1(x).view(b, h, w, c)
        pad_r = (ws - w % ws) % ws
        pad_b = (ws - h % ws) % ws
        x = F.pad(x, (0, 0, 0, pad_r, 0, pad_b))
        hp, wp = x.shape[1], x.shape[2]
        if shift > 0:
            x = torch.roll(x, shifts=(-shift, -shift), dims=(1, 2))
        else:
            attn_mask = None
        windows = window_partition(x, ws).view(-1, ws * ws, c)
        windows = self.attn(windows, mask=attn_mask).view(-1, ws, ws, c)
        x = window_reverse(windows, ws, hp, wp)
        if shift > 0:
            x = torch.roll(x, shifts=(shift, shift), dims=(1, 2))
        if pad_r > 0 or pad_b > 0:
            x = x[:, :h, :w, :].contiguous()
        x = shortcut + self.drop_path(x.view(b, h * w, c))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchMerging(nn.Module):
    """2x2 token merge: B x (H*W) x C -> B x (ceil(H/2)*ceil(W/2)) x 2C."""

    def __init__(self, dim):
        super().__init__()
        self.dim = dim
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim)

    def forward(self, x, h, w):
        b, _, c = x.shape
        x = x.view(b, h, w, c)
        if h % 2 == 1 or w % 2 == 1:
            x = F.pad(x, (0, 0, 0, w % 2, 0, h % 2))
        # Channel order (row offset varies fastest) is fixed by the pretrained reduction weights.
        parts = [x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]]
        x = torch.cat(parts, -1).view(b, -1, 4 * c)
        return self.reduction(self.norm(x))


class BasicLayer(nn.Module):
    """One Swin stage: ``depth`` blocks alternating unshifted / shifted windows, then merging."""

    def __init__(
        self,
        dim,
        depth,
        num_heads,
        window_size=7,
        mlp_ratio=4.0,
        qkv_bias=True,
        qk_scale=None,
        drop=0.0,
        attn_drop=0.0,
        drop_path=0.0,
        downsample=False,
        use_checkpoint=False,
        fused_attention=False,
    ):
        super().__init__()
        self.window_size = window_size
        self.shift_size = window_size // 2
        self.use_checkpoint = use_checkpoint
        drop_paths = drop_path if isinstance(drop_path, (list, tuple)) else [drop_path] * depth
        self.blocks = nn.ModuleList(
            SwinTransformerBlock(
                dim,
                num_heads,
                window_size=window_size,
                shift_size=0 if j % 2 == 0 else self.shift_size,
                mlp_ratio=mlp_ratio,
                qkv_bias=qkv_bias,
                qk_scale=qk_scale,
                drop=drop,
                attn_drop=attn_drop,
                drop_path=drop_paths[j],
                fused_attention=fused_attention,
            )
            for j in range(depth)
        )
        self.downsample = PatchMerging(dim) if downsample else None

    def forward(self, x, h, w):
        """x: B x (H*W) x C. Returns (pre-merge x, H, W, merged x, H', W')."""
        ws = self.window_size
        hp, wp = -(-h // ws) * ws, -(-w // ws) * ws
        attn_mask = shifted_window_mask(hp, wp, ws, self.shift_size, device=x.device)
        for blk in self.blocks:
            if self.use_checkpoint and self.training and torch.is_grad_enabled():
                x = checkpoint.checkpoint(blk, x, h, w, attn_mask, use_reentrant=False)
            else:
                x = blk(x, h, w, attn_mask)
        if self.downsample is None:
            return x, h, w, x, h, w
        return x, h, w, self.downsample(x, h, w), (h + 1) // 2, (w + 1) // 2


class PatchEmbed(nn.Module):
    """Image B x 3 x H x W -> B x C x ceil(H/p) x ceil(W/p), zero-padding right/bottom first."""

    def __init__(self, patch_size=4, in_chans=3, embed_dim=96, patch_norm=True):
        super().__init__()
        self.patch_size = patch_size
        self.embed_dim = embed_dim
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.norm = nn.LayerNorm(embed_dim) if patch_norm else None

    def forward(self, x):
        p = self.patch_size
        h, w = x.shape[-2:]
        if w % p != 0:
            x = F.pad(x, (0, p - w % p))
        if h % p != 0:
            x = F.pad(x, (0, 0, 0, p - h % p))
        x = self.proj(x)
        if self.norm is not None:
            hh, ww = x.shape[-2:]
            x = self.norm(x.flatten(2).transpose(1, 2))
            x = x.transpose(1, 2).view(-1, self.embed_dim, hh, ww)
        return x


class SwinTransformer(nn.Module):
    """Hierarchical Swin backbone returning ``{"res2".."res5": B x C_i x H_i x W_i}``.

    ``norm{i}`` normalises every stage output. Weights keep PyTorch's default initialisation
    (the original never calls its ``init_weights``); only the bias tables (and the optional
    absolute position embedding) are drawn from a truncated normal.
    """

    def __init__(
        self,
        pretrain_img_size=224,
        patch_size=4,
        in_chans=3,
        embed_dim=96,
        depths=(2, 2, 6, 2),
        num_heads=(3, 6, 12, 24),
        window_size=7,
        mlp_ratio=4.0,
        qkv_bias=True,
        qk_scale=None,
        drop_rate=0.0,
        attn_drop_rate=0.0,
        drop_path_rate=0.2,
        ape=False,
        patch_norm=True,
        use_checkpoint=False,
        fused_attention=False,
    ):
        super().__init__()
        self.num_layers = len(depths)
        self.ape = ape
        self.num_features = [int(embed_dim * 2**i) for i in range(self.num_layers)]
        self.patch_embed = PatchEmbed(patch_size, in_chans, embed_dim, patch_norm)
        if ape:
            res = pretrain_img_size // patch_size
            self.absolute_pos_embed = nn.Parameter(torch.zeros(1, embed_dim, res, res))
            trunc_normal_(self.absolute_pos_embed, std=0.02)
        self.pos_drop = nn.Dropout(p=drop_rate)

        dpr = [r.item() for r in torch.linspace(0, drop_path_rate, sum(depths), device="cpu")]
        self.layers = nn.ModuleList()
        for i, depth in enumerate(depths):
            start = sum(depths[:i])
            self.layers.append(
                BasicLayer(
                    self.num_features[i],
                    depth,
                    num_heads[i],
                    window_size=window_size,
                    mlp_ratio=mlp_ratio,
                    qkv_bias=qkv_bias,
                    qk_scale=qk_scale,
                    drop=drop_rate,
                    attn_drop=attn_drop_rate,
                    drop_path=dpr[start : start + depth],
                    downsample=i < self.num_layers - 1,
                    use_checkpoint=use_checkpoint,
                    fused_attention=fused_attention,
                )
            )
        for i, dim in enumerate(self.num_features):
            self.add_module(f"norm{i}", nn.LayerNorm(dim))

    def set_use_sdpa(self, enabled=True):
        """Switch every window attention between the plain and the fused SDPA path (an ablation
        switch; models are built with ``fused_attention``)."""
        for module in self.modules():
            if isinstance(module, WindowAttention):
                module.fused = bool(enabled)

    def forward(self, x):
        """x: B x 3 x H x W -> {"res{i+2}": B x C_i x ceil(H/(4*2^i)) x ceil(W/(4*2^i))}."""
        x = self.patch_embed(x)
        h, w = x.shape[-2:]
        if self.ape:
            ape = F.interpolate(self.absolute_pos_embed, size=(h, w), mode="bicubic")
            x = x + ape
        x = self.pos_drop(x.flatten(2).transpose(1, 2))
        outs = {}
        for i, layer in enumerate(self.layers):
            x_out, ho, wo, x, h, w = layer(x, h, w)
            x_out = getattr(self, f"norm{i}")(x_out)
            dim = self.num_features[i]
            outs[f"res{i + 2}"] = x_out.view(-1, ho, wo, dim).permute(0, 3, 1, 2).contiguous()
        return outs


@BACKBONE_REGISTRY.register()
class D2SwinTransformer(SwinTransformer, Backbone):
    """Swin built from ``cfg.MODEL.SWIN``; outputs filtered by ``MODEL.SWIN.OUT_FEATURES``."""

    def __init__(self, cfg, input_shape):
        swin = cfg.MODEL.SWIN
        super().__init__(
            pretrain_img_size=swin.PRETRAIN_IMG_SIZE,
            patch_size=swin.PATCH_SIZE,
            in_chans=3,
            embed_dim=swin.EMBED_DIM,
            depths=list(swin.DEPTHS),
            num_heads=list(swin.NUM_HEADS),
            window_size=swin.WINDOW_SIZE,
            mlp_ratio=swin.MLP_RATIO,
            qkv_bias=swin.QKV_BIAS,
            qk_scale=swin.QK_SCALE,
            drop_rate=swin.DROP_RATE,
            attn_drop_rate=swin.ATTN_DROP_RATE,
            drop_path_rate=swin.DROP_PATH_RATE,
            ape=swin.APE,
            patch_norm=swin.PATCH_NORM,
            use_checkpoint=swin.USE_CHECKPOINT,
            fused_attention=cfg.MODEL.SEQRANK.FAST_INFERENCE,
        )
        self._out_features = list(swin.OUT_FEATURES)
        unknown = set(self._out_features) - {f"res{i + 2}" for i in range(self.num_layers)}
        if unknown:
            raise ConfigError(f"Unknown MODEL.SWIN.OUT_FEATURES {sorted(unknown)}")
        self._out_feature_strides = {f"res{i + 2}": 4 * 2**i for i in range(self.num_layers)}
        self._out_feature_channels = {f"res{i + 2}": c for i, c in enumerate(self.num_features)}

    def forward(self, x):
        if x.dim() != 4:
            raise ValueError(f"D2SwinTransformer takes B x 3 x H x W inputs, got {tuple(x.shape)}")
        outs = super().forward(x)
        return {k: v for k, v in outs.items() if k in self._out_features}

    def output_shape(self):
        return {
            name: ShapeSpec(
                channels=self._out_feature_channels[name], stride=self._out_feature_strides[name]
            )
            for name in self._out_features
        }

    @property
    def size_divisibility(self):
        return 32
