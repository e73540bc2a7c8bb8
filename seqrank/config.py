"""SeqRank configuration keys (same names and defaults as the original ``add_custom_config``).

Unlike the original, detectron2's own keys are kept: ``MODEL.BACKBONE`` and ``TEST.AUG`` are
extended, not replaced, so e.g. ``MODEL.BACKBONE.FREEZE_AT`` stays available.
"""

import logging

from detectron2.config import CfgNode as CN

from .cli import ConfigError
from .evaluation.results_file import MAX_MASK_PIXELS, MAX_RECORD_PIXELS

__all__ = ["LEGACY_KEYS", "add_seqrank_config", "merge_config_file", "prune_unknown_keys"]

logger = logging.getLogger(__name__)

# Keys of the released config dumps (``<dataset>_swinL[_correct]_config.yaml``) that no code here
# reads: a file may hold them, and they are ignored with one warning. Any other key a config file
# sets must be defined (here or by detectron2): an unknown one is an error, usually a typo.
LEGACY_KEYS = ("GLOBAL.HACK", "SOLVER.ITERS_PER_STEP", "SOLVER.TIMEOUT")


def _add_model_config(cfg):
    cfg.MODEL.WEIGHTS = ""
    cfg.MODEL.PE = "APE"
    # The same on every machine; set-up falls back to the CPU where there is no GPU.
    cfg.MODEL.DEVICE = "cuda"

    cfg.MODEL.BACKBONE.NAME = "ResNeXt50"
    cfg.MODEL.BACKBONE.NUM_FEATURES = (256, 512, 1024, 2048)
    cfg.MODEL.BACKBONE.FEATURE_KEYS = ["res2", "res3", "res4", "res5"]

    cfg.MODEL.NECK = CN()
    cfg.MODEL.NECK.NAME = "FPN"

    cfg.MODEL.SIS_HEAD = CN()
    cfg.MODEL.SIS_HEAD.NAME = "FoveaModule"
    cfg.MODEL.SIS_HEAD.NUM_BLOCKS = 6
    cfg.MODEL.SIS_HEAD.KEY_FEATURES = ["res5", "res4", "res3"]
    cfg.MODEL.SIS_HEAD.MASK_KEY = "res2"

    cfg.MODEL.GAZE_SHIFT_HEAD = CN()
    cfg.MODEL.GAZE_SHIFT_HEAD.NAME = "SequentialRankingModule"
    cfg.MODEL.GAZE_SHIFT_HEAD.NUM_BLOCKS = 2
    cfg.MODEL.GAZE_SHIFT_HEAD.KEY = "res5"

    cfg.MODEL.MODULES = CN()
    cfg.MODEL.MODULES.MULTIQ = CN()
    cfg.MODEL.MODULES.MULTIQ.GRID_SIZES = [(1, 1), (2, 2), (3, 3)]

    cfg.MODEL.COMMON = CN()
    cfg.MODEL.COMMON.EMBED_DIM = 256
    cfg.MODEL.COMMON.NUM_HEADS = 8
    cfg.MODEL.COMMON.HIDDEN_DIM = 2048
    cfg.MODEL.COMMON.DROPOUT_ATTN = 0.0
    cfg.MODEL.COMMON.DROPOUT_FFN = 0.0
    cfg.MODEL.COMMON.NUM_QUERIES = 100

    # Opt-in behaviour changes (default off keeps parity with the released models).
    cfg.MODEL.SEQRANK = CN()
    # Never re-select a query that is already ranked during sequential inference.
    cfg.MODEL.SEQRANK.EXCLUDE_RANKED = False
    # Inference speed-ups (same decisions and masks within float tolerance; docs/FIDELITY.md):
    # fused attention, image tokens projected once per image. False: the plain maths.
    cfg.MODEL.SEQRANK.FAST_INFERENCE = True


def _add_swin_config(cfg):
    cfg.MODEL.SWIN = CN()
    cfg.MODEL.SWIN.PRETRAIN_IMG_SIZE = 224
    cfg.MODEL.SWIN.PATCH_SIZE = 4
    cfg.MODEL.SWIN.EMBED_DIM = 96
    cfg.MODEL.SWIN.DEPTHS = [2, 2, 6, 2]
    cfg.MODEL.SWIN.NUM_HEADS = [3, 6, 12, 24]
    cfg.MODEL.SWIN.WINDOW_SIZE = 7
    cfg.MODEL.SWIN.MLP_RATIO = 4.0
    cfg.MODEL.SWIN.QKV_BIAS = True
    cfg.MODEL.SWIN.QK_SCALE = None
    cfg.MODEL.SWIN.DROP_RATE = 0.0
    cfg.MODEL.SWIN.ATTN_DROP_RATE = 0.0
    cfg.MODEL.SWIN.DROP_PATH_RATE = 0.3
    cfg.MODEL.SWIN.APE = False
    cfg.MODEL.SWIN.PATCH_NORM = True
    cfg.MODEL.SWIN.OUT_FEATURES = ["res2", "res3", "res4", "res5"]
    cfg.MODEL.SWIN.USE_CHECKPOINT = False


