"""The SeqRank trainer: detectron2's DefaultTrainer with SeqRank's data, evaluator, optimizer and
checkpointer, and DistributedDataParallel that also works for CPU processes (GLOO)."""

import logging
import math
import weakref

from detectron2.data import build_detection_test_loader, build_detection_train_loader
from detectron2.engine import AMPTrainer, DefaultTrainer, SimpleTrainer, TrainerBase, hooks
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger
from torch.nn.parallel import DistributedDataParallel

from ..checkpoint import SeqRankCheckpointer
from ..data import SORDatasetMapper
from ..evaluation import SOREvaluator
from .optimizer import build_seqrank_optimizer

__all__ = ["Trainer", "check_losses_finite", "wrap_ddp"]


def check_losses_finite(loss_dict, iteration):
    """Raise ``FloatingPointError`` (one line naming ``iteration`` and every loss term that is NaN
    or infinite) unless all of ``loss_dict``'s scalar losses are finite."""
    values = {name: float(loss.detach().float().sum()) for name, loss in loss_dict.items()}
    bad = [f"{name}={value}" for name, value in values.items() if not math.isfinite(value)]
    if bad:
        raise FloatingPointError(
            f"the loss is not finite at iteration {iteration}: {', '.join(bad)} "
            "(the run diverged; lower SOLVER.BASE_LR or enable SOLVER.CLIP_GRADIENTS)"
        )


class _FiniteLossCheck:
    """Stops at the first iteration with a non-finite loss term, before the optimizer steps.

    detectron2 checks only the total, on the main process, every ``gather_metric_period``
    iterations, in a multi-line error without the terms' names."""

    def _write_metrics(self, loss_dict, data_time, prefix="", iter=None):
        check_losses_finite(loss_dict, self.iter if iter is None else iter)
        super()._write_metrics(loss_dict, data_time, prefix=prefix, iter=iter)


class SeqRankSimpleTrainer(_FiniteLossCheck, SimpleTrainer):
    pass


class SeqRankAMPTrainer(_FiniteLossCheck, AMPTrainer):
    pass


def wrap_ddp(model):
    """DDP over all processes; without ``device_ids`` for CPU modules (GLOO), which detectron2's
    ``create_ddp_model`` does not allow."""
    if comm.get_world_size() == 1:
        return model
    on_cuda = next(model.parameters()).is_cuda
    kwargs = {"device_ids": [comm.get_local_rank()]} if on_cuda else {}
    return DistributedDataParallel(
        model, broadcast_buffers=False, find_unused_parameters=True, **kwargs
    )


class Trainer(DefaultTrainer):
    def __init__(self, cfg):
        TrainerBase.__init__(self)
        if not logging.getLogger("detectron2").isEnabledFor(logging.INFO):
            setup_logger()
        cfg = DefaultTrainer.auto_scale_workers(cfg, comm.get_world_size())
        model = self.build_model(cfg)
        optimizer = self.build_optimizer(cfg, model)
        data_loader = self.build_train_loader(cfg)
        model = wrap_ddp(model)
        loop_cls = SeqRankAMPTrainer if cfg.SOLVER.AMP.ENABLED else SeqRankSimpleTrainer
        self._trainer = loop_cls(model, data_loader, optimizer)
        self.scheduler = self.build_lr_scheduler(cfg, optimizer)
        self.checkpointer = SeqRankCheckpointer(model, cfg.OUTPUT_DIR, trainer=weakref.proxy(self))
        self.start_iter = 0
        self.max_iter = cfg.SOLVER.MAX_ITER
        self.cfg = cfg
        self.register_hooks(self.build_hooks())

    def build_hooks(self):
        built = super().build_hooks()
        for hook in built:
            if isinstance(hook, hooks.PeriodicWriter):
                # detectron2 hard-codes 20 iterations; SOLVER.LOG_PERIOD makes it adjustable.
                hook._period = self.cfg.SOLVER.LOG_PERIOD
        return built

    @classmethod
    def build_optimizer(cls, cfg, model):
        return build_seqrank_optimizer(cfg, model)

    @classmethod
    def build_train_loader(cls, cfg):
        return build_detection_train_loader(cfg, mapper=SORDatasetMapper(cfg, is_train=True))

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        return build_detection_test_loader(
            cfg, dataset_name, mapper=SORDatasetMapper(cfg, is_train=False)
        )

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        return SOREvaluator.from_cfg(cfg, dataset_name, output_folder)

    @classmethod
    def load_for_eval(cls, cfg, resume=False):
        """Model in eval mode with MODEL.WEIGHTS (or the last checkpoint with ``resume``)."""
        model = cls.build_model(cfg)
        SeqRankCheckpointer(model, save_dir=cfg.OUTPUT_DIR).resume_or_load(
            cfg.MODEL.WEIGHTS, resume=resume
        )
        model.eval()
        return model
