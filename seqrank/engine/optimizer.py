"""SeqRank's optimizer: the original LR / weight-decay rules per parameter, parameters with equal
settings in one group, and full-model gradient clipping."""

import torch
from torch import nn

from ..cli import ConfigError

__all__ = ["build_seqrank_optimizer", "merge_param_groups", "param_groups"]

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
    """One group per trainable parameter, each visited once (docs/ARCHITECTURE.md, "Optimizer")."""
    groups, seen = [], set()
    for module_name, module in model.named_modules():
        for param_name, param in module.named_parameters(recurse=False):
            if not param.requires_grad or param in seen:
                continue
            seen.add(param)
            groups.append({"params": [param], **_group(module_name, module, param_name, solver)})
    return groups


def merge_param_groups(groups):
    """Groups with the same settings merged into one (parameters keep their relative order).

    ``groups``: the per-parameter groups of :func:`param_groups`. Returns ``(merged, index)``
    where ``index[i]`` is the merged group of ``groups[i]``. The rules give a handful of distinct
    settings, so hundreds of one-parameter groups become 2-4 groups: the optimizer then updates
    each group with one fused (foreach) kernel sequence instead of one per parameter.
    """
    merged, index, where = [], [], {}
    for group in groups:
        key = tuple(sorted((k, v) for k, v in group.items() if k != "params"))
        if key not in where:
            where[key] = len(merged)
            merged.append({**group, "params": []})
        merged[where[key]]["params"] += group["params"]
        index.append(where[key])
    return merged, index


class _SeqRankOptimizerMixin:
    """Full-model gradient clipping over the parameters in model order, and loading of
    optimizer states saved with one group per parameter (earlier versions, the original)."""

    def _setup_seqrank(self, ordered_params, group_index, clip):
        self.ordered_params = ordered_params
        self.group_index = group_index
        self.clip = clip

    def step(self, closure=None):
        if self.clip is not None:
            # Model order, as with one group per parameter: the total norm sums the same way.
            torch.nn.utils.clip_grad_norm_(
                self.ordered_params, self.clip[0], norm_type=self.clip[1]
            )
        return super().step(closure=closure)

    def load_state_dict(self, state_dict):
        if _is_per_parameter(state_dict, len(self.ordered_params), len(self.param_groups)):
            state_dict = self._merge_per_parameter_state(state_dict)
        super().load_state_dict(state_dict)

    def _merge_per_parameter_state(self, state_dict):
        new_id = {id(p): i for i, p in enumerate(q for g in self.param_groups for q in g["params"])}
        old_groups = state_dict["param_groups"]
        groups = [None] * len(self.param_groups)
        state = {}
        for old, param, target in zip(old_groups, self.ordered_params, self.group_index):
            if groups[target] is None:
                groups[target] = {**old, "params": []}
            groups[target]["params"].append(new_id[id(param)])
            if old["params"][0] in state_dict["state"]:
                state[new_id[id(param)]] = state_dict["state"][old["params"][0]]
        for group in groups:
            group["params"].sort()
        return {"state": state, "param_groups": groups}

    def merge_per_parameter_values(self, values):
        """A per-parameter-group list (e.g. a scheduler's ``base_lrs``) -> one value per group."""
        if len(values) != len(self.group_index) or len(values) == len(self.param_groups):
            return values
        merged = [None] * len(self.param_groups)
        for value, target in zip(values, self.group_index):
            merged[target] = value if merged[target] is None else merged[target]
        return merged


def _is_per_parameter(state_dict, num_params, num_groups):
    groups = state_dict.get("param_groups", [])
    return len(groups) == num_params != num_groups and all(len(g["params"]) == 1 for g in groups)


def _optimizer_class(optim_cls):
    return type(f"SeqRank{optim_cls.__name__}", (_SeqRankOptimizerMixin, optim_cls), {})


def build_seqrank_optimizer(cfg, model, merge_groups=True):
    """AdamW (or SGD) with the original per-parameter settings and full-model clipping.

    Parameters with equal settings share a group (``merge_groups``; False gives the original's
    one group per parameter). The updates are the same either way (tested bit for bit).
    """
    solver = cfg.SOLVER
    per_param = param_groups(model, solver)
    if merge_groups:
        groups, index = merge_param_groups(per_param)
    else:
        groups, index = per_param, list(range(len(per_param)))
    name = solver.OPTIMIZER.upper()
    if name == "ADAMW":
        optim_cls, kwargs = torch.optim.AdamW, {}
    elif name == "SGD":
        optim_cls, kwargs = torch.optim.SGD, {"momentum": solver.MOMENTUM}
    else:
        raise ConfigError(f"SOLVER.OPTIMIZER must be ADAMW or SGD, got {solver.OPTIMIZER!r}")
    clip, settings = solver.CLIP_GRADIENTS, None
    if clip.ENABLED and clip.CLIP_VALUE > 0:
        if clip.CLIP_TYPE != "full_model":
            raise ConfigError(
                f"SOLVER.CLIP_GRADIENTS.CLIP_TYPE {clip.CLIP_TYPE!r} is not supported "
                "(SeqRank clips the full model: use 'full_model')"
            )
        settings = (clip.CLIP_VALUE, clip.NORM_TYPE)
    optimizer = _optimizer_class(optim_cls)(groups, solver.BASE_LR, **kwargs)
    optimizer._setup_seqrank([g["params"][0] for g in per_param], index, settings)
    return optimizer
