"""Optimizer parameter groups and gradient clipping follow the original rules."""

import pytest
import torch
from detectron2.modeling import build_model

import seqrank  # noqa: F401
from seqrank.engine import build_cfg, build_seqrank_optimizer, param_groups
from tests.conftest import PARITY


@pytest.fixture(scope="module")
def model_and_cfg():
    cfg = build_cfg(
        str(PARITY / "config.yaml"),
        ["MODEL.DEVICE", "cpu", "SOLVER.BACKBONE_MULTIPLIER", "0.1", "SOLVER.WEIGHT_DECAY", "0.05"],
    )
    return build_model(cfg), cfg


def _groups_by_name(model, cfg):
    names = {id(p): n for n, p in model.named_parameters()}
    return {names[id(g["params"][0])]: g for g in param_groups(model, cfg.SOLVER)}


def test_one_group_per_trainable_parameter(model_and_cfg):
    model, cfg = model_and_cfg
    groups = param_groups(model, cfg.SOLVER)
    assert all(len(g["params"]) == 1 for g in groups)
    assert len(groups) == sum(1 for p in model.parameters() if p.requires_grad)


def test_lr_and_weight_decay_rules(model_and_cfg):
    model, cfg = model_and_cfg
    g = _groups_by_name(model, cfg)
    base, wd = cfg.SOLVER.BASE_LR, 0.05
    assert g["backbone.patch_embed.proj.weight"]["lr"] == pytest.approx(base * 0.1)
    assert g["backbone.patch_embed.proj.weight"]["weight_decay"] == wd
    table = "backbone.layers.0.blocks.0.attn.relative_position_bias_table"
    assert g[table]["weight_decay"] == 0.0 and g[table]["lr"] == pytest.approx(base * 0.1)
    assert (
        g["backbone.layers.0.blocks.0.norm1.weight"]["weight_decay"] == cfg.SOLVER.WEIGHT_DECAY_NORM
    )
    assert g["instance_seg.level_embed.weight"]["weight_decay"] == cfg.SOLVER.WEIGHT_DECAY_EMBED
    assert g["neck.lateral_conv.0.2.norm.weight"]["weight_decay"] == 0.0
    for free in ("instance_seg.q", "instance_seg.qpe", "gaze_shift.prev_emb", "pe_layer.ape"):
        assert g[free]["weight_decay"] == wd and g[free]["lr"] == base, free
    assert g["gaze_shift.head.0.weight"]["lr"] == base


def test_frozen_parameters_are_skipped(model_and_cfg):
    model, cfg = model_and_cfg
    model.instance_seg.q.requires_grad_(False)
    try:
        names = _groups_by_name(model, cfg)
        assert "instance_seg.q" not in names
    finally:
        model.instance_seg.q.requires_grad_(True)


def test_full_model_clipping_and_optimizer_choice(model_and_cfg):
    model, cfg = model_and_cfg
    opt = build_seqrank_optimizer(cfg, model)
    assert isinstance(opt, torch.optim.AdamW)
    params = [p for grp in opt.param_groups for p in grp["params"]]
    before = [p.detach().clone() for p in params]
    for p in params:
        p.grad = torch.full_like(p, 100.0)
    total = torch.sqrt(sum((p.grad**2).sum() for p in params))
    assert total > cfg.SOLVER.CLIP_GRADIENTS.CLIP_VALUE
    opt.step()
    clipped = torch.sqrt(sum((p.grad**2).sum() for p in params))
    assert clipped == pytest.approx(cfg.SOLVER.CLIP_GRADIENTS.CLIP_VALUE, rel=1e-4)
    with torch.no_grad():
        for p, b in zip(params, before):
            p.copy_(b)
    opt.zero_grad(set_to_none=True)

    sgd_cfg = cfg.clone()
    sgd_cfg.SOLVER.OPTIMIZER = "SGD"
    sgd = build_seqrank_optimizer(sgd_cfg, model)
    assert isinstance(sgd, torch.optim.SGD) and sgd.param_groups[0]["momentum"] == 0.9
    bad = cfg.clone()
    bad.SOLVER.OPTIMIZER = "LAMB"
    with pytest.raises(ValueError, match="ADAMW or SGD"):
        build_seqrank_optimizer(bad, model)
