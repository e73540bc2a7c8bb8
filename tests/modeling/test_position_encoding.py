import math

import pytest
import torch
import torch.nn.functional as F

from seqrank.modeling.position_encoding import (
    LearnablePE,
    PositionEmbeddingRandom,
    PositionEmbeddingSine,
)
from seqrank.modeling.registry import POSITION_ENCODING, build_position_encoding
from tests.helpers import (
    load_parity_strictly,
    manifest_entries,
    module_entries,
    official_cfg,
    parity_cfg,
    seqrank_cfg,
)


def make_cfg(pe="APE", embed_dim=8):
    cfg = seqrank_cfg()
    cfg.MODEL.PE = pe
    cfg.MODEL.COMMON.EMBED_DIM = embed_dim
    return cfg


def test_registry_names():
    assert POSITION_ENCODING.get("APE") is LearnablePE
    assert POSITION_ENCODING.get("SINE") is PositionEmbeddingSine
    assert POSITION_ENCODING.get("RANDOM") is PositionEmbeddingRandom


@pytest.mark.parametrize("pe", ["APE", "SINE", "RANDOM"])
def test_shape_and_content_independence(pe):
    torch.manual_seed(0)
    layer = build_position_encoding(make_cfg(pe, 8))
    x = torch.randn(3, 8, 5, 7)
    out = layer(x)
    assert out.shape == (3, 8, 5, 7)
    torch.testing.assert_close(out, layer(torch.randn(3, 8, 5, 7)), rtol=0, atol=0)
    torch.testing.assert_close(out[0], out[2], rtol=0, atol=0)


def test_ape_state_dict_and_resize():
    torch.manual_seed(0)
    layer = build_position_encoding(make_cfg("APE", 8))
    assert [(k, tuple(v.shape)) for k, v in layer.state_dict().items()] == [("ape", (8, 25, 25))]
    assert layer.ape.abs().max() <= 2.0
    torch.testing.assert_close(layer(torch.zeros(2, 8, 25, 25))[1], layer.ape, rtol=0, atol=0)
    expected = F.interpolate(layer.ape[None], size=(50, 13), mode="bilinear", align_corners=False)
    torch.testing.assert_close(layer(torch.zeros(1, 8, 50, 13)), expected, rtol=0, atol=0)


def test_sine_matches_detr_formula():
    layer = build_position_encoding(make_cfg("SINE", 8))
    assert len(layer.state_dict()) == 0
    h, w = 3, 4
    out = layer(torch.zeros(1, 8, h, w))[0]
    for i, j in [(0, 0), (2, 1), (1, 3)]:
        y = (i + 1) / (h + 1e-6) * 2 * math.pi
        x = (j + 1) / (w + 1e-6) * 2 * math.pi
        expected = []
        for v in (y, x):
            for k in range(4):
                arg = v / 10000 ** (2 * (k // 2) / 4)
                expected.append(math.sin(arg) if k % 2 == 0 else math.cos(arg))
        assert out[:, i, j].tolist() == pytest.approx(expected, abs=1e-5)


def test_random_matches_sam_formula():
    torch.manual_seed(0)
    layer = build_position_encoding(make_cfg("RANDOM", 8))
    matrix = layer.positional_encoding_gaussian_matrix
    assert list(layer.state_dict()) == ["positional_encoding_gaussian_matrix"]
    assert matrix.shape == (2, 4)
    h, w = 3, 5
    out = layer(torch.zeros(2, 8, h, w))[1]
    for i, j in [(0, 0), (2, 4), (1, 2)]:
        coords = torch.tensor([2 * (j + 0.5) / w - 1, 2 * (i + 0.5) / h - 1])
        proj = 2 * math.pi * (coords @ matrix)
        expected = torch.cat([proj.sin(), proj.cos()])
        torch.testing.assert_close(out[:, i, j], expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("manifest_name", ["swinL.yaml", "swinL_correct.yaml"])
def test_ape_matches_official_manifest(manifest_name):
    cfg_name = "assr_" + manifest_name.replace(".yaml", "_config.yaml")
    with torch.device("meta"):
        layer = build_position_encoding(official_cfg(cfg_name))
    assert module_entries(layer) == manifest_entries(manifest_name, "pe_layer.")
    assert sum(p.numel() for p in layer.parameters()) == 160_000


def test_parity_checkpoint_loads_strictly():
    layer = build_position_encoding(parity_cfg())
    sub = load_parity_strictly(layer, "pe_layer.")
    torch.testing.assert_close(layer(torch.zeros(1, 64, 25, 25))[0], sub["ape"], rtol=0, atol=0)
