import pytest
import torch
from torch import nn
from torchvision.ops import roi_align

from seqrank.modeling.box_ops import xyhw_to_xyxy
from seqrank.modeling.fovea import FoveaModule, LookByMultiQ, ROISample
from seqrank.modeling.registry import build_instance_seg
from tests.helpers import (
    load_parity_strictly,
    manifest_entries,
    module_entries,
    official_cfg,
    parity_cfg,
)


def ramp_features(b=1, h=6, w=8):
    """Channel 0 = column index, channel 1 = row index (roi_align interpolates these exactly)."""
    ys, xs = torch.meshgrid(
        torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij"
    )
    return torch.stack([xs, ys]).unsqueeze(0).repeat(b, 1, 1, 1)


def test_xyhw_to_xyxy_height_before_width():
    box = torch.tensor([0.5, 0.4, 0.2, 0.6])  # cx, cy, h, w
    torch.testing.assert_close(xyhw_to_xyxy(box), torch.tensor([0.2, 0.3, 0.8, 0.5]))


def test_roi_sample_known_boxes():
    roi = ROISample(2, (2, 2))
    nn.init.zeros_(roi.grid_embedding)
    feat = ramp_features(h=6, w=8)
    # (cx, cy, h, w) = (0.5, 0.25, 0.25, 0.5) -> x in [2, 6], y in [0.75, 2.25] on the 6 x 8 map.
    out = roi(feat, torch.tensor([[[0.5, 0.25, 0.25, 0.5]]]))
    assert out.shape == (1, 1, 2, 2, 2)
    torch.testing.assert_close(out[0, 0, 0], torch.tensor([[3.0, 5.0], [3.0, 5.0]]))
    torch.testing.assert_close(out[0, 0, 1], torch.tensor([[1.125, 1.125], [1.875, 1.875]]))

    centre = ROISample(2, (1, 1))
    nn.init.zeros_(centre.grid_embedding)
    out = centre(feat, torch.tensor([[[0.5, 0.25, 0.25, 0.5]]]))
    torch.testing.assert_close(out[0, 0, :, 0, 0], torch.tensor([4.0, 1.5]))


def test_roi_sample_clamps_batches_and_adds_grid_embedding():
    torch.manual_seed(0)
    roi = ROISample(2, (3, 3))
    feat = torch.randn(2, 2, 6, 8)
    boxes = torch.tensor(
        [
            [[0.9, 0.1, 0.4, 0.4], [0.5, 0.5, 0.2, 0.3]],
            [[0.0, 1.0, 3.0, 3.0], [0.3, 0.6, 0.1, 0.5]],
        ]
    )
    xyxy = torch.tensor(
        [
            [0.7, 0.0, 1.0, 0.3],
            [0.35, 0.4, 0.65, 0.6],
            [0.0, 0.0, 1.0, 1.0],
            [0.05, 0.55, 0.55, 0.65],
        ]
    ) * torch.tensor([8.0, 6.0, 8.0, 6.0])
    rois = torch.cat([torch.tensor([[0.0], [0.0], [1.0], [1.0]]), xyxy], dim=1)
    expected = roi_align(feat, rois, (3, 3), spatial_scale=1.0, sampling_ratio=-1, aligned=False)
    expected = (expected + roi.grid_embedding).view(2, 2, 2, 3, 3)
    torch.testing.assert_close(roi(feat, boxes), expected, rtol=1e-6, atol=1e-6)


def small_look(seed=0):
    torch.manual_seed(seed)
    return LookByMultiQ(8, 2, 16)


def test_look_by_multiq_has_no_residual_on_input_queries():
    look = small_look()
    nn.init.zeros_(look.linear1[0].weight)
    nn.init.zeros_(look.linear1[0].bias)
    qpe, feat, feat_pe = torch.randn(1, 3, 8), torch.randn(1, 8, 4, 5), torch.randn(1, 8, 4, 5)
    roi_feat = torch.randn(1, 3, 8, 2, 2)
    out_a = look(torch.randn(1, 3, 8), qpe, feat, feat_pe, roi_feat)
    out_b = look(torch.randn(1, 3, 8), qpe, feat, feat_pe, roi_feat)
    torch.testing.assert_close(out_a, out_b, rtol=0, atol=0)


