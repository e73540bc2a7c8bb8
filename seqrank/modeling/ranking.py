"""SequentialRankingModule: scores which query should be ranked next given the ranks so far.

Shapes: B = batch, Q = number of queries, C = embedding dim, T = number of image tokens (h * w
of the res5 map, row-major). ``q_vis: B x Q x 1`` holds float-valued integer ranks (0 = unranked).
"""

import torch
from detectron2.config import configurable
from torch import nn

from .components import Attention, MLPBlock, init_weights_
from .precision import float32_decision
from .registry import GAZE_SHIFT

__all__ = ["CenterShiftBlock", "SequentialRankingModule", "rank_indicators"]


def rank_indicators(q_vis):
    """Return float ``(prev, gaze)`` masks B x Q x 1 from the ranks ``q_vis`` (B x Q x 1).

    With g = the largest rank of the image (the most recently selected query, 0 if none):
    ``prev`` marks every selected query (0.5 < rank <= g) and ``gaze`` the current one (rank == g).
    """
    g = q_vis.amax(dim=1, keepdim=True)
    selected = q_vis > 0.5
    prev = (selected & (q_vis <= g)).to(q_vis.dtype)
    gaze = (selected & (q_vis == g)).to(q_vis.dtype)
    return prev, gaze


class CenterShiftBlock(nn.Module):
    """One ranking block.

    ``forward(q, qpe: B x Q x C, z, zpe: B x T x C, gaze, prev: B x Q x 1, gaze_emb, prev_emb: C)
    -> B x Q x C``. The image tokens are refined inside the block but not returned, so every block
    of the module starts from the same ``z``.
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
        fused = fused_attention
        # Registration order fixes the state_dict order of the released checkpoints.
        self.self_attn1 = Attention(embed_dim, num_heads, fused=fused)
        self.norm1 = nn.LayerNorm(embed_dim)
        self.self_attn2 = Attention(embed_dim, num_heads, fused=fused)
        self.norm2 = nn.LayerNorm(embed_dim)
        self.cross_attn1 = Attention(embed_dim, num_heads, fused=fused)
        self.norm3 = nn.LayerNorm(embed_dim)
        self.cross_attn2 = Attention(embed_dim, num_heads, fused=fused)
        self.norm4 = nn.LayerNorm(embed_dim)
        self.ffn1 = MLPBlock(embed_dim, hidden_dim)
        self.norm5 = nn.LayerNorm(embed_dim)
        self.ffn2 = MLPBlock(embed_dim, hidden_dim)
        self.norm6 = nn.LayerNorm(embed_dim)
        self.mlp = nn.Sequential(
            nn.Linear(2 * embed_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, embed_dim)
        )
        self.norm_mlp = nn.LayerNorm(embed_dim)
        # The original gates q by a softmax over a size-1 dim (a constant 1), so this layer never
        # influences the output; it is kept for checkpoint compatibility.
        self.softmax_head = nn.Linear(embed_dim, 1)
        self.before = nn.Linear(embed_dim, embed_dim)
        self.after = nn.Linear(embed_dim, embed_dim)
        self.dropout_attn = nn.Dropout(dropout_attn)
        self.dropout_ffn = nn.Dropout(dropout_ffn)
        init_weights_(self)

    def _attend(self, attn, norm, x, x_pe, y, y_pe):
        """``norm(x + attn(x + x_pe, y + y_pe, y))``."""
        query = x + x_pe
        key = query if (y is x and y_pe is x_pe) else y + y_pe
        return norm(x + self.dropout_attn(attn(query, key, y)))

    def token_query(self, z, zpe):
        """B x T x C projected queries of ``cross_attn1``: they depend on the image tokens only,
        so a caller running several ranking steps can compute them once."""
        return self.cross_attn1.q_proj(z + zpe)

    def _update_tokens(self, q, qpe, z, zpe, gaze, gaze_emb, z_query=None):
        """Image tokens attend to the queries, then are fused with the gazed query's feature."""
        if z_query is None:
            z = self._attend(self.cross_attn1, self.norm3, z, zpe, q, qpe)
        else:
            z = self.norm3(
                z + self.dropout_attn(self.cross_attn1.attend_projected(z_query, q + qpe, q))
            )
        centre = (gaze * q).sum(dim=1, keepdim=True) + gaze_emb
        fused = torch.cat([centre.expand(-1, z.shape[1], -1), z], dim=-1)
        return self.norm_mlp(z + self.mlp(fused))

    def forward(self, q, qpe, z, zpe, gaze, gaze_emb, prev, prev_emb, z_query=None):
        """``z_query``: optional cached :meth:`token_query` of ``z``, ``zpe``."""
        q0 = self.before(q)
        q = q + prev * prev_emb + gaze * gaze_emb
        q = self._attend(self.self_attn1, self.norm1, q, qpe, q, qpe)
        q = self.norm2(q + self.dropout_ffn(self.ffn1(q)))

        z = self._update_tokens(q, qpe, z, zpe, gaze, gaze_emb, z_query)

        q = self._attend(self.cross_attn2, self.norm4, q, qpe, z, zpe)
        q = self._attend(self.self_attn2, self.norm5, q, qpe, q, qpe)
        q = self.norm6(q + self.dropout_ffn(self.ffn2(q)))
        return self.after(q0 + q)


