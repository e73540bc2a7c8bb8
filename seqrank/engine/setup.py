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
from ..cli import ConfigError, MissingFileError, one_line, precision_opts
from ..config import add_seqrank_config, merge_config_file
from ..config_resolution import resolve_config, weights_from_opts
from ..data import register_sor_datasets
from ..log_hygiene import install_setup_log_filter
from ..modeling.precision import check_precision
from ..utils.atomic_io import remove_stale_temp_files
from .amp import amp_dtype

__all__ = [
    "batch_derivation",
    "build_cfg",
    "check_config_values",
    "check_registered",
    "check_output_dir",
    "clean_output_dir",
    "fit_to_machine",
    "resolve_device",
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
    "TEST.IMS_PER_BATCH": 1,
    "DATALOADER.NUM_WORKERS": 0,
    "LIMITS.MAX_MASK_PIXELS": 1,
    "LIMITS.MAX_RECORD_PIXELS": 1,
}


def build_cfg(config_file=None, opts=(), num_gpus=1, num_machines=1):
    """Config as the original driver builds it: SeqRank keys, then the file, then ``opts``.

    ``SOLVER.IMS_PER_BATCH`` is derived as ``IMS_PER_GPU x NUM_GPUS x num_machines``, with
    NUM_GPUS before it is reset to ``num_gpus`` (the processes per machine): one
    ``IMS_PER_GPU`` batch per process of the world. On one machine this is the original's rule,
    quirk included (a NUM_GPUS set in the YAML or ``opts`` wins over ``num_gpus``); the YAML value
    of IMS_PER_BATCH is ignored as in the original.

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
    cfg.SOLVER.IMS_PER_BATCH = cfg.SOLVER.IMS_PER_GPU * cfg.SOLVER.NUM_GPUS * num_machines
    cfg.SOLVER.NUM_GPUS = num_gpus
    return cfg


@contextlib.contextmanager
def _config_errors(source):
    """yacs and PyYAML report bad files, keys and types with their own exceptions (assertions
    among them); make each one line naming ``source``."""
    try:
        yield
    except ConfigError:
        raise  # already one line naming the file
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
    check_precision(cfg.TEST.PRECISION)


def batch_derivation(cfg, num_gpus, num_machines):
    """The log line that explains ``SOLVER.IMS_PER_BATCH`` (see :func:`build_cfg`)."""
    per_gpu, batch = cfg.SOLVER.IMS_PER_GPU, cfg.SOLVER.IMS_PER_BATCH
    per_machine = batch // (per_gpu * num_machines) if per_gpu else num_gpus
    line = (
        f"Total batch SOLVER.IMS_PER_BATCH = {batch} = SOLVER.IMS_PER_GPU {per_gpu} x "
        f"{per_machine} process(es) per machine x {num_machines} machine(s)"
    )
    if per_machine != num_gpus:
        line += (
            f" (SOLVER.NUM_GPUS {per_machine} from the config, not --num-gpus {num_gpus}: "
            "the original's rule)"
        )
    return line


def resolve_device(device, world_size=1, local_rank=0, cuda_count=0):
    """``(device, notes)``: where this process runs for ``MODEL.DEVICE`` = ``device``.

    ``cuda`` / ``cuda:N`` falls back to ``cpu`` where ``cuda_count`` is 0. With more than one
    process every process takes ``cuda:{local_rank}`` (its DDP device), whatever index was asked
    for. Other device strings are kept.

    Raises:
        ConfigError (a ValueError): not a torch device, or a CUDA index outside
            ``0 .. cuda_count - 1``.
    """
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(
            f"MODEL.DEVICE {device!r} is not a torch device (cpu, cuda, cuda:N)"
        ) from None
    if parsed.type != "cuda":
        return device, []
    if cuda_count == 0:
        return "cpu", [f"MODEL.DEVICE={device} but no CUDA device is available: using cpu"]
    notes, index = [], parsed.index
    if world_size > 1:
        if index is not None and index != local_rank:
            notes.append(
                f"MODEL.DEVICE={device} with {world_size} processes: each process uses the GPU "
                f"of its local rank, cuda:{local_rank} here"
            )
        index = local_rank
    if index is not None and index >= cuda_count:
        what = f"local rank {local_rank}" if world_size > 1 else f"MODEL.DEVICE {device}"
        raise ConfigError(
            f"{what} needs cuda:{index}, but this machine has {cuda_count} CUDA device(s) "
            f"(cuda:0 .. cuda:{cuda_count - 1})"
        )
    return ("cuda" if index is None else f"cuda:{index}"), notes


def fit_to_machine(cfg, world_size=None, local_rank=None):
    """Fit ``cfg`` (in place) to this process and machine. Returns the log lines to emit.

    Sets ``MODEL.DEVICE`` (:func:`resolve_device`; the world and local rank default to this
    process's), checks ``SOLVER.AMP.PRECISION`` and switches fp16 AMP off on CPU, where only
    bf16 autocast is worthwhile.
    """
    world_size = comm.get_world_size() if world_size is None else world_size
    local_rank = (
        (comm.get_local_rank() if world_size > 1 else 0) if local_rank is None else local_rank
    )
    cuda_count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    cfg.MODEL.DEVICE, notes = resolve_device(cfg.MODEL.DEVICE, world_size, local_rank, cuda_count)
    if cfg.TEST.AUG.ENABLED:
        notes.append("TEST.AUG.ENABLED: SeqRank has no test-time augmentation; ignored")
    dtype = amp_dtype(cfg.SOLVER.AMP.PRECISION)
    on_cuda = cfg.MODEL.DEVICE.startswith("cuda")
    if cfg.SOLVER.AMP.ENABLED and not on_cuda and dtype == torch.float16:
        notes.append(
            "SOLVER.AMP.ENABLED with PRECISION fp16 needs CUDA: mixed precision is switched off "
            "on CPU (SOLVER.AMP.PRECISION bf16 runs on CPU)"
        )
        cfg.SOLVER.AMP.ENABLED = False
    if cfg.SOLVER.AMP.ENABLED and on_cuda and dtype == torch.bfloat16:
        if not torch.cuda.is_bf16_supported():
            raise ConfigError(
                f"SOLVER.AMP.PRECISION bf16: {torch.cuda.get_device_name()} does not support "
                "bfloat16; use fp16"
            )
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


def configure_backends(cfg):
    """cuDNN autotuning, TF32 matmuls and the current CUDA device of this process."""
    torch.backends.cudnn.benchmark = bool(cfg.CUDNN_BENCHMARK)
    if cfg.TF32:
        torch.set_float32_matmul_precision("high")
    device = torch.device(cfg.MODEL.DEVICE)
    if device.type == "cuda" and device.index is not None:
        torch.cuda.set_device(device)
    if device.type == "cuda":
        logger.info(
            "CUDA: %s, cuDNN benchmark %s, TF32 matmuls %s",
            torch.cuda.get_device_name(device),
            "on" if cfg.CUDNN_BENCHMARK else "off",
            "on" if cfg.TF32 else "off",
        )


def setup(args):
    """Build, freeze and register everything for a train_net.py run."""
    if getattr(args, "trust_checkpoint", False):
        os.environ[TRUST_ENV] = "1"
    num_machines = getattr(args, "num_machines", 1)
    config_file = _eval_config(args)
    opts = list(args.opts) + precision_opts(getattr(args, "precision", None))
    cfg = build_cfg(config_file, opts, args.num_gpus, num_machines)
    notes = fit_to_machine(cfg)
    cfg.freeze()
    check_output_dir(cfg.OUTPUT_DIR)
    install_setup_log_filter()
    default_setup(cfg, args)
    # default_setup only configures the detectron2 and fvcore loggers.
    setup_logger(cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="seqrank", abbrev_name="sr")
    if getattr(args, "resolved_config", None):
        logger.info("config: %s", args.resolved_config.describe())
    for note in getattr(args, "launch_notes", []):
        logger.info(note)
    for note in notes:
        logger.warning(note)
    logger.info(batch_derivation(cfg, args.num_gpus, num_machines))
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
    configure_backends(cfg)
    register_sor_datasets(cfg.DATASETS.ROOT, tuple(cfg.DATASETS.TRAIN) + tuple(cfg.DATASETS.TEST))
    check_registered(cfg, ("TEST",) if getattr(args, "eval_only", False) else ("TRAIN", "TEST"))
    return cfg


def _eval_config(args):
    """The config file of a run; ``--eval-only`` of a checkpoint resolves it from the checkpoint
    when ``--config-file`` is not given (``args.resolved_config`` records the choice)."""
    weights = weights_from_opts(args.opts)
    if not getattr(args, "eval_only", False) or not weights:
        return args.config_file
    args.resolved_config = resolve_config(weights, args.config_file)
    return args.resolved_config.path


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
