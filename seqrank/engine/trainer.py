"""The SeqRank trainer: detectron2's DefaultTrainer with SeqRank's data, evaluator, optimizer and
checkpointer, and DistributedDataParallel that also works for CPU processes (GLOO)."""

import logging
import weakref

from detectron2.data import (
    build_detection_test_loader,
    build_detection_train_loader,
    get_detection_dataset_dicts,
)
from detectron2.engine import AMPTrainer, DefaultTrainer, SimpleTrainer, TrainerBase, hooks
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger
from torch.nn.parallel import DistributedDataParallel

from ..checkpoint import SeqRankCheckpointer
from ..cli import ConfigError, SeqRankUserError, debug_requested
from ..data import SORDatasetMapper
from ..data.datasets import DatasetError
from ..evaluation import SOREvaluator
from .optimizer import build_seqrank_optimizer

__all__ = ["Trainer", "wrap_ddp"]


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


class _OneLineUserErrors(logging.Filter):
    """detectron2 logs any exception leaving the training loop with its traceback ("Exception
    during training:"); input errors and a diverging loss are reported by train_net.py in one
    line instead (the traceback stays available with --debug / SEQRANK_DEBUG=1)."""

    def filter(self, record):
        exc = record.exc_info[1] if record.exc_info else None
        quiet = isinstance(exc, (SeqRankUserError, FloatingPointError))
        return not quiet or debug_requested()


def _quiet_train_loop_tracebacks():
    train_loop = logging.getLogger("detectron2.engine.train_loop")
    if not any(isinstance(f, _OneLineUserErrors) for f in train_loop.filters):
        train_loop.addFilter(_OneLineUserErrors())


def training_records(cfg):
    """The dataset dicts of DATASETS.TRAIN, as detectron2 would build them, with a one-line error
    for an empty list of datasets or a dataset without usable records (detectron2 asserts)."""
    names = tuple(cfg.DATASETS.TRAIN)
    if not names:
        raise ConfigError("DATASETS.TRAIN is empty; name a dataset, e.g. \"('assr_train',)\"")
    try:
        return get_detection_dataset_dicts(
            names, filter_empty=cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS
        )
    except AssertionError as exc:
        raise DatasetError(f"DATASETS.TRAIN {names}: {exc} (no training records)") from None


class Trainer(DefaultTrainer):
    def __init__(self, cfg):
        TrainerBase.__init__(self)
        _quiet_train_loop_tracebacks()
        if not logging.getLogger("detectron2").isEnabledFor(logging.INFO):
            setup_logger()
        cfg = DefaultTrainer.auto_scale_workers(cfg, comm.get_world_size())
        model = self.build_model(cfg)
        optimizer = self.build_optimizer(cfg, model)
        data_loader = self.build_train_loader(cfg)
        model = wrap_ddp(model)
        loop_cls = AMPTrainer if cfg.SOLVER.AMP.ENABLED else SimpleTrainer
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
        return build_detection_train_loader(
            cfg, mapper=SORDatasetMapper(cfg, is_train=True), dataset=training_records(cfg)
        )

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
