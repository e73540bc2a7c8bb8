import pytest
import torch
import torch.nn.functional as F
from torch import nn

from seqrank.modeling.neck import FPN, FRC, FrcPN, resize_like
from seqrank.modeling.registry import build_neck
from tests.helpers import (
    load_parity_strictly,
    manifest_entries,
    module_entries,
    official_cfg,
    parity_cfg,
)

KEYS = ["res2", "res3", "res4", "res5"]


@pytest.mark.parametrize(
    "yaml_name, manifest_name, neck_cls, num_params",
    [
        ("assr_swinL_config.yaml", "swinL.yaml", FrcPN, 1_138_176),
        ("assr_swinL_correct_config.yaml", "swinL_correct.yaml", FPN, 2_709_504),
    ],
)
def test_state_dict_matches_official_manifest(yaml_name, manifest_name, neck_cls, num_params):
    cfg = official_cfg(yaml_name)
    with torch.device("meta"):
        neck = build_neck(cfg)
    assert type(neck) is neck_cls
    assert module_entries(neck) == manifest_entries(manifest_name, "neck.")
    assert sum(p.numel() for p in neck.parameters()) == num_params


def test_parity_checkpoint_loads_strictly():
    load_parity_strictly(build_neck(parity_cfg()), "neck.")


def tiny_features(batch=2, channels=(4, 6, 8, 10), sizes=(16, 8, 4, 2)):
    return {k: torch.randn(batch, c, s, s + 1) for k, c, s in zip(KEYS, channels, sizes)}


@pytest.mark.parametrize("neck_cls", [FPN, FrcPN])
def test_output_shapes_and_top_down_wiring(neck_cls):
    torch.manual_seed(0)
    neck = neck_cls(in_channels=[4, 6, 8, 10], embed_dim=12).eval()
    feats = tiny_features()
    out = neck(feats)
    assert list(out) == KEYS
    for k in KEYS:
        assert out[k].shape == (2, 12) + feats[k].shape[-2:]

    lat = [conv(feats[k]) for conv, k in zip(neck.lateral_conv, KEYS)]
    fuse = neck.fpn_layers if neck_cls is FPN else neck.frcs
    r4 = fuse[0](lat[3], lat[2])
    r3 = fuse[1](r4, lat[1])
    r2 = fuse[2](r3, lat[0])
    for k, ref in zip(KEYS, [r2, r3, r4, lat[3]]):
        torch.testing.assert_close(out[k], ref, rtol=0, atol=0)


def test_initialisation_rules():
    fpn = FPN(in_channels=[4, 6, 8, 10], embed_dim=12)
    frcpn = FrcPN(in_channels=[4, 6, 8, 10], embed_dim=12)
    # FPN: xavier / zero-bias laterals, default-init fusion layers.
    assert all(torch.count_nonzero(seq[0].bias) == 0 for seq in fpn.lateral_conv)
    assert all(torch.count_nonzero(layer.scale.bias) > 0 for layer in fpn.fpn_layers)
    # FrcPN: default-init laterals, xavier / zero-bias FRC modules.
    assert all(torch.count_nonzero(seq[0].bias) > 0 for seq in frcpn.lateral_conv)
    assert all(
        torch.count_nonzero(frc.conv1[0].bias) == 0 and torch.count_nonzero(frc.conv2[0].bias) == 0
        for frc in frcpn.frcs
    )


def test_fpn_layer_formula():
    torch.manual_seed(0)
    layer = FPN(in_channels=[4, 4, 4, 4], embed_dim=4).fpn_layers[0]
    high, low = torch.randn(1, 4, 3, 3), torch.randn(1, 4, 5, 7)
    up = F.interpolate(high, size=(5, 7), mode="bilinear", align_corners=False)
    torch.testing.assert_close(layer(high, low), layer.conv(layer.scale(up) + low))


