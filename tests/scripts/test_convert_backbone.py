"""scripts/convert_backbone.py on a fabricated tiny checkpoint in Microsoft's Swin format."""

import argparse
import subprocess
import sys
from collections import OrderedDict

import pytest
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import get_cfg
from detectron2.modeling import BACKBONE_REGISTRY, ShapeSpec
from torch import nn

from scripts import convert_backbone as convert
from seqrank.config import add_seqrank_config

STAGE_NORMS = [f"backbone.norm{i}.{p}" for i in range(4) for p in ("weight", "bias")]


def tiny_swin():
    cfg = get_cfg()
    add_seqrank_config(cfg)
    cfg.MODEL.SWIN.EMBED_DIM = 32
    cfg.MODEL.SWIN.DEPTHS = [2, 2, 2, 2]
    cfg.MODEL.SWIN.NUM_HEADS = [1, 2, 4, 8]
    cfg.MODEL.SWIN.WINDOW_SIZE = 7
    return BACKBONE_REGISTRY.get("D2SwinTransformer")(cfg, ShapeSpec(channels=3))


def microsoft_state_dict(model):
    """The tiny backbone's weights renamed / extended the way Microsoft's checkpoints store them."""
    sd = OrderedDict(
        (k, v.clone()) for k, v in model.state_dict().items() if not k.startswith("norm")
    )
    for s, layer in enumerate(model.layers):
        for j, blk in enumerate(layer.blocks):
            if blk.shift_size > 0:
                sd[f"layers.{s}.blocks.{j}.attn_mask"] = torch.zeros(4, 49, 49)
    sd["norm.weight"] = torch.ones(256)
    sd["norm.bias"] = torch.zeros(256)
    sd["head.weight"] = torch.randn(10, 256)
    sd["head.bias"] = torch.randn(10)
    return sd


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    torch.manual_seed(0)
    model = tiny_swin()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_()
    path = tmp_path_factory.mktemp("src") / "swin_tiny_microsoft.pth"
    torch.save({"model": microsoft_state_dict(model)}, path)
    return path, model


def run_cli(args, repo_root, script=None, module="scripts.convert_backbone"):
    cmd = [sys.executable, script] if script else [sys.executable, "-m", module]
    return subprocess.run(
        cmd + [str(a) for a in args], cwd=repo_root, capture_output=True, text=True, timeout=120
    )


def check_converted(path, model):
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    assert ckpt["__author__"] == "seqrank-convert"
    assert ckpt["matching_heuristics"] is False
    keys = list(ckpt["model"])
    assert all(k.startswith("backbone.") for k in keys)
    assert not any(k.endswith("attn_mask") or ".head." in k for k in keys)
    assert "backbone.norm.weight" not in keys and "backbone.head.weight" not in keys

    wrapper = nn.Module()
    wrapper.backbone = tiny_swin()
    result = wrapper.load_state_dict(ckpt["model"], strict=False)
    assert sorted(result.missing_keys) == sorted(STAGE_NORMS)
    assert result.unexpected_keys == []
    for key, value in model.state_dict().items():
        if not key.startswith("norm"):
            assert torch.equal(wrapper.backbone.state_dict()[key], value), key


@pytest.mark.e2e
def test_cli_round_trip(source, tmp_path, repo_root):
    src, model = source
    out = tmp_path / "nested" / "swin_tiny_d2.pth"
    proc = run_cli([src, out], repo_root)
    assert proc.returncode == 0, proc.stderr
    assert "head.weight" in proc.stderr and "4 attn_mask buffers" in proc.stderr
    check_converted(out, model)
    assert [p.name for p in out.parent.iterdir()] == [out.name]


@pytest.mark.e2e
def test_readme_entry_point(source, tmp_path, repo_root):
    src, model = source
    out = tmp_path / "via_pretrained.pth"
    proc = run_cli(
        [src, out], tmp_path, script=str(repo_root / "pretrained" / "convert_backbone.py")
    )
    assert proc.returncode == 0, proc.stderr
    check_converted(out, model)


@pytest.mark.e2e
def test_old_module_name_still_runs(source, tmp_path, repo_root):
    src, model = source
    out = tmp_path / "via_old_name.pth"
    proc = run_cli([src, out], repo_root, module="scripts.convert_swin_backbone")
    assert proc.returncode == 0, proc.stderr
    check_converted(out, model)


def test_detectron2_checkpointer_accepts_output(source, tmp_path):
    src, model = source
    out = tmp_path / "d2.pth"
    assert convert.main([str(src), str(out)]) == 0
    wrapper = nn.Module()
    wrapper.backbone = tiny_swin()
    DetectionCheckpointer(wrapper).load(str(out))
    key = "layers.2.blocks.1.attn.relative_position_bias_table"
    assert torch.equal(wrapper.backbone.state_dict()[key], model.state_dict()[key])


def test_help(capsys):
    with pytest.raises(SystemExit) as exc:
        convert.main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "--arch" in out and "input" in out and "output" in out


def test_bare_state_dict_and_prefixed_keys_accepted(source, tmp_path):
    src, model = source
    bare = torch.load(src, weights_only=True)["model"]
    torch.save(bare, tmp_path / "bare.pth")
    ckpt = convert.run(str(tmp_path / "bare.pth"), str(tmp_path / "a.pth"))
    prefixed = {"backbone." + k: v for k, v in bare.items()}
    torch.save({"model": prefixed}, tmp_path / "prefixed.pth")
    again = convert.run(str(tmp_path / "prefixed.pth"), str(tmp_path / "b.pth"))
    assert list(again["model"]) == list(ckpt["model"])
    check_converted(tmp_path / "a.pth", model)


def test_resnet_arch(tmp_path):
    sd = {
        "conv1.weight": torch.randn(2, 3, 7, 7),
        "bn1.running_mean": torch.randn(2),
        "layer1.0.conv1.weight": torch.randn(2, 2, 1, 1),
        "fc.weight": torch.randn(5, 2),
    }
    torch.save(sd, tmp_path / "tv.pth")
    assert (
        convert.main([str(tmp_path / "tv.pth"), str(tmp_path / "out.pth"), "--arch", "resnet"]) == 0
    )
    out = torch.load(tmp_path / "out.pth", weights_only=True)["model"]
    assert list(out) == [
        "backbone.layer0.0.weight",
        "backbone.layer0.1.running_mean",
        "backbone.layer1.0.conv1.weight",
    ]
    assert torch.equal(out["backbone.layer0.0.weight"], sd["conv1.weight"])


def test_missing_input_is_one_line_error(tmp_path, capsys):
    out = tmp_path / "out.pth"
    assert convert.main([str(tmp_path / "nope.pth"), str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: input checkpoint not found: {tmp_path / 'nope.pth'}"]
    assert not out.exists()


@pytest.mark.parametrize(
    "payload,message",
    [
        ({"model": {"epoch": 3}}, "no tensors"),
        ({"iteration": 1}, "no tensors"),
        ([1, 2, 3], "not a checkpoint dict"),
        (argparse.Namespace(a=1), "--trust-pickle"),
        (b"garbage", "cannot read"),
    ],
)
def test_bad_inputs(payload, message, tmp_path, capsys):
    src = tmp_path / "bad.pth"
    if isinstance(payload, bytes):
        src.write_bytes(payload)
    else:
        torch.save(payload, src)
    out = tmp_path / "out.pth"
    assert convert.main([str(src), str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0]
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["bad.pth"]