def _add_loss_config(cfg):
    cfg.LOSS = CN()
    cfg.LOSS.CLS_COST = 10.0
    cfg.LOSS.MASK_CE_COST = 5.0
    cfg.LOSS.MASK_DICE_COST = 5.0
    cfg.LOSS.BBOX_L1_COST = 5.0
    cfg.LOSS.BBOX_GIOU_COST = 2.0
    cfg.LOSS.OBJ_POS = 1.0
    cfg.LOSS.OBJ_NEG = 0.1
    cfg.LOSS.SAL_COST = 5.0
    # SAL_POS, SAL_NEG and SAL_TERMINATE exist in the original but are never read.
    cfg.LOSS.SAL_POS = 1.0
    cfg.LOSS.SAL_NEG = 1.0
    cfg.LOSS.SAL_TERMINATE = True
    cfg.LOSS.AUX = "disable"
    cfg.LOSS.AUX_WEIGHT = 0.4
    cfg.LOSS.NUM_POINTS = 12544


def _add_solver_data_test_config(cfg, num_gpus):
    cfg.DATASETS.ROOT = "assets"
    cfg.SOLVER.BACKBONE_MULTIPLIER = 0.1
    cfg.SOLVER.OPTIMIZER = "ADAMW"
    cfg.SOLVER.WEIGHT_DECAY_EMBED = 0.0
    cfg.SOLVER.IMS_PER_GPU = 32
    cfg.SOLVER.NUM_GPUS = num_gpus
    # Not in the original: how often losses are logged and written to metrics.json.
    cfg.SOLVER.LOG_PERIOD = 20
    # Not in the original (detectron2's AMPTrainer is fp16 only): the autocast dtype, fp16 or bf16.
    cfg.SOLVER.AMP.PRECISION = "fp16"
    # The network input is always S x S, so cuDNN's autotuning is paid once (detectron2: off).
    cfg.CUDNN_BENCHMARK = True
    # Not in the original: float32 matmuls in TF32 on Ampere or newer GPUs (faster, less exact).
    cfg.TF32 = False

    cfg.TEST.AUG.ENABLED = False
    # Not in the original (detectron2's test loader, 1 image at a time): images per inference
    # batch in each process of the evaluation. Metrics do not depend on it.
    cfg.TEST.IMS_PER_BATCH = 1
    cfg.TEST.UPPER_BOUND = False
    cfg.TEST.EVAL_SAVE = False
    cfg.TEST.METRICS_OF_INTEREST = ["mae"]
    cfg.TEST.THRESHOLD = 0.5
    # Not in the original: inference precision, fp32 (the faithful path), bf16 or fp16 (autocast;
    # decisions in float32). Falls back to fp32 with a warning where the device lacks it.
    cfg.TEST.PRECISION = "fp32"

    # Not in the original: skip (and count) missing or corrupt training images instead of failing.
    cfg.DATALOADER.SKIP_BAD_IMAGES = False

    cfg.INPUT.FT_SIZE_TRAIN = 800
    cfg.INPUT.FT_SIZE_TEST = 800


def _add_limits_config(cfg):
    # Not in the original: bounds on what files from users may make the tools allocate
    # (docs/SECURITY.md). Masks of results files and of dataset records, in pixels.
    cfg.LIMITS = CN()
    cfg.LIMITS.MAX_MASK_PIXELS = MAX_MASK_PIXELS
    cfg.LIMITS.MAX_RECORD_PIXELS = MAX_RECORD_PIXELS


def add_seqrank_config(cfg, num_gpus=1):
    """Add every SeqRank key to a detectron2 ``cfg`` in place (original names and defaults)."""
    _add_model_config(cfg)
    _add_swin_config(cfg)
    _add_loss_config(cfg)
    _add_solver_data_test_config(cfg, num_gpus)
    _add_limits_config(cfg)
    return cfg


def prune_unknown_keys(reference, loaded, prefix=""):
    """Remove from the dict ``loaded`` (in place) every key that ``reference`` does not define.

    Returns the dotted names of the removed keys. Nested dicts are pruned recursively.
    """
    removed = []
    for key in list(loaded.keys()):
        full = prefix + key
        if key not in reference:
            removed.append(full)
            del loaded[key]
        elif isinstance(loaded[key], dict) and isinstance(reference[key], dict):
            removed += prune_unknown_keys(reference[key], loaded[key], full + ".")
    return removed


def merge_config_file(cfg, path):
    """Merge a YAML file (with ``_BASE_`` chains) into ``cfg``.

    Keys of :data:`LEGACY_KEYS` (in the released config dumps, read by no code) are dropped with
    a single warning.

    Raises:
        ConfigError: the file sets a key that neither SeqRank nor detectron2 defines.
    """
    loaded = cfg.load_yaml_with_base(path, allow_unsafe=True)
    removed = prune_unknown_keys(cfg, loaded)
    unknown = [key for key in removed if key not in LEGACY_KEYS]
    if unknown:
        raise ConfigError(
            f"{path}: unknown config key(s) {', '.join(unknown)} (not defined by SeqRank or "
            "detectron2; check the spelling)"
        )
    if removed:
        logger.warning(
            "Ignoring %d config key(s) unknown to SeqRank in %s (legacy keys of the released "
            "config dumps): %s",
            len(removed),
            path,
            ", ".join(removed),
        )
    cfg.merge_from_other_cfg(type(cfg)(loaded))
    return cfg
