import pytest
import torch
from torch import nn
from torch.func import functional_call

from seqrank.modeling.ranking import SequentialRankingModule, rank_indicators
from seqrank.modeling.registry import build_gaze_shift
from tests.helpers import (
    load_parity_strictly,
    manifest_entries,
    module_entries,
    official_cfg,
    parity_cfg,
)


def col(values):
    return torch.tensor(values, dtype=torch.float32).view(1, -1, 1)


def test_rank_indicators_hand_checked():
    prev, gaze = rank_indicators(col([0, 2, 1, 0, 3]))
    assert prev.flatten().tolist() == [0, 1, 1, 0, 1]
    assert gaze.flatten().tolist() == [0, 0, 0, 0, 1]

    prev, gaze = rank_indicators(torch.zeros(2, 4, 1))
    assert prev.sum() == 0 and gaze.sum() == 0

    q_vis = torch.tensor([[0.0, 1.0, 0.0], [2.0, 0.0, 1.0]]).unsqueeze(-1)
    prev, gaze = rank_indicators(q_vis)
    assert prev.squeeze(-1).tolist() == [[0, 1, 0], [1, 0, 1]]
    assert gaze.squeeze(-1).tolist() == [[0, 1, 0], [1, 0, 0]]
    assert prev.dtype == gaze.dtype == torch.float32 and prev.shape == (2, 3, 1)


def tiny_srm(num_blocks=2, seed=0):
    torch.manual_seed(seed)
    return SequentialRankingModule(embed_dim=8, num_heads=2, hidden_dim=16, num_blocks=num_blocks)


def tiny_inputs(b=2, nq=5, t=6, c=8):
    q_vis = torch.zeros(b, nq, 1)
    q_vis[0, 1], q_vis[0, 3], q_vis[1, 4] = 1.0, 2.0, 1.0
    return (
        torch.randn(b, nq, c),
        torch.randn(b, t, c),
        torch.randn(b, nq, c),
        torch.randn(b, t, c),
        q_vis,
    )


def reference_block(blk, q, qpe, z, zpe, gaze, gaze_emb, prev, prev_emb):
    """CenterShiftBlock written step by step from ARCHITECTURE.md section 8."""
    q0 = blk.before(q)
    q = q + prev * prev_emb + gaze * gaze_emb
    q = blk.norm1(q + blk.self_attn1(q + qpe, q + qpe, q))
    q = blk.norm2(q + blk.ffn1(q))
    z = blk.norm3(z + blk.cross_attn1(z + zpe, q + qpe, q))
    c = (gaze * q).sum(dim=1, keepdim=True) + gaze_emb
    z = blk.norm_mlp(z + blk.mlp(torch.cat([c.expand(-1, z.shape[1], -1), z], dim=-1)))
    q = blk.norm4(q + blk.cross_attn2(q + qpe, z + zpe, z))
    q = blk.norm5(q + blk.self_attn2(q + qpe, q + qpe, q))
    q = blk.norm6(q + blk.ffn2(q))
    q = q * torch.softmax(blk.softmax_head(q), dim=-1)
    return blk.after(q0 + q)


def randomise_norms(module):
    for m in module.modules():
        if isinstance(m, nn.LayerNorm):
            nn.init.normal_(m.weight)
            nn.init.normal_(m.bias)


def test_center_shift_block_matches_spec_order():
    srm = tiny_srm(num_blocks=1)
    randomise_norms(srm)
    q, z, qpe, zpe, q_vis = tiny_inputs()
    prev, gaze = rank_indicators(q_vis)
    blk = srm.blocks[0]
    out = blk(q, qpe, z, zpe, gaze, srm.gaze_emb, prev, srm.prev_emb)
    expected = reference_block(blk, q, qpe, z, zpe, gaze, srm.gaze_emb, prev, srm.prev_emb)
    torch.testing.assert_close(out, expected, rtol=1e-6, atol=1e-6)


