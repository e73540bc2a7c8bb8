"""Config set-up shared by train_net.py and the tools."""

import contextlib
import logging
import os

import torch
import yaml
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog
from detectron2.engine import default_setup
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from ..checkpoint import TRUST_ENV
from ..cli import ConfigError, MissingFileError, one_line
from ..config import add_seqrank_config, merge_config_file
from ..data import register_sor_datasets
from ..utils.atomic_io import remove_stale_temp_files

__all__ = [
    "build_cfg",
    "check_config_values",
    "check_registered",
    "check_output_dir",
    "clean_output_dir",
    "fit_to_machine",
    "setup",
]

logger = logging.getLogger("seqrank")


# Keys whose value must be an integer >= the bound (0 or 1 would crash deep inside a library).
_INT_BOUNDS = {
    "INPUT.FT_SIZE_TRAIN": 1,
    "INPUT.FT_SIZE_TEST": 1,
    "SOLVER.IMS_PER_GPU": 1,
    "SOLVER.MAX_ITER": 0,
    "SOLVER.CHECKPOINT_PERIOD": 1,
    "SOLVER.LOG_PERIOD": 1,
    "TEST.EVAL_PERIOD": 0,
    "DATALOADER.NUM_WORKERS": 0,
    "LIMITS.MAX_MASK_PIXELS": 1,
    "LIMITS.MAX_RECORD_PIXELS": 1,
}


def build_cfg(config_file=None, opts=(), num_gpus=1):
    """Config as the original driver builds it: SeqRank keys, then the file, then ``opts``.

    ``SOLVER.IMS_PER_BATCH`` is derived as ``IMS_PER_GPU x NUM_GPUS`` (NUM_GPUS before it is reset
    to ``num_gpus``), so the YAML value of IMS_PER_BATCH is ignored as in the original.

    Raises:
        MissingFileError: ``config_file`` does not exist.
        ConfigError: the file is not valid YAML, or a key or value (file or ``opts``) is invalid.
    """
    cfg = get_cfg()
    add_seqrank_config(cfg, num_gpus=num_gpus)
    if config_file:
        if not os.path.isfile(config_file):
            raise MissingFileError(f"{config_file}: config file not found")
        with _config_errors(config_file):
            merge_config_file(cfg, config_file)
    with _config_errors("command line"):
        cfg.merge_from_list(list(opts))
    check_config_values(cfg)
    cfg.SOLVER.IMS_PER_BATCH = cfg.SOLVER.IMS_PER_GPU * cfg.SOLVER.NUM_GPUS
    cfg.SOLVER.NUM_GPUS = num_gpus
    return cfg


@contextlib.contextmanager
def _config_errors(source):
    """yacs and PyYAML report bad files, keys and types with their own exceptions (assertions
    among them); make each one line naming ``source``."""
    try:
        yield
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML ({_yaml_problem(exc)})") from None
    except (AssertionError, KeyError, ValueError, TypeError, OSError) as exc:
        raise ConfigError(f"invalid config ({source}): {one_line(exc)}") from None


def _yaml_problem(exc):
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or one_line(exc)
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}" if mark else problem


def check_config_values(cfg):
    """Refuse values that would only fail deep inside a library (e.g. a batch of 0 images)."""
    for key, lowest in _INT_BOUNDS.items():
        value = cfg
        for part in key.split("."):
            value = value[part]
        if isinstance(value, bool) or not isinstance(value, int) or value < lowest:
            raise ConfigError(f"{key} must be an integer >= {lowest}, got {value!r}")


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


def check_output_dir(output_dir):
    """Create OUTPUT_DIR (rank 0) and refuse one that is a file or cannot be written to."""
    if not output_dir or not comm.is_main_process():
        return
    try:
        os.makedirs(output_dir, exist_ok=True)
    except FileExistsError:
        raise ConfigError(f"OUTPUT_DIR {output_dir} is a file, not a folder") from None
    except OSError as exc:
        raise ConfigError(f"OUTPUT_DIR {output_dir} cannot be created ({exc.strerror})") from None
    if not os.access(output_dir, os.W_OK | os.X_OK):
        raise ConfigError(f"OUTPUT_DIR {output_dir} is not writable")


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
    check_output_dir(cfg.OUTPUT_DIR)
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
    check_registered(cfg, ("TEST",) if getattr(args, "eval_only", False) else ("TRAIN", "TEST"))
    return cfg


def check_registered(cfg, keys=("TRAIN", "TEST")):
    """Refuse dataset names in ``cfg.DATASETS.<key>`` that nothing registered (detectron2 only
    fails later, with a list of every dataset it knows)."""
    for key in keys:
        for name in cfg.DATASETS[key]:
            if name not in DatasetCatalog:
                raise ConfigError(
                    f"DATASETS.{key}: dataset {name!r} is not registered; SOR datasets are named "
                    f"<id>_<split> with files under DATASETS.ROOT ({cfg.DATASETS.ROOT})"
                )
