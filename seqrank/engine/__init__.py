from .amp import SeqRankAMPTrainer, amp_dtype
from .loops import SeqRankSimpleTrainer, check_losses_finite
from .optimizer import build_seqrank_optimizer, param_groups
from .setup import build_cfg, fit_to_machine, resolve_device, setup
from .trainer import Trainer, unwrap, wrap_ddp

__all__ = [
    "SeqRankAMPTrainer",
    "SeqRankSimpleTrainer",
    "Trainer",
    "amp_dtype",
    "build_cfg",
    "build_seqrank_optimizer",
    "check_losses_finite",
    "fit_to_machine",
    "param_groups",
    "resolve_device",
    "setup",
    "unwrap",
    "wrap_ddp",
]
