"""Checkpoint loading that is strict about fit and careful about pickles.

* Full-model checkpoints must fit the model exactly: a missing, unexpected or shape-mismatched key
  raises :class:`CheckpointMismatchError` listing the first offenders (the original loaded
  non-strictly and silently left layers random when the YAML did not match the checkpoint).
* Backbone-only files (ImageNet initialisation) are loaded into the backbone: every key prefixed
  ``backbone.`` (our converter's and the original ``pretrained/convert_backbone.py``'s output) or
  Microsoft's raw Swin layout (``patch_embed.*``, ``layers.*``, ...). The leftovers of the
  classification model (``head.*``, the final ``norm.*``, ``attn_mask`` and
  ``relative_position_index`` buffers the model does not hold) are ignored and listed in one log
  line. Every other backbone weight must be present and fit; only the detection-only Swin stage
  norms ``norm0..3`` may be missing (they start at their defaults, as in the original).
* Files are unpickled with ``weights_only=True`` plus an allow-list of the plain Python/NumPy types
  detectron2 training state contains. Anything else needs an explicit opt-in
  (``--trust-checkpoint`` or ``SEQRANK_TRUST_CHECKPOINTS=1``). Before that, the pickle is scanned
  so that no object it builds can take more memory than the file warrants
  (:mod:`seqrank.utils.safe_pickle`).
* Everything a user can get wrong (a missing path, a directory, a URL, a text or HTML file, a Git
  LFS pointer, an empty ``last_checkpoint``, NaN/Inf weights) is a one-line
  :class:`CheckpointError` naming the file.
"""

import collections
import logging
import os
import pickle
import re
import zipfile

import numpy as np
import torch
from detectron2.checkpoint import DetectionCheckpointer

from .cli import MissingFileError, SeqRankUserError
from .utils.atomic_io import atomic_torch_save, atomic_write_bytes
from .utils.safe_pickle import (
    load_error_line,
    preflight_torch_file,
    refused_global,
)

__all__ = [
    "CheckpointError",
    "CheckpointMismatchError",
    "SeqRankCheckpointer",
    "check_checkpoint_path",
    "check_finite",
    "safe_torch_load",
    "trust_checkpoints",
]

logger = logging.getLogger(__name__)
TRUST_ENV = "SEQRANK_TRUST_CHECKPOINTS"
MAX_LISTED_KEYS = 10
BACKBONE_PREFIX = "backbone."
# What ImageNet classification checkpoints hold besides the backbone: the classifier, the norm
# before it, and Swin buffers that the detection backbone recomputes (ignored when the model
# has no such key).
_CLASSIFICATION_LEFTOVER = re.compile(
    r"backbone\.(head\..*|norm\.(weight|bias)|(.*\.)?attn_mask|(.*\.)?relative_position_index)"
)
# Backbone layers only the detection model has (Swin's per-stage output norms): a classification
# checkpoint cannot provide them, so they keep their initialisation.
_DETECTION_ONLY = re.compile(r"backbone\.norm\d+\.(weight|bias)")
_BUFFER_SUFFIXES = ("attn_mask", "relative_position_index")


class CheckpointError(SeqRankUserError, ValueError):
    """A checkpoint path or file that cannot be used (the message names it and the problem)."""


class CheckpointMismatchError(SeqRankUserError, RuntimeError):
    """The checkpoint's keys or shapes do not fit the model built from the config."""


class UntrustedCheckpointError(SeqRankUserError, RuntimeError):
    """The file holds Python objects outside the allow-list."""


def trust_checkpoints():
    """Whether the environment (``SEQRANK_TRUST_CHECKPOINTS``, set by ``--trust-checkpoint`` for
    every process of a run) allows arbitrary unpickling: the default of the ``trust`` arguments.
    """
    return os.environ.get(TRUST_ENV, "") not in ("", "0", "false", "False")


def _allowed_globals():
    allowed = [collections.Counter, collections.OrderedDict, collections.defaultdict, np.ndarray]
    allowed.append(np.dtype)
    allowed += [type(np.dtype(t)) for t in ("f2", "f4", "f8", "i1", "i2", "i4", "i8", "u1", "b1")]
    allowed.append(np._core.multiarray._reconstruct)
    allowed.append(np._core.multiarray.scalar)
    return allowed


def check_checkpoint_path(path):
    """Refuse, with one line naming ``path``, what cannot be a local checkpoint file."""
    path = os.fspath(path)
    if "://" in path:
        raise CheckpointError(
            f"{path}: checkpoints are not downloaded; download the file and give its local path"
        )
    if os.path.isdir(path):
        raise CheckpointError(f"{path}: is a directory, not a checkpoint file")
    if not os.path.isfile(path):
        raise MissingFileError(f"{path}: checkpoint file not found")


