"""Single-image inference for the demos: build the model, load weights, rank one RGB image."""

import logging
import os

import cv2
import numpy as np
import torch
from detectron2.modeling import build_model

from .checkpoint import (
    CheckpointMismatchError,
    SeqRankCheckpointer,
    check_checkpoint_path,
)

# add_predictor_arguments is re-exported.
from .cli import ConfigError, add_predictor_arguments, precision_opts  # noqa: F401
from .config_resolution import explain_mismatch, resolve_config, weights_from_opts
from .engine.setup import build_cfg, fit_to_machine

__all__ = ["SeqRankPredictor", "add_predictor_arguments", "build_predictor_from_args", "preprocess"]

logger = logging.getLogger(__name__)


def preprocess(image_rgb, size):
    """``H x W x 3`` uint8 -> ``3 x S x S`` float32 (0..255), resized like the test mapper; the
    channel order is kept."""
    if image_rgb.ndim != 3 or image_rgb.shape[2] != 3:
        raise ValueError(f"expected an H x W x 3 RGB image, got shape {image_rgb.shape}")
    resized = cv2.resize(image_rgb, (size, size), interpolation=cv2.INTER_LINEAR)
    return torch.from_numpy(np.ascontiguousarray(resized.transpose(2, 0, 1))).float()


class SeqRankPredictor:
    """``predictor(image_rgb)`` returns the ranked result dict of one image (see ``SeqRank``).

    The model receives the image in ``INPUT.FORMAT`` channel order ("RGB" in every shipped
    config; "BGR" flips the channels), as detectron2's ``DefaultPredictor`` and the original
    demo's predictor do. Only the call's argument differs: it is RGB here, BGR there.
    ``trust`` is the checkpointer's (:class:`SeqRankCheckpointer`): ``True`` allows arbitrary
    pickled objects in ``MODEL.WEIGHTS``; ``None`` leaves it to ``SEQRANK_TRUST_CHECKPOINTS``.
    """

    def __init__(self, cfg, trust=None):
        if cfg.INPUT.FORMAT not in ("RGB", "BGR"):
            raise ConfigError(f"INPUT.FORMAT must be 'RGB' or 'BGR', got {cfg.INPUT.FORMAT!r}")
        self.cfg = cfg.clone()
        self.model = build_model(self.cfg)
        SeqRankCheckpointer(self.model, trust=trust).load(cfg.MODEL.WEIGHTS)
        self.model.eval()
        self.size = cfg.INPUT.FT_SIZE_TEST
        self.input_format = cfg.INPUT.FORMAT
        # The config file and why it was chosen (set by from_checkpoint and the demos).
        self.resolved_config = None

    @classmethod
    def from_checkpoint(cls, path, config_file=None, device=None, opts=()):
        """A predictor for the checkpoint ``path``.

        Args:
            path: checkpoint file (``.pth``).
            config_file: its config; ``None`` resolves it as the demos do (``SEQRANK_CONFIG``,
                then ``config.yaml`` beside the checkpoint, then the file-name rule), see
                :mod:`seqrank.config_resolution`.
            device: ``"cpu"``, ``"cuda"``, ``"cuda:N"``; ``None`` takes the config's
                (``cuda``, which falls back to the CPU where there is no GPU).
            opts: further config overrides as a KEY VALUE list.

        Raises:
            SeqRankUserError: one line naming the file and the problem.
        """
        opts = list(opts) + (["MODEL.DEVICE", str(device)] if device is not None else [])
        return _build(path, resolve_config(path, config_file), opts)

    def __call__(self, image_rgb, image_name=0):
        height, width = image_rgb.shape[:2]
        if self.input_format == "BGR":
            image_rgb = np.ascontiguousarray(image_rgb[:, :, ::-1])
        inputs = {
            "image": preprocess(image_rgb, self.size),
            "height": height,
            "width": width,
            "image_name": image_name,
        }
        with torch.inference_mode():
            return self.model([inputs])[0]


def build_predictor_from_args(config_file, opts, trust_checkpoint, precision=None):
    """A SeqRankPredictor from a demo command line (``--config-file``, ``--opts``, trust flag,
    ``--precision``: ``TEST.PRECISION`` when given, after ``opts``).

    The checkpoint is ``MODEL.WEIGHTS`` of ``opts``; a ``config_file`` of ``None`` is resolved
    from it (:func:`resolve_config`). Falls back to the CPU where there is no GPU.
    ``trust_checkpoint`` lets the checkpoint hold arbitrary pickled objects (else the
    ``SEQRANK_TRUST_CHECKPOINTS`` environment decides, as for every checkpointer).

    Raises:
        SeqRankUserError: a one-line message naming the config file, ``MODEL.WEIGHTS`` or the key
            that is wrong (missing, unreadable, not fitting the model: then with the config used
            and the bundled config that fits, if one does).
    """
    opts = list(opts) + precision_opts(precision)
    weights = weights_from_opts(opts)
    if not weights and config_file:
        weights = build_cfg(config_file, opts).MODEL.WEIGHTS
    if not weights:
        raise ConfigError("no checkpoint given: pass --opts MODEL.WEIGHTS <checkpoint.pth>")
    return _build(weights, resolve_config(weights, config_file), opts, trust_checkpoint or None)


def _build(weights, resolved, opts, trust=None):
    check_checkpoint_path(weights)
    logger.info("config: %s", resolved.describe())
    cfg = build_cfg(resolved.path, list(opts) + ["MODEL.WEIGHTS", os.fspath(weights)])
    for note in fit_to_machine(cfg):
        logger.info(note)
    cfg.freeze()
    logger.info("loading %s on %s (%s)", weights, cfg.MODEL.DEVICE, cfg.TEST.PRECISION)
    try:
        predictor = SeqRankPredictor(cfg, trust=trust)
    except CheckpointMismatchError as exc:
        raise CheckpointMismatchError(explain_mismatch(exc, weights, resolved)) from None
    predictor.resolved_config = resolved
    return predictor
