"""Building blocks shared by the neck, the Fovea module and the sequential ranking module.

Shapes: B = batch, N / M = number of query / key tokens, C = embedding dim, h = heads,
d = C / h (head dim), H x W = spatial size.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["Attention", "MLPBlock", "MLP", "LayerNorm2D", "init_weights_"]


class Attention(nn.Module):
    """SAM-style multi-head attention without mask or dropout.

    ``forward(q: B x N x C, k: B x M x C, v: B x M x C) -> B x N x C``. ``fused``: in eval mode,
    use the fused ``F.scaled_dot_product_attention`` (same maths up to float rounding: it scales
    before the softmax with the same 1/sqrt(d)); training and the default use the original's
    explicit maths.
    """

    def __init__(self, embedding_dim, num_heads, downsample_rate=1, fused=False):
        super().__init__()
        self.embedding_dim = embedding_dim
        self.internal_dim = embedding_dim // downsample_rate
        self.num_heads = num_heads
        assert self.internal_dim % num_heads == 0, "num_heads must divide embedding_dim"

        self.q_proj = nn.Linear(embedding_dim, self.internal_dim)
        self.k_proj = nn.Linear(embedding_dim, self.internal_dim)
        self.v_proj = nn.Linear(embedding_dim, self.internal_dim)
        self.out_proj = nn.Linear(self.internal_dim, embedding_dim)
        self.fused = fused

    @property
    def use_sdpa(self):
        """Whether the next forward takes the fused path (``fused`` and eval mode)."""
        return self.fused and not self.training

    def _separate_heads(self, x):
        b, n, c = x.shape
        return x.reshape(b, n, self.num_heads, c // self.num_heads).transpose(1, 2)

    @staticmethod
    def _recombine_heads(x):
        b, h, n, d = x.shape
        return x.transpose(1, 2).reshape(b, n, h * d)

    def forward(self, q, k, v):
        return self.attend_projected(self.q_proj(q), k, v)

    def attend_projected(self, q, k, v):
        """``forward`` with ``q`` already through ``q_proj`` (lets callers cache it)."""
        q = self._separate_heads(q)
        k = self._separate_heads(self.k_proj(k))
        v = self._separate_heads(self.v_proj(v))
        if self.use_sdpa:
            out = F.scaled_dot_product_attention(q, k, v)
        else:
            # Scaling after the matmul (not on q) reproduces the original rounding exactly.
            attn = q @ k.transpose(-2, -1)
            attn = attn / math.sqrt(q.shape[-1])
            out = torch.softmax(attn, dim=-1) @ v
        return self.out_proj(self._recombine_heads(out))


class MLPBlock(nn.Module):
    """``lin1`` (C -> mlp_dim), GELU, ``lin2`` (mlp_dim -> C); acts on the last dim."""

    def __init__(self, embedding_dim, mlp_dim, act=nn.GELU):
        super().__init__()
        self.lin1 = nn.Linear(embedding_dim, mlp_dim)
        self.lin2 = nn.Linear(mlp_dim, embedding_dim)
        self.act = act()

    def forward(self, x):
        return self.lin2(self.act(self.lin1(x)))


class MLP(nn.Module):
    """Mask2Former-style MLP (``layers.0 ..``); ReLU between layers, none after the last."""

    def __init__(self, input_dim, hidden_dim, output_dim, num_layers):
        super().__init__()
        dims_in = [input_dim] + [hidden_dim] * (num_layers - 1)
        dims_out = [hidden_dim] * (num_layers - 1) + [output_dim]
        self.layers = nn.ModuleList(nn.Linear(i, o) for i, o in zip(dims_in, dims_out))

    def forward(self, x):
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < last:
                x = F.relu(x)
        return x


class LayerNorm2D(nn.Module):
    """LayerNorm over the channels of a B x C x H x W map (inner ``nn.LayerNorm`` is ``norm``)."""

    def __init__(self, num_channels, eps=1e-5):
        super().__init__()
        self.norm = nn.LayerNorm(num_channels, eps=eps)

    def forward(self, x):
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def init_weights_(module):
    """Xavier-uniform weights / zero biases for Linear and Conv2d, weight 1 / bias 0 for LayerNorm.

    Applied in place to every submodule of ``module`` (including itself); returns ``module``.
    """
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm) and m.elementwise_affine:
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    return module