@GAZE_SHIFT.register()
class SequentialRankingModule(nn.Module):
    """Stack of CenterShiftBlocks followed by a saliency head (B x Q x 1 logits).

    ``forward(q, z, qpe, zpe, q_vis, token_cache=None)``; ``token_cache`` is an optional
    :meth:`token_cache` of ``z``, ``zpe``. Returns ``(logits, [])`` in training mode, else
    ``logits`` (float32 in eval mode under any autocast). (The original's ``bbox`` and ``size``
    arguments, which it ignored and no caller here passes, are gone.)
    """

    @configurable
    def __init__(
        self,
        *,
        embed_dim,
        num_heads,
        hidden_dim,
        num_blocks,
        dropout_attn=0.0,
        dropout_ffn=0.0,
        fused_attention=False,
    ):
        super().__init__()
        self.prev_emb = nn.Parameter(torch.randn(embed_dim))
        self.gaze_emb = nn.Parameter(torch.randn(embed_dim))
        self.blocks = nn.ModuleList(
            CenterShiftBlock(
                embed_dim, num_heads, hidden_dim, dropout_attn, dropout_ffn, fused_attention
            )
            for _ in range(num_blocks)
        )
        self.head = nn.Sequential(
            nn.Linear(embed_dim, embed_dim), nn.ReLU(), nn.Linear(embed_dim, 1)
        )

    @classmethod
    def from_config(cls, cfg):
        common = cfg.MODEL.COMMON
        return {
            "embed_dim": common.EMBED_DIM,
            "num_heads": common.NUM_HEADS,
            "hidden_dim": common.HIDDEN_DIM,
            "num_blocks": cfg.MODEL.GAZE_SHIFT_HEAD.NUM_BLOCKS,
            "dropout_attn": common.DROPOUT_ATTN,
            "dropout_ffn": common.DROPOUT_FFN,
            "fused_attention": cfg.MODEL.SEQRANK.FAST_INFERENCE,
        }

    def token_cache(self, z, zpe):
        """What the blocks compute from the image tokens alone (a list of B x T x C tensors),
        unchanged across ranking steps because every block starts from the same ``z``."""
        return [block.token_query(z, zpe) for block in self.blocks]

    def forward(self, q, z, qpe, zpe, q_vis, token_cache=None):
        prev, gaze = rank_indicators(q_vis)
        cache = token_cache if token_cache is not None else [None] * len(self.blocks)
        for block, z_query in zip(self.blocks, cache):
            q = block(q, qpe, z, zpe, gaze, self.gaze_emb, prev, self.prev_emb, z_query)
        # The original applies the head after every block but only returns the last output.
        out = float32_decision(self.head, q)
        return (out, []) if self.training else out
