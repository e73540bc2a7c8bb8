from .optimizer import build_seqrank_optimizer, param_groups
from .setup import build_cfg, fit_to_machine, setup
from .trainer import Trainer, wrap_ddp

__all__ = [
    "Trainer",
    "build_cfg",
    "build_seqrank_optimizer",
    "fit_to_machine",
    "param_groups",
    "setup",
    "wrap_ddp",
]
