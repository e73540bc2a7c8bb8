"""SeqRank's optimizer: one parameter group per parameter with the original LR / weight-decay rules,
and full-model gradient clipping."""

import torch
from torch import nn

from ..cli import ConfigError

__all__ = ["build_seqrank_optimizer", "param_groups"]

NORM_TYPES = (
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.BatchNorm3d,
    nn.SyncBatchNorm,
    nn.GroupNorm,
    nn.InstanceNorm1d,
    nn.InstanceNorm2d,
    nn.InstanceNorm3d,
    nn.LayerNorm,
    nn.LocalResponseNorm,
)
NO_DECAY_NAMES = ("relative_position_bias_table", "absolute_pos_embed")


def _group(module_name, module, param_name, solver):
    lr, wd = solver.BASE_LR, solver.WEIGHT_DECAY
    if "backbone" in module_name:
        lr = lr * solver.BACKBONE_MULTIPLIER
    if any(n in param_name for n in NO_DECAY_NAMES):
        wd = 0.0
    if isinstance(module, NORM_TYPES):
        wd = solver.WEIGHT_DECAY_NORM
    if isinstance(module, nn.Embedding):
        wd = solver.WEIGHT_DECAY_EMBED
    return {"lr": lr, "weight_decay": wd}


def param_groups(model, solver):
    """One group per trainable parameter, each visited once (ARCHITECTURE.md §1.4)."""
    groups, seen = [], set()
    for module_name, module in model.named_modules():
        for param_name, param in module.named_parameters(recurse=False):
            if not param.requires_grad or param in seen:
                continue
            seen.add(param)
            groups.append({"params": [param], **_group(module_name, module, param_name, solver)})
    return groups


def _with_full_model_clipping(optim_cls, clip_value, norm_type):
    class FullModelClipped(optim_cls):
        def step(self, closure=None):
            params = [p for group in self.param_groups for p in group["params"]]
            torch.nn.utils.clip_grad_norm_(params, clip_value, norm_type=norm_type)
            return super().step(closure=closure)

    FullModelClipped.__name__ = f"FullModelClipped{optim_cls.__name__}"
    return FullModelClipped


def build_seqrank_optimizer(cfg, model):
    solver = cfg.SOLVER
    groups = param_groups(model, solver)
    name = solver.OPTIMIZER.upper()
    if name == "ADAMW":
        optim_cls, kwargs = torch.optim.AdamW, {}
    elif name == "SGD":
        optim_cls, kwargs = torch.optim.SGD, {"momentum": solver.MOMENTUM}
    else:
        raise ConfigError(f"SOLVER.OPTIMIZER must be ADAMW or SGD, got {solver.OPTIMIZER!r}")
    clip = solver.CLIP_GRADIENTS
    if clip.ENABLED and clip.CLIP_VALUE > 0:
        if clip.CLIP_TYPE != "full_model":
            raise ConfigError(
                f"SOLVER.CLIP_GRADIENTS.CLIP_TYPE {clip.CLIP_TYPE!r} is not supported "
                "(SeqRank clips the full model: use 'full_model')"
            )
        optim_cls = _with_full_model_clipping(optim_cls, clip.CLIP_VALUE, clip.NORM_TYPE)
    return optim_cls(groups, solver.BASE_LR, **kwargs)