def test_frc_mask_hand_checked():
    frc = FRC(1, 1)
    low = torch.arange(1.0, 10.0).view(1, 1, 3, 3)
    mask = frc.similarity_mask(low)[0, 0]  # 9 x 3 x 3, neighbours in row-major (dy, dx) order
    # Centre pixel: neighbours 1..9, mean 5; the centre (5) is not above it, so the neighbours
    # that are not above the mean (1..5) count.
    assert mask[:, 1, 1].tolist() == [1, 1, 1, 1, 1, 0, 0, 0, 0]
    # Top-left pixel: neighbours [0, 0, 0, 0, 1, 2, 0, 4, 5] (zero padding), mean 12 / 9.
    assert mask[:, 0, 0].tolist() == [1, 1, 1, 1, 1, 0, 1, 0, 0]
    # Bottom-right pixel: neighbours [5, 6, 0, 8, 9, 0, 0, 0, 0], mean 28 / 9; centre 9 is above.
    assert mask[:, 2, 2].tolist() == [1, 1, 0, 1, 1, 0, 0, 0, 0]
    # The centre always counts.
    assert torch.all(frc.similarity_mask(torch.randn(2, 3, 5, 4))[:, :, 4] == 1)


def test_frc_fusion_counts_padding_in_denominator():
    frc = FRC(1, 1)
    frc.conv1 = nn.Identity()
    frc.conv2 = nn.Identity()
    low = torch.arange(1.0, 10.0).view(1, 1, 3, 3)
    high = torch.full((1, 1, 3, 3), 2.0)
    out = frc(high, low)[0, 0]
    # Top-left: 6 counted neighbours, only the centre lies inside the image.
    assert out[0, 0].item() == pytest.approx(2.0 * 1 / (6 + 1e-6) + 1.0, abs=1e-6)
    # Centre: 5 counted neighbours, all inside.
    assert out[1, 1].item() == pytest.approx(2.0 * 5 / (5 + 1e-6) + 5.0, abs=1e-6)


def naive_frc_core(high_up, low):
    """Loop-based x = sum(mask * neighbours(high_up)) / (sum(mask) + 1e-6), zero padded."""
    b, c, h, w = low.shape
    pad_low, pad_high = F.pad(low, (1, 1, 1, 1)), F.pad(high_up, (1, 1, 1, 1))
    out = torch.zeros_like(low)
    for i in range(h):
        for j in range(w):
            nb_low = pad_low[:, :, i : i + 3, j : j + 3].reshape(b, c, 9)
            nb_high = pad_high[:, :, i : i + 3, j : j + 3].reshape(b, c, 9)
            thr = nb_low.mean(-1, keepdim=True)
            same = (nb_low > thr) == (low[:, :, i, j, None] > thr)
            m = same.to(low.dtype)
            out[:, :, i, j] = (nb_high * m).sum(-1) / (m.sum(-1) + 1e-6)
    return out


def test_frc_matches_loop_reference():
    torch.manual_seed(0)
    frc = FRC(5, 5)
    high, low = torch.randn(2, 5, 3, 4), torch.randn(2, 5, 6, 7)
    high_up = F.interpolate(frc.conv1(high), size=(6, 7), mode="bilinear", align_corners=False)
    expected = frc.conv2(naive_frc_core(high_up, low) + low)
    torch.testing.assert_close(frc(high, low), expected, rtol=1e-5, atol=1e-5)


def unfold_frc_core(high_up, low):
    """The original's formulation: nn.Unfold neighbours, an arithmetic mask, all maps at once."""
    b, c, h, w = low.shape
    unfold = nn.Unfold(kernel_size=3, padding=1)
    nbr = unfold(low).reshape(b, c, 9, h, w)
    thr = nbr.mean(dim=2, keepdim=True)
    pos = (nbr - thr > 0).to(low.dtype)
    idc = (low.unsqueeze(2) - thr > 0).to(low.dtype)
    mask = idc * pos + (1 - idc) * (1 - pos)
    xh = unfold(high_up).reshape(b, c, 9, h, w)
    return (xh * mask).sum(dim=2) / (mask.sum(dim=2) + 1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape", [(2, 5, 6, 7), (1, 4, 50, 50), (3, 3, 13, 29), (1, 2, 64, 64)])
def test_frc_is_bit_identical_to_the_unfold_formulation(shape, dtype):
    # Sizes whose H x W is and is not a multiple of the reduction kernels' vector width: the
    # remainder is summed in another order, which a re-implemented reduction would not follow.
    frc = FRC(shape[1], shape[1])
    frc.conv1 = nn.Identity()
    frc.conv2 = nn.Identity()
    high, low = torch.randn(shape).to(dtype), torch.randn(shape).to(dtype)
    low[0, 0, :2] = 0.5  # ties with the local mean
    expected = unfold_frc_core(resize_like(high, low), low) + low
    assert torch.equal(frc(high, low), expected)