def test_forward_matches_reference_and_does_not_chain_z():
    srm = tiny_srm(num_blocks=3).eval()
    randomise_norms(srm)
    q, z, qpe, zpe, q_vis = tiny_inputs()
    seen_z = []
    for blk in srm.blocks:
        blk.register_forward_pre_hook(lambda m, args: seen_z.append(args[2]))

    out = srm(q, z, qpe, zpe, q_vis)
    assert all(t is z for t in seen_z) and len(seen_z) == 3

    prev, gaze = rank_indicators(q_vis)
    expected_q = q
    for blk in srm.blocks:
        expected_q = reference_block(
            blk, expected_q, qpe, z, zpe, gaze, srm.gaze_emb, prev, srm.prev_emb
        )
    torch.testing.assert_close(out, srm.head(expected_q), rtol=1e-5, atol=1e-5)


def test_softmax_head_has_no_influence():
    srm = tiny_srm().eval()
    q, z, qpe, zpe, q_vis = tiny_inputs()
    before = srm(q, z, qpe, zpe, q_vis)
    for blk in srm.blocks:
        nn.init.normal_(blk.softmax_head.weight, std=10.0)
        nn.init.normal_(blk.softmax_head.bias, std=10.0)
    torch.testing.assert_close(srm(q, z, qpe, zpe, q_vis), before, rtol=0, atol=0)


def test_train_and_eval_returns():
    srm = tiny_srm()
    q, z, qpe, zpe, q_vis = tiny_inputs()
    srm.train()
    out, aux = srm(q, z, qpe, zpe, q_vis)
    assert out.shape == (2, 5, 1) and aux == []
    srm.eval()
    ev = srm(q, z, qpe, zpe, q_vis)
    torch.testing.assert_close(ev, out, rtol=0, atol=0)


def test_ranking_state_changes_output():
    srm = tiny_srm()
    q, z, qpe, zpe, q_vis = tiny_inputs()
    out_ranked = srm(q, z, qpe, zpe, q_vis)[0]
    out_empty = srm(q, z, qpe, zpe, torch.zeros_like(q_vis))[0]
    assert not torch.allclose(out_ranked, out_empty)


def test_gradients_are_those_of_the_function():
    # Autograd's gradients w.r.t. the inputs and the rank embeddings equal finite differences
    # (float64, random projections): a detached path or a wrong backward fails.
    srm = tiny_srm().double()
    q, z, qpe, zpe, q_vis = (t.double() for t in tiny_inputs())
    params = {name: p.detach() for name, p in srm.named_parameters()}

    def scores(q, z, qpe, zpe, gaze_emb, prev_emb):
        used = dict(params, gaze_emb=gaze_emb, prev_emb=prev_emb)
        return functional_call(srm, used, (q, z, qpe, zpe, q_vis))[0]

    inputs = (q, z, qpe, zpe, srm.gaze_emb.detach(), srm.prev_emb.detach())
    inputs = tuple(t.clone().requires_grad_(True) for t in inputs)
    assert torch.autograd.gradcheck(scores, inputs, fast_mode=True)
    grads = torch.autograd.grad(scores(*inputs).sum(), inputs)
    assert all(g.abs().sum() > 0 for g in grads)


def test_initialisation():
    srm = tiny_srm()
    blk = srm.blocks[0]
    assert srm.prev_emb.shape == srm.gaze_emb.shape == (8,)
    assert torch.count_nonzero(blk.before.bias) == 0 and torch.count_nonzero(blk.mlp[0].bias) == 0
    assert torch.equal(blk.norm_mlp.weight, torch.ones(8))
    assert torch.count_nonzero(srm.head[0].bias) > 0  # default nn.Linear init


@pytest.mark.parametrize(
    "yaml_name, manifest_name, num_params",
    [
        ("assr_swinL_config.yaml", "swinL.yaml", 29_256_711),
        ("assr_swinL_correct_config.yaml", "swinL_correct.yaml", 9_796_611),
    ],
)
def test_state_dict_matches_official_manifest(yaml_name, manifest_name, num_params):
    with torch.device("meta"):
        srm = build_gaze_shift(official_cfg(yaml_name))
    assert module_entries(srm) == manifest_entries(manifest_name, "gaze_shift.")
    assert sum(p.numel() for p in srm.parameters()) == num_params


def test_parity_checkpoint_loads_strictly():
    srm = build_gaze_shift(parity_cfg())
    load_parity_strictly(srm, "gaze_shift.")
    assert len(srm.blocks) == 2