def safe_torch_load(path, map_location="cpu", trust=False):
    """``torch.load`` restricted to tensors, containers and plain NumPy values; with ``trust``,
    a plain ``torch.load`` (any pickled object: only for files the user trusts).

    Raises:
        MissingFileError (a FileNotFoundError): the file does not exist.
        UntrustedCheckpointError: the file needs arbitrary unpickling (and trust was not given).
        CheckpointError (a ValueError): anything else that makes the file unusable: not a torch
            file, truncated, or objects larger than the file warrants.
    """
    path = os.fspath(path)
    check_checkpoint_path(path)
    if trust:
        return torch.load(path, map_location=map_location, weights_only=False)
    preflight_torch_file(path, CheckpointError)
    try:
        with torch.serialization.safe_globals(_allowed_globals()):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        refused = refused_global(str(exc))
        if refused:
            raise UntrustedCheckpointError(
                f"{path}: refusing to unpickle objects outside the allow-list ({refused}); "
                f"if you trust this file, pass --trust-checkpoint or set {TRUST_ENV}=1"
            ) from None
        raise CheckpointError(
            f"{path}: not a readable torch checkpoint ({load_error_line(exc)})"
        ) from None
    except (RuntimeError, EOFError, KeyError, ValueError, OSError, zipfile.BadZipFile) as exc:
        raise CheckpointError(
            f"{path}: not a readable torch checkpoint ({load_error_line(exc)})"
        ) from None


def check_finite(path, state):
    """Refuse NaN/Inf in the floating-point tensors of ``state``, naming the first bad one."""
    for key, value in state.items():
        if not (torch.is_floating_point(value) or torch.is_complex(value)):
            continue
        finite = torch.isfinite(value)
        if not bool(finite.all()):
            bad = value.numel() - int(finite.sum())
            raise CheckpointError(
                f"{path}: tensor '{key}' holds {bad} NaN/Inf value(s) of {value.numel()}; the "
                "checkpoint is corrupt or its training diverged"
            )


def _backbone_only(state):
    return bool(state) and all(k.startswith(BACKBONE_PREFIX) for k in state)


def _is_raw_backbone(state, model_keys):
    """Keys of a bare backbone (Microsoft's Swin layout): none names a top-level module of the
    model, and at least one fits the backbone once prefixed with ``backbone.``."""
    tops = {k.split(".", 1)[0] for k in model_keys}
    if not state or any(k.split(".", 1)[0] in tops for k in state):
        return False
    return any(BACKBONE_PREFIX + k in model_keys for k in state)


def _summarise_leftovers(keys):
    """``head.weight, norm.bias, 4 attn_mask buffers``: buffers counted, other keys listed."""
    parts = [k for k in keys if not k.endswith(_BUFFER_SUFFIXES)]
    for suffix in _BUFFER_SUFFIXES:
        count = sum(k.endswith(suffix) for k in keys)
        if count:
            parts.append(f"{count} {suffix} buffer{'s' if count > 1 else ''}")
    return _fmt(parts)


def _fmt(keys):
    keys = list(keys)
    more = f" ... (+{len(keys) - MAX_LISTED_KEYS} more)" if len(keys) > MAX_LISTED_KEYS else ""
    return ", ".join(keys[:MAX_LISTED_KEYS]) + more


