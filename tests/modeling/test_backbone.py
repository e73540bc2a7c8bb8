"""Backbones: Swin numerics / layout (ARCHITECTURE.md §3.1, §10.3) and ResNeXt layout (§3.2).

Shapes: B = batch, H x W = token map, C = channels, ws = window size.
"""

import math

import pytest
import torch
import torch.nn.functional as F
import torchvision
from detectron2.modeling import BACKBONE_REGISTRY, ShapeSpec
from torch import nn

from seqrank.modeling.backbone import convert_torchvision_resnet_state_dict
from seqrank.modeling.backbone import swin as swin_module
from seqrank.modeling.backbone.swin import (
    PatchEmbed,
    PatchMerging,
    SwinTransformerBlock,
    WindowAttention,
    relative_position_index,
    shifted_window_mask,
)
from tests.helpers import (
    load_parity_strictly,
    manifest_entries,
    manifest_entry,
    module_entries,
    parity_cfg,
    seqrank_cfg,
)


def swin_cfg(**overrides):
    cfg = seqrank_cfg()
    cfg.MODEL.BACKBONE.NAME = "D2SwinTransformer"
    cfg.MODEL.SWIN.EMBED_DIM = 32
    cfg.MODEL.SWIN.DEPTHS = [2, 2, 2, 2]
    cfg.MODEL.SWIN.NUM_HEADS = [1, 2, 4, 8]
    cfg.MODEL.SWIN.WINDOW_SIZE = 7
    cfg.MODEL.SWIN.DROP_PATH_RATE = 0.0
    for key, value in overrides.items():
        cfg.MODEL.SWIN[key] = value
    return cfg


def build(cfg):
    return BACKBONE_REGISTRY.get(cfg.MODEL.BACKBONE.NAME)(cfg, ShapeSpec(channels=3))


@pytest.fixture(scope="module")
def tiny_swin():
    torch.manual_seed(0)
    return build(swin_cfg()).eval()


def test_all_backbones_registered():
    for name in ("D2SwinTransformer", "ResNeXt50", "ResNeXt101", "ResNet152"):
        assert BACKBONE_REGISTRY.get(name) is not None


@pytest.mark.parametrize("size", [(200, 200), (190, 170), (33, 65), (8, 8)])
def test_swin_output_shapes(tiny_swin, size):
    h, w = size
    with torch.no_grad():
        outs = tiny_swin(torch.randn(2, 3, h, w))
    assert list(outs) == ["res2", "res3", "res4", "res5"]
    hh, ww = math.ceil(h / 4), math.ceil(w / 4)
    for i, name in enumerate(["res2", "res3", "res4", "res5"]):
        assert outs[name].shape == (2, 32 * 2**i, hh, ww)
        assert torch.isfinite(outs[name]).all()
        hh, ww = math.ceil(hh / 2), math.ceil(ww / 2)


def test_swin_output_shape_spec(tiny_swin):
    spec = tiny_swin.output_shape()
    assert {k: (v.channels, v.stride) for k, v in spec.items()} == {
        "res2": (32, 4),
        "res3": (64, 8),
        "res4": (128, 16),
        "res5": (256, 32),
    }
    assert tiny_swin.size_divisibility == 32
    with pytest.raises(ValueError):
        tiny_swin(torch.randn(3, 32, 32))


def test_swin_out_features_filter_keeps_all_stage_norms():
    model = build(swin_cfg(OUT_FEATURES=["res3", "res5"])).eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 64, 64))
    assert list(outs) == ["res3", "res5"]
    assert list(model.output_shape()) == ["res3", "res5"]
    keys = model.state_dict().keys()
    assert all(f"norm{i}.weight" in keys for i in range(4))
    with pytest.raises(ValueError, match="res6"):
        build(swin_cfg(OUT_FEATURES=["res2", "res6"]))


