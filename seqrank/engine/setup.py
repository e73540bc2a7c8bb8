"""Config set-up shared by train_net.py and the tools."""

import logging
import os

import torch
from detectron2.config import get_cfg
from detectron2.engine import default_setup
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from ..checkpoint import TRUST_ENV
from ..config import add_seqrank_config, merge_config_file
from ..data import register_sor_datasets
from ..utils.atomic_io import remove_stale_temp_files

__all__ = ["build_cfg", "clean_output_dir", "fit_to_machine", "setup"]

logger = logging.getLogger("seqrank")


def build_cfg(config_file=None, opts=(), num_gpus=1):
    """Config as the original driver builds it: SeqRank keys, then the file, then ``opts``.

    ``SOLVER.IMS_PER_BATCH`` is derived as ``IMS_PER_GPU x NUM_GPUS`` (NUM_GPUS before it is reset
    to ``num_gpus``), so the YAML value of IMS_PER_BATCH is ignored as in the original.
    """
    cfg = get_cfg()
    add_seqrank_config(cfg, num_gpus=num_gpus)
    try:
        if config_file:
            if not os.path.isfile(config_file):
                raise FileNotFoundError(f"{config_file}: config file not found")
            merge_config_file(cfg, config_file)
        cfg.merge_from_list(list(opts))
    except (AssertionError, KeyError) as exc:
        # yacs reports bad keys and types with assertions; make them ordinary user errors.
        raise ValueError(f"invalid config ({config_file or 'command line'}): {exc}") from None
    cfg.SOLVER.IMS_PER_BATCH = cfg.SOLVER.IMS_PER_GPU * cfg.SOLVER.NUM_GPUS
    cfg.SOLVER.NUM_GPUS = num_gpus
    return cfg


def fit_to_machine(cfg):
    """Fall back to CPU (and no AMP) where CUDA is missing. Returns the log lines to emit."""
    notes = []
    if cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available():
        notes.append(f"MODEL.DEVICE={cfg.MODEL.DEVICE} but no CUDA device is available: using cpu")
        cfg.MODEL.DEVICE = "cpu"
    if cfg.TEST.AUG.ENABLED:
        notes.append("TEST.AUG.ENABLED: SeqRank has no test-time augmentation; ignored")
    if cfg.SOLVER.AMP.ENABLED and not cfg.MODEL.DEVICE.startswith("cuda"):
        notes.append("SOLVER.AMP.ENABLED needs CUDA: mixed precision is switched off on CPU")
        cfg.SOLVER.AMP.ENABLED = False
    return notes


def clean_output_dir(output_dir):
    """Remove the temporary files of saves that a killed run left in ``output_dir`` (rank 0).

    A run killed while writing a checkpoint leaves a partial, full-size ``.<name>.<random>.tmp``
    behind; without this they pile up in OUTPUT_DIR across restarts.
    """
    if not comm.is_main_process() or not output_dir:
        return
    removed, in_use = remove_stale_temp_files(output_dir)
    if removed:
        logger.info(
            "Removed %d stale temporary file(s) of interrupted saves from %s: %s",
            len(removed),
            output_dir,
            ", ".join(removed),
        )
    if in_use:
        logger.warning(
            "%s: %d temporary file(s) are being written by another process (%s); is another run "
            "using this OUTPUT_DIR?",
            output_dir,
            len(in_use),
            ", ".join(in_use),
        )


def setup(args):
    """Build, freeze and register everything for a train_net.py run."""
    if getattr(args, "trust_checkpoint", False):
        os.environ[TRUST_ENV] = "1"
    cfg = build_cfg(args.config_file, args.opts, num_gpus=args.num_gpus)
    notes = fit_to_machine(cfg)
    cfg.freeze()
    default_setup(cfg, args)
    # default_setup only configures the detectron2 and fvcore loggers.
    setup_logger(cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="seqrank", abbrev_name="sr")
    for note in notes:
        logger.warning(note)
    clean_output_dir(cfg.OUTPUT_DIR)
    if (
        cfg.MODEL.DEVICE == "cpu"
        and comm.get_world_size() > 1
        and "OMP_NUM_THREADS" not in os.environ
    ):
        # Several CPU processes share the cores; more threads than cores makes them crawl.
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // comm.get_world_size()))
    cuda = "available" if torch.cuda.is_available() else "not available"
    logger.info("Running on MODEL.DEVICE=%s (CUDA %s)", cfg.MODEL.DEVICE, cuda)
    register_sor_datasets(cfg.DATASETS.ROOT, tuple(cfg.DATASETS.TRAIN) + tuple(cfg.DATASETS.TEST))
    return cfg