class SeqRankCheckpointer(DetectionCheckpointer):
    """DetectionCheckpointer with safe unpickling, a strict fit check for full models and atomic
    saves (a run killed while saving never leaves a truncated checkpoint behind).

    ``trust``: load any pickled object (``.pkl`` files, checkpoints with objects outside the
    allow-list); ``None`` takes :func:`trust_checkpoints` when the checkpointer is made.
    """

    def __init__(self, model, save_dir="", *, trust=None, **kwargs):
        super().__init__(model, save_dir, **kwargs)
        self.trust = trust_checkpoints() if trust is None else bool(trust)

    def load(self, path, *args, **kwargs):
        if path:
            check_checkpoint_path(path)
        return super().load(path, *args, **kwargs)

    def get_checkpoint_file(self):
        """The checkpoint ``last_checkpoint`` names; refused if empty or naming a missing file."""
        tag = os.path.join(self.save_dir, "last_checkpoint")
        try:
            with open(tag, encoding="utf-8", errors="replace") as f:
                name = f.read().strip()
        except FileNotFoundError:
            # Removed by another process since has_checkpoint(): start from MODEL.WEIGHTS.
            return ""
        hint = "delete it to start from MODEL.WEIGHTS"
        if not name:
            raise CheckpointError(f"{tag} is empty; {hint}, or write a checkpoint's name in it")
        path = os.path.join(self.save_dir, name)
        if not os.path.isfile(path):
            raise CheckpointError(
                f"{tag} names {name!r}, which is not a file in {self.save_dir}; {hint}, or "
                "restore that checkpoint"
            )
        return path

    def save(self, name, **kwargs):
        if not self.save_dir or not self.save_to_disk:
            return
        data = {"model": self.model.state_dict()}
        data.update({key: obj.state_dict() for key, obj in self.checkpointables.items()})
        data.update(kwargs)
        basename = f"{name}.pth"
        path = os.path.join(self.save_dir, basename)
        self.logger.info("Saving checkpoint to %s", path)
        atomic_torch_save(path, data)
        self.tag_last_checkpoint(basename)

    def tag_last_checkpoint(self, last_filename_basename):
        path = os.path.join(self.save_dir, "last_checkpoint")
        atomic_write_bytes(path, last_filename_basename.encode())

    def _load_file(self, filename):
        if filename.endswith(".pkl"):
            return super()._load_file(filename) if self.trust else self._refuse_pkl(filename)
        loaded = safe_torch_load(filename, trust=self.trust)
        if not isinstance(loaded, dict):
            raise CheckpointError(
                f"{filename}: expected a dict checkpoint, got {type(loaded).__name__}"
            )
        if "model" not in loaded:
            loaded = {"model": loaded}
        if not isinstance(loaded["model"], dict) or not all(
            isinstance(v, torch.Tensor) for v in loaded["model"].values()
        ):
            raise CheckpointError(
                f"{filename}: its 'model' entry is not a state_dict of tensors; a results file "
                "(*_coco_format.pth) is evaluated with `python -m scripts.evaluation_tool`"
            )
        self._loaded_path = filename
        return loaded

    @staticmethod
    def _refuse_pkl(filename):
        raise UntrustedCheckpointError(
            f"{filename}: .pkl checkpoints are plain pickles; pass --trust-checkpoint or set "
            f"{TRUST_ENV}=1 to load it"
        )

    def _load_model(self, checkpoint):
        path = getattr(self, "_loaded_path", "checkpoint")
        model_keys = dict.fromkeys(self.model.state_dict())  # ordered, O(1) lookups
        if _is_raw_backbone(checkpoint["model"], model_keys):
            logger.info("%s: keys without the 'backbone.' prefix, loaded as backbone weights", path)
            checkpoint["model"] = {BACKBONE_PREFIX + k: v for k, v in checkpoint["model"].items()}
        state = checkpoint["model"]
        check_finite(path, state)
        backbone_only = _backbone_only(state)
        if backbone_only:
            self._drop_leftovers(path, state, model_keys)
            self._check_backbone_keys(path, state, model_keys)
        self._check_shapes(path, state)
        incompatible = super()._load_model(checkpoint)
        if backbone_only:
            defaults = [k for k in incompatible.missing_keys if k.startswith(BACKBONE_PREFIX)]
            logger.info(
                "Loaded backbone-only weights from %s; the heads keep their initialisation%s",
                path,
                (
                    f" (detection-only backbone keys at default init: {_fmt(defaults)})"
                    if defaults
                    else ""
                ),
            )
            incompatible.missing_keys.clear()
            return incompatible
        if incompatible.missing_keys or incompatible.unexpected_keys:
            raise CheckpointMismatchError(
                f"{path} does not fit the model built from the config "
                f"(missing {len(incompatible.missing_keys)} keys: "
                f"{_fmt(incompatible.missing_keys)}; unexpected "
                f"{len(incompatible.unexpected_keys)} keys: {_fmt(incompatible.unexpected_keys)}). "
                "Check that --config-file matches the checkpoint (e.g. *_correct_ckp.pth needs "
                "configs/swinL_correct.yaml)."
            )
        return incompatible

    @staticmethod
    def _drop_leftovers(path, state, model_keys):
        """Remove (in place) the classification-only keys the model does not have; one log line."""
        leftovers = [
            k for k in state if k not in model_keys and _CLASSIFICATION_LEFTOVER.fullmatch(k)
        ]
        for key in leftovers:
            del state[key]
        if leftovers:
            logger.info(
                "%s: ignored %d key(s) of the classification model: %s",
                path,
                len(leftovers),
                _summarise_leftovers([k[len(BACKBONE_PREFIX) :] for k in leftovers]),
            )

    @staticmethod
    def _check_backbone_keys(path, state, model_keys):
        unexpected = [k for k in state if k not in model_keys]
        missing = [
            k
            for k in model_keys
            if k.startswith(BACKBONE_PREFIX) and k not in state and not _DETECTION_ONLY.fullmatch(k)
        ]
        if unexpected or missing:
            raise CheckpointMismatchError(
                f"{path}: backbone weights do not fit MODEL.BACKBONE (missing {len(missing)}: "
                f"{_fmt(missing) or '-'}; unexpected {len(unexpected)}: {_fmt(unexpected) or '-'})"
            )

    def _check_shapes(self, path, state):
        model_state = self.model.state_dict()
        bad = [
            f"{k} {tuple(v.shape)} vs model {tuple(model_state[k].shape)}"
            for k, v in state.items()
            if k in model_state and tuple(v.shape) != tuple(model_state[k].shape)
        ]
        if bad:
            raise CheckpointMismatchError(
                f"{path}: {len(bad)} tensor(s) have shapes that do not fit the model: {_fmt(bad)}"
            )