def test_relative_position_index_values():
    assert relative_position_index(2).tolist() == [
        [4, 3, 1, 0],
        [5, 4, 2, 1],
        [7, 6, 4, 3],
        [8, 7, 5, 4],
    ]
    ws = 7
    idx = relative_position_index(ws)
    assert idx.dtype == torch.int64 and idx.shape == (49, 49)
    assert int(idx.min()) == 0 and int(idx.max()) == (2 * ws - 1) ** 2 - 1
    for a, b in [(0, 48), (48, 0), (10, 23), (30, 30)]:
        ra, ca, rb, cb = a // ws, a % ws, b // ws, b % ws
        assert idx[a, b] == (ra - rb + ws - 1) * (2 * ws - 1) + (ca - cb + ws - 1)


def test_relative_position_index_is_persistent_buffer():
    attn = WindowAttention(dim=8, window_size=3, num_heads=2)
    sd = attn.state_dict()
    assert list(sd) == [
        "relative_position_bias_table",
        "relative_position_index",
        "qkv.weight",
        "qkv.bias",
        "proj.weight",
        "proj.bias",
    ]
    assert sd["relative_position_index"].dtype == torch.int64
    assert sd["relative_position_bias_table"].shape == (25, 2)


def test_shift_mask_values():
    mask = shifted_window_mask(14, 14, window_size=7, shift_size=3)
    assert mask.shape == (4, 49, 49) and mask.dtype == torch.float32
    assert set(mask.unique().tolist()) == {0.0, -100.0}
    assert (mask[0] == 0).all()
    # Bottom-right window: rows/cols 0..3 belong to one region, 4..6 to another.
    region = torch.tensor([[(r >= 4) * 2 + (c >= 4) for c in range(7)] for r in range(7)]).flatten()
    expected = torch.where(region[:, None] == region[None, :], 0.0, -100.0)
    assert torch.equal(mask[3], expected)
    # A map that fits in one window still gets the 4 regions (shift is never disabled).
    single = shifted_window_mask(7, 7, window_size=7, shift_size=3)
    assert torch.equal(single[0], expected)


def test_shift_never_disabled_on_small_maps(tiny_swin):
    shifts = [[blk.shift_size for blk in layer.blocks] for layer in tiny_swin.layers]
    assert shifts == [[0, 3]] * 4
    torch.manual_seed(1)
    shifted = SwinTransformerBlock(8, 2, window_size=7, shift_size=3).eval()
    plain = SwinTransformerBlock(8, 2, window_size=7, shift_size=0).eval()
    plain.load_state_dict(shifted.state_dict())
    x = torch.randn(1, 9, 8)
    mask = shifted_window_mask(7, 7, 7, 3)
    with torch.no_grad():
        assert not torch.allclose(shifted(x, 3, 3, mask), plain(x, 3, 3, mask))


def _region(coord, size, ws, shift):
    return (coord >= size - ws).long() + (coord >= size - shift).long()


