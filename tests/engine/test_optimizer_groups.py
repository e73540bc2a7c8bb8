"""Merged parameter groups update the parameters exactly like one group per parameter."""

import copy

import pytest
import torch
from detectron2.modeling import build_model

import seqrank  # noqa: F401
from seqrank.engine import build_cfg, build_seqrank_optimizer, param_groups
from tests.conftest import REPO

CONFIG = str(REPO / "configs" / "quick_schedules" / "synsor_tiny.yaml")


@pytest.fixture(scope="module")
def cfg_and_model():
    cfg = build_cfg(
        CONFIG,
        ["MODEL.DEVICE", "cpu", "SOLVER.BACKBONE_MULTIPLIER", "0.1", "SOLVER.WEIGHT_DECAY", "0.05"],
    )
    torch.manual_seed(0)
    return cfg, build_model(cfg)


def _grads(model, step, scale):
    gen = torch.Generator().manual_seed(step)
    return [torch.randn(p.shape, generator=gen) * scale for p in model.parameters()]


def _run(cfg, model, steps, merge, foreach=None, state=None, first_step=0):
    opt = build_seqrank_optimizer(cfg, model, merge_groups=merge)
    if foreach is not None:
        for group in opt.param_groups:
            group["foreach"] = foreach
    if state is not None:
        opt.load_state_dict(state)
    for step in range(first_step, first_step + steps):
        # Large gradients on odd steps, so that full-model clipping acts on some steps only.
        for p, g in zip(model.parameters(), _grads(model, step, 100.0 if step % 2 else 1e-3)):
            p.grad = g
        opt.step()
    return opt


def test_groups_are_merged_by_setting(cfg_and_model):
    cfg, model = cfg_and_model
    per_param = param_groups(model, cfg.SOLVER)
    opt = build_seqrank_optimizer(cfg, model)
    assert len(per_param) == sum(p.requires_grad for p in model.parameters()) > 100
    assert 2 <= len(opt.param_groups) <= 4
    settings = {id(g["params"][0]): (g["lr"], g["weight_decay"]) for g in per_param}
    for group in opt.param_groups:
        for p in group["params"]:
            assert settings.pop(id(p)) == (group["lr"], group["weight_decay"])
    assert not settings


@pytest.mark.parametrize("optimizer", ["ADAMW", "SGD"])
@pytest.mark.parametrize("foreach", [None, True], ids=["default", "foreach"])
def test_merged_groups_give_bit_identical_updates(cfg_and_model, optimizer, foreach):
    cfg, model = cfg_and_model
    cfg = cfg.clone()
    cfg.SOLVER.OPTIMIZER = optimizer
    old, new = copy.deepcopy(model), copy.deepcopy(model)
    _run(cfg, old, 4, merge=False, foreach=foreach)
    _run(cfg, new, 4, merge=True, foreach=foreach)
    for (name, a), b in zip(old.named_parameters(), new.parameters()):
        assert torch.equal(a, b), name


def test_per_parameter_optimizer_state_resumes_into_merged_groups(cfg_and_model):
    cfg, model = cfg_and_model
    reference, resumed = copy.deepcopy(model), copy.deepcopy(model)
    opt = _run(cfg, reference, 2, merge=False)
    saved = copy.deepcopy(opt.state_dict())
    with torch.no_grad():
        for a, b in zip(resumed.parameters(), reference.parameters()):
            a.copy_(b)
    # load_state_dict keeps the saved moment tensors, which the steps then update in place.
    _run(cfg, reference, 2, merge=False, first_step=2, state=copy.deepcopy(saved))
    merged = _run(cfg, resumed, 2, merge=True, first_step=2, state=copy.deepcopy(saved))
    for (name, a), b in zip(reference.named_parameters(), resumed.parameters()):
        assert torch.equal(a, b), name
    per_param_lrs = [g["lr"] for g in saved["param_groups"]]
    assert merged.merge_per_parameter_values(per_param_lrs) == [
        g["lr"] for g in merged.param_groups
    ]