def test_look_by_multiq_sub_query_layout():
    look = small_look()
    recorded = {}

    def record(module, args):
        recorded["q"], recorded["k"], recorded["v"] = args

    look.cross_attn.register_forward_pre_hook(record)
    q, qpe = torch.randn(2, 3, 8), torch.randn(2, 3, 8)
    feat, feat_pe = torch.randn(2, 8, 4, 5), torch.randn(2, 8, 4, 5)
    roi_feat = torch.randn(2, 3, 8, 2, 3)
    out = look(q, qpe, feat, feat_pe, roi_feat)
    assert out.shape == (2, 3, 8)

    assert recorded["q"].shape == (2, 18, 8)
    for n in range(3):
        for p in range(6):
            cell = roi_feat[:, n, :, p // 3, p % 3]
            expected = look.linear1(q[:, n]) + look.linear2(cell) + qpe[:, n]
            torch.testing.assert_close(recorded["q"][:, n * 6 + p], expected)
    keys = feat.flatten(2).transpose(1, 2)
    torch.testing.assert_close(recorded["k"], keys + feat_pe.flatten(2).transpose(1, 2))
    torch.testing.assert_close(recorded["v"], keys)


def tiny_fovea(seed=0):
    torch.manual_seed(seed)
    return FoveaModule(
        num_queries=5,
        embed_dim=8,
        num_heads=2,
        hidden_dim=16,
        num_blocks=6,
        key_features=["res5", "res4", "res3"],
        mask_key="res2",
        grid_sizes=[(1, 1), (2, 2), (3, 3)],
    )


def tiny_inputs(b=2, c=8):
    sizes = {"res2": (16, 12), "res3": (8, 6), "res4": (4, 3), "res5": (2, 2)}
    feats = {k: torch.randn(b, c, *s) for k, s in sizes.items()}
    pes = {k: torch.randn(b, c, *s) for k, s in sizes.items()}
    return feats, pes


def test_fovea_initialisation():
    fovea = tiny_fovea()
    assert torch.count_nonzero(fovea.q) == 0
    assert fovea.qpe.std() > 0.5
    assert [tuple(r.grid_embedding.shape) for r in fovea.roi_layers] == [
        (8, 1, 1),
        (8, 2, 2),
        (8, 3, 3),
    ]
    block = fovea.lookByMultiQ_layers[0]
    assert torch.count_nonzero(block.cross_attn.q_proj.bias) == 0
    assert torch.equal(block.linear1[1].weight, torch.ones(8))
    # The head keeps the default Linear biases.
    assert torch.count_nonzero(fovea.head.score_head.bias) == 1


def test_fovea_outputs_and_stage_schedule():
    fovea = tiny_fovea()
    feats, pes = tiny_inputs()
    calls = []
    for lvl, layer in enumerate(fovea.roi_layers):
        layer.register_forward_pre_hook(lambda m, args, lvl=lvl: calls.append((lvl,) + args))

    q, qpe, out, aux = fovea(feats, pes)
    assert q.shape == qpe.shape == (2, 5, 8)
    assert len(aux) == 6
    for pred in aux + [out]:
        assert pred["masks"].shape == (2, 5, 16, 12)
        assert pred["scores"].shape == (2, 5, 1)
        assert pred["bboxes"].shape == (2, 5, 4)

    torch.testing.assert_close(qpe, fovea.qpe.expand(2, -1, -1))
    torch.testing.assert_close(out["masks"], fovea.head(q, feats["res2"])["masks"])
    raw = fovea.head(fovea.q.expand(2, -1, -1), feats["res2"])
    for key in raw:
        torch.testing.assert_close(aux[0][key], raw[key])

    schedule = ["res5", "res4", "res3"] * 2
    assert [c[0] for c in calls] == [0, 1, 2, 0, 1, 2]
    for idx, (lvl, feat, boxes) in enumerate(calls):
        expected_feat = feats[schedule[idx]] + fovea.level_embed.weight[lvl].view(1, -1, 1, 1)
        torch.testing.assert_close(feat, expected_feat)
        prev = raw if idx == 0 else aux[idx]
        torch.testing.assert_close(boxes, prev["bboxes"].sigmoid())


def test_fovea_backward_reaches_the_queries_through_every_block():
    # From the final outputs only: a query detached between two blocks leaves the blocks before
    # it (and the initial queries) without gradient.
    fovea = tiny_fovea()
    feats, pes = tiny_inputs()
    _, _, out, _ = fovea(feats, pes)
    (out["masks"].sum() + out["bboxes"].sum() + out["scores"].sum()).backward()
    assert torch.isfinite(fovea.q.grad).all() and fovea.q.grad.abs().sum() > 0
    for block in fovea.lookByMultiQ_layers:
        grads = [p.grad for p in block.parameters()]
        assert all(g is not None and torch.isfinite(g).all() for g in grads)
        assert sum(float(g.abs().sum()) for g in grads) > 0


def test_fovea_mask_gradients_are_those_of_the_function():
    # The mask features reach the masks through the head only (no box / roi_align path, whose
    # box gradient torchvision does not compute), so autograd must equal finite differences.
    fovea = tiny_fovea().double()
    feats, pes = tiny_inputs()
    feats = {k: v.double() for k, v in feats.items()}
    pes = {k: v.double() for k, v in pes.items()}

    def masks(res2):
        return fovea({**feats, "res2": res2}, pes)[2]["masks"]

    res2 = feats["res2"].clone().requires_grad_(True)
    assert torch.autograd.gradcheck(masks, (res2,), fast_mode=True)


@pytest.mark.parametrize(
    "yaml_name, manifest_name",
    [
        ("assr_swinL_config.yaml", "swinL.yaml"),
        ("assr_swinL_correct_config.yaml", "swinL_correct.yaml"),
    ],
)
def test_state_dict_matches_official_manifest(yaml_name, manifest_name):
    with torch.device("meta"):
        fovea = build_instance_seg(official_cfg(yaml_name))
    assert module_entries(fovea) == manifest_entries(manifest_name, "instance_seg.")
    assert sum(p.numel() for p in fovea.parameters()) == 11_052_293


def test_parity_checkpoint_loads_strictly():
    fovea = build_instance_seg(parity_cfg())
    load_parity_strictly(fovea, "instance_seg.")

    torch.manual_seed(0)
    sizes = {"res2": (12, 12), "res3": (6, 6), "res4": (3, 3), "res5": (2, 2)}
    feats = {k: torch.randn(1, 64, *s) for k, s in sizes.items()}
    q, _, out, aux = fovea.eval()(feats, {k: torch.randn_like(v) for k, v in feats.items()})
    assert out["masks"].shape == (1, 16, 12, 12) and len(aux) == 6
    assert torch.isfinite(q).all()
