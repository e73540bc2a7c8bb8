"""The SeqRank trainer: detectron2's DefaultTrainer with SeqRank's data, evaluator, optimizer and
checkpointer, mixed precision on ``torch.amp`` (fp16 or bf16), and DistributedDataParallel that also
works for CPU processes (GLOO)."""

import logging
import weakref

from detectron2.data import (
    build_detection_test_loader,
    build_detection_train_loader,
    get_detection_dataset_dicts,
)
from detectron2.engine import DefaultTrainer, TrainerBase, hooks
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger
from torch.nn.parallel import DistributedDataParallel

from ..checkpoint import SeqRankCheckpointer
from ..cli import ConfigError, SeqRankUserError, debug_requested
from ..data import SORDatasetMapper
from ..data.datasets import DatasetError
from ..evaluation import SOREvaluator
from .amp import SeqRankAMPTrainer
from .launch import peer_failure
from .loops import SeqRankSimpleTrainer, check_losses_finite
from .optimizer import build_seqrank_optimizer

__all__ = ["Trainer", "check_losses_finite", "unwrap", "wrap_ddp"]

logger = logging.getLogger("seqrank")


def wrap_ddp(model):
    """DDP over all processes; without ``device_ids`` for CPU modules (GLOO), which detectron2's
    ``create_ddp_model`` does not allow.

    Buffers (e.g. the random Fourier matrix of ``MODEL.PE RANDOM``) are broadcast from rank 0 once,
    at construction, and not before every forward (detectron2's ``broadcast_buffers=False``
    behaviour, through the argument that replaces it).
    """
    if comm.get_world_size() == 1:
        return model
    device = next(model.parameters()).device
    kwargs = {"device_ids": [device.index]} if device.type == "cuda" else {}
    return DistributedDataParallel(
        model, forward_sync_buffers=False, find_unused_parameters=True, **kwargs
    )


def unwrap(model):
    """The module inside a DDP wrapper (or ``model`` itself)."""
    return model.module if isinstance(model, DistributedDataParallel) else model


class _OneLineUserErrors(logging.Filter):
    """detectron2 logs any exception leaving the training loop with its traceback ("Exception
    during training:"); input errors, a diverging loss and a lost peer are reported by
    train_net.py in one line instead (the traceback stays available with --debug /
    SEQRANK_DEBUG=1)."""

    def filter(self, record):
        exc = record.exc_info[1] if record.exc_info else None
        if exc is None or debug_requested():
            return True
        quiet = isinstance(exc, (SeqRankUserError, FloatingPointError))
        lost_peer = comm.get_world_size() > 1 and peer_failure(exc) is not None
        return not (quiet or lost_peer)


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
        if cfg.SOLVER.AMP.ENABLED:
            self._trainer = SeqRankAMPTrainer(
                model, data_loader, optimizer, precision=cfg.SOLVER.AMP.PRECISION
            )
            scaler = "with" if self._trainer.grad_scaler is not None else "without"
            logger.info(
                "Mixed precision: %s autocast %s a GradScaler", cfg.SOLVER.AMP.PRECISION, scaler
            )
        else:
            self._trainer = SeqRankSimpleTrainer(model, data_loader, optimizer)
        self.scheduler = self.build_lr_scheduler(cfg, optimizer)
        self.checkpointer = SeqRankCheckpointer(model, cfg.OUTPUT_DIR, trainer=weakref.proxy(self))
        self.start_iter = 0
        self.max_iter = cfg.SOLVER.MAX_ITER
        self.cfg = cfg
        self.register_hooks(self.build_hooks())

    def build_hooks(self):
        built = super().build_hooks()
        for i, hook in enumerate(built):
            if isinstance(hook, hooks.PeriodicWriter):
                # detectron2 hard-codes 20 iterations; SOLVER.LOG_PERIOD makes it adjustable.
                hook._period = self.cfg.SOLVER.LOG_PERIOD
            if isinstance(hook, hooks.EvalHook):
                built[i] = hooks.EvalHook(self.cfg.TEST.EVAL_PERIOD, self._evaluate_unwrapped)
        return built

    def _evaluate_unwrapped(self):
        """Periodic evaluation on the bare model: through the DDP wrapper every input tensor,
        the full-resolution GT masks included, would be copied to the GPU for nothing."""
        self._last_eval_results = self.test(self.cfg, unwrap(self.model))
        return self._last_eval_results

    def resume_or_load(self, resume=True):
        """detectron2's resume (or MODEL.WEIGHTS load), then a check that every process of the
        job starts from the same iteration: each reads OUTPUT_DIR on its own machine."""
        super().resume_or_load(resume=resume)
        if comm.get_world_size() == 1:
            return
        starts = comm.all_gather(self.start_iter)
        if len(set(starts)) > 1:
            ranks = ", ".join(f"rank {r}: {s}" for r, s in enumerate(starts))
            raise ConfigError(
                f"the processes would start from different iterations ({ranks}): with --resume "
                f"every machine needs the same last checkpoint in OUTPUT_DIR ({self.cfg.OUTPUT_DIR}"
                "; a shared filesystem, or copy it from the first machine)"
            )
        logger.info("All %d processes start from iteration %d", len(starts), starts[0])

    def load_state_dict(self, state_dict):
        # A checkpoint saved with one optimizer group per parameter (earlier versions) holds a
        # scheduler base LR per parameter: keep one per merged group (the optimizer converts its
        # own state), or the scheduler would hand the groups the wrong LRs.
        scheduler = state_dict.get("hooks", {}).get("LRScheduler")
        merge = getattr(self.optimizer, "merge_per_parameter_values", None)
        if scheduler and "base_lrs" in scheduler and merge is not None:
            scheduler["base_lrs"] = merge(scheduler["base_lrs"])
        super().load_state_dict(state_dict)

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
        """detectron2's test loader (every image once, split over the processes) with batches of
        ``TEST.IMS_PER_BATCH`` images per process; the last batch may be smaller."""
        return build_detection_test_loader(
            cfg,
            dataset_name,
            mapper=SORDatasetMapper(cfg, is_train=False),
            batch_size=cfg.TEST.IMS_PER_BATCH,
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