def dense_block_reference(blk, x, h, w):
    """Dense B x L x L attention over the padded (rolled) map, restricted to same-window pairs."""
    ws, s = blk.window_size, blk.shift_size
    attn = blk.attn
    b, _, c = x.shape
    heads = attn.num_heads
    hp, wp = math.ceil(h / ws) * ws, math.ceil(w / ws) * ws
    y = F.pad(blk.norm1(x).view(b, h, w, c), (0, 0, 0, wp - w, 0, hp - h))
    y = torch.roll(y, (-s, -s), (1, 2)).reshape(b, hp * wp, c)
    rows = torch.arange(hp).repeat_interleave(wp)
    cols = torch.arange(wp).repeat(hp)
    window = (rows // ws) * (wp // ws) + cols // ws
    q, k, v = attn.qkv(y).view(b, hp * wp, 3, heads, c // heads).unbind(2)
    logits = torch.einsum("blhd,bmhd->bhlm", q, k) * attn.scale
    dr = (rows % ws)[:, None] - (rows % ws)[None, :] + ws - 1
    dc = (cols % ws)[:, None] - (cols % ws)[None, :] + ws - 1
    logits = logits + attn.relative_position_bias_table[dr * (2 * ws - 1) + dc].permute(2, 0, 1)
    if s > 0:
        region = _region(rows, hp, ws, s) * 3 + _region(cols, wp, ws, s)
        logits = logits + torch.where(region[:, None] == region[None, :], 0.0, -100.0)
    logits = logits.masked_fill(window[:, None] != window[None, :], float("-inf"))
    out = torch.einsum("bhlm,bmhd->blhd", logits.softmax(-1), v).reshape(b, hp, wp, c)
    out = torch.roll(attn.proj(out), (s, s), (1, 2))[:, :h, :w].reshape(b, h * w, c)
    x = x + out
    return x + blk.mlp(blk.norm2(x))


@pytest.mark.parametrize("h,w,ws,shift", [(5, 9, 4, 0), (5, 9, 4, 2), (3, 3, 7, 3), (8, 8, 4, 2)])
def test_block_matches_dense_reference(h, w, ws, shift):
    torch.manual_seed(2)
    blk = SwinTransformerBlock(8, 2, window_size=ws, shift_size=shift).eval()
    with torch.no_grad():
        blk.attn.relative_position_bias_table.normal_()
        blk.attn.qkv.weight.mul_(4)
        x = torch.randn(2, h * w, 8)
        hp, wp = math.ceil(h / ws) * ws, math.ceil(w / ws) * ws
        got = blk(x, h, w, shifted_window_mask(hp, wp, ws, ws // 2))
        want = dense_block_reference(blk, x, h, w)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_patch_merging_order_and_odd_padding():
    torch.manual_seed(3)
    merge = PatchMerging(4).eval()
    x = torch.randn(1, 5 * 3, 4)
    with torch.no_grad():
        got = merge(x, 5, 3)
        grid = F.pad(x.view(1, 5, 3, 4), (0, 0, 0, 1, 0, 1))
        parts = [grid[:, 0::2, 0::2], grid[:, 1::2, 0::2], grid[:, 0::2, 1::2], grid[:, 1::2, 1::2]]
        want = merge.reduction(merge.norm(torch.cat(parts, -1).view(1, 6, 16)))
    assert merge.reduction.bias is None
    torch.testing.assert_close(got, want, atol=0, rtol=0)


def test_patch_embed_pads_right_and_bottom():
    torch.manual_seed(4)
    embed = PatchEmbed(patch_size=4, embed_dim=8).eval()
    x = torch.randn(1, 3, 10, 13)
    with torch.no_grad():
        got = embed(x)
        ref = embed.proj(F.pad(x, (0, 3, 0, 2)))
        ref = embed.norm(ref.flatten(2).transpose(1, 2)).transpose(1, 2).view(1, 8, 3, 4)
    assert got.shape == (1, 8, 3, 4)
    torch.testing.assert_close(got, ref, atol=0, rtol=0)


def test_drop_path_linspace():
    model = build(swin_cfg(DROP_PATH_RATE=0.3))
    rates = [
        getattr(blk.drop_path, "drop_prob", 0.0) for layer in model.layers for blk in layer.blocks
    ]
    assert isinstance(model.layers[0].blocks[0].drop_path, nn.Identity)
    torch.testing.assert_close(torch.tensor(rates), torch.linspace(0, 0.3, 8))


def test_sdpa_path_matches_plain(tiny_swin):
    x = torch.randn(2, 3, 100, 90)
    with torch.no_grad():
        plain = tiny_swin(x)
        tiny_swin.set_use_sdpa(True)
        try:
            fused = tiny_swin(x)
        finally:
            tiny_swin.set_use_sdpa(False)
    assert all(not m.use_sdpa for m in tiny_swin.modules() if isinstance(m, WindowAttention))
    for name in plain:
        torch.testing.assert_close(fused[name], plain[name], atol=1e-5, rtol=1e-5)


def test_use_checkpoint_gives_same_gradients(monkeypatch):
    calls = []
    real_checkpoint = swin_module.checkpoint.checkpoint

    def counting_checkpoint(*args, **kwargs):
        calls.append(1)
        return real_checkpoint(*args, **kwargs)

    monkeypatch.setattr(swin_module.checkpoint, "checkpoint", counting_checkpoint)
    torch.manual_seed(5)
    ref = build(swin_cfg()).train()
    ckpt = build(swin_cfg(USE_CHECKPOINT=True)).train()
    ckpt.load_state_dict(ref.state_dict())
    x = torch.randn(1, 3, 28, 28)
    for model in (ref, ckpt):
        sum(o.square().mean() for o in model(x).values()).backward()
    assert len(calls) == 8
    with torch.no_grad():
        ckpt.eval()(x)
    assert len(calls) == 8
    for (name, p), q in zip(ref.named_parameters(), ckpt.parameters()):
        torch.testing.assert_close(q.grad, p.grad, atol=1e-6, rtol=1e-5, msg=name)


def test_swin_large_state_dict_matches_manifest():
    cfg = swin_cfg(EMBED_DIM=192, DEPTHS=[2, 2, 18, 2], NUM_HEADS=[6, 12, 24, 48], WINDOW_SIZE=12)
    cfg.MODEL.SWIN.DROP_PATH_RATE = 0.2
    with torch.device("meta"):
        model = build(cfg)
    for config in ("swinL.yaml", "swinL_correct.yaml"):
        assert module_entries(model) == manifest_entries(config, "backbone.")
        n_params = sum(p.numel() for p in model.parameters())
        assert n_params == manifest_entry(config)["per_module_parameters"]["backbone"]


def test_parity_checkpoint_backbone_loads_strictly():
    model = build(parity_cfg()).eval()
    load_parity_strictly(model, "backbone.")
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 200, 200))
    assert [tuple(v.shape[1:]) for v in outs.values()] == [
        (32, 50, 50),
        (64, 25, 25),
        (128, 13, 13),
        (256, 7, 7),
    ]


def resnet_cfg(name="ResNeXt50", keys=("res2", "res3", "res4", "res5")):
    cfg = seqrank_cfg()
    cfg.MODEL.BACKBONE.NAME = name
    cfg.MODEL.BACKBONE.FEATURE_KEYS = list(keys)
    return cfg


def test_resnext50_layout_and_outputs():
    model = build(resnet_cfg()).eval()
    sd = model.state_dict()
    assert len(sd) == 318
    assert sum(v.numel() for v in sd.values()) == 23_048_181
    assert list(sd)[:6] == [
        "layer0.0.weight",
        "layer0.1.weight",
        "layer0.1.bias",
        "layer0.1.running_mean",
        "layer0.1.running_var",
        "layer0.1.num_batches_tracked",
    ]
    assert "layer4.0.downsample.1.running_var" in sd and not any(k.startswith("fc.") for k in sd)
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 64, 64))
    assert {k: tuple(v.shape) for k, v in outs.items()} == {
        "res2": (1, 256, 16, 16),
        "res3": (1, 512, 8, 8),
        "res4": (1, 1024, 4, 4),
        "res5": (1, 2048, 2, 2),
    }
    assert {k: (s.channels, s.stride) for k, s in model.output_shape().items()} == {
        "res2": (256, 4),
        "res3": (512, 8),
        "res4": (1024, 16),
        "res5": (2048, 32),
    }


@pytest.mark.parametrize("name", ["ResNeXt101", "ResNet152"])
def test_other_resnets_build_with_feature_filter(name):
    with torch.device("meta"):
        model = build(resnet_cfg(name, keys=("res3", "res5")))
    assert list(model.output_shape()) == ["res3", "res5"]
    assert next(iter(model.state_dict())) == "layer0.0.weight"


def test_torchvision_state_dict_conversion_loads_strictly():
    net = torchvision.models.resnext50_32x4d(weights=None)
    converted, dropped = convert_torchvision_resnet_state_dict(net.state_dict())
    assert dropped == ["fc.weight", "fc.bias"]
    assert all(k.startswith("backbone.") for k in converted)
    wrapper = nn.Module()
    wrapper.backbone = build(resnet_cfg())
    wrapper.load_state_dict(converted, strict=True)
    assert torch.equal(wrapper.backbone.layer0[0].weight, net.conv1.weight)
    assert torch.equal(wrapper.backbone.layer0[1].running_var, net.bn1.running_var)
