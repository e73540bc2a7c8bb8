"""Which config goes with a checkpoint, and which bundled config fits one that does not load.

Every entry point that loads a checkpoint for inference (terminal demo, browser demo,
``launch.sh``, ``train_net.py --eval-only``, :meth:`SeqRankPredictor.from_checkpoint`) resolves
its config the same way, first match wins:

1. an explicit ``--config-file`` (or the ``config_file`` argument);
2. the ``SEQRANK_CONFIG`` environment variable;
3. ``config.yaml`` in the checkpoint's own folder (training writes it to OUTPUT_DIR);
4. the original's file-name rule: ``*correct_ckp.pth`` -> ``configs/swinL_correct.yaml``,
   anything else -> ``configs/swinL.yaml``.

When the checkpoint's tensors do not fit the model of that config, :func:`mismatch_hint` names
the bundled config whose shapes do fit, found by building each bundled model on the ``meta``
device (no memory, well under a second each).
"""

import contextlib
import functools
import glob
import logging
import os
from dataclasses import dataclass

__all__ = [
    "CONFIG_ENV",
    "SIDECAR_NAME",
    "ResolvedConfig",
    "bundled_configs",
    "explain_mismatch",
    "fitting_configs",
    "mismatch_explained",
    "mismatch_hint",
    "resolve_config",
    "weights_from_opts",
]

logger = logging.getLogger(__name__)

CONFIG_ENV = "SEQRANK_CONFIG"
SIDECAR_NAME = "config.yaml"
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_DIR = os.path.join(REPO_ROOT, "configs")


@dataclass(frozen=True)
class ResolvedConfig:
    """A config file and why it was chosen (one phrase, for the log and error messages)."""

    path: str
    reason: str

    def describe(self):
        return f"{_short(self.path)} ({self.reason})"


def _short(path):
    """``path`` relative to the repository when it lies inside it (shorter log lines)."""
    absolute = os.path.abspath(path)
    if absolute.startswith(REPO_ROOT + os.sep):
        return os.path.relpath(absolute, REPO_ROOT)
    return path


def resolve_config(checkpoint, config_file=None, environ=None):
    """The :class:`ResolvedConfig` of ``checkpoint`` (see the module docstring for the order).

    ``environ`` defaults to ``os.environ``. The checkpoint need not exist (the name rule still
    applies); nothing is read but the sidecar's existence.
    """
    environ = os.environ if environ is None else environ
    if config_file:
        return ResolvedConfig(os.fspath(config_file), "given with --config-file")
    if environ.get(CONFIG_ENV):
        return ResolvedConfig(environ[CONFIG_ENV], f"from {CONFIG_ENV}")
    folder = os.path.dirname(os.path.abspath(os.fspath(checkpoint)))
    sidecar = os.path.join(folder, SIDECAR_NAME)
    if os.path.isfile(sidecar):
        return ResolvedConfig(sidecar, f"{SIDECAR_NAME} beside the checkpoint, written by training")
    if os.fspath(checkpoint).endswith("correct_ckp.pth"):
        name = "swinL_correct.yaml"
        why = "file name ends in correct_ckp.pth"
    else:
        name = "swinL.yaml"
        why = "no config.yaml beside the checkpoint"
    return ResolvedConfig(os.path.join(CONFIG_DIR, name), f"the original's file-name rule: {why}")


def weights_from_opts(opts):
    """The value of ``MODEL.WEIGHTS`` in a KEY VALUE override list (the last one), or ``""``."""
    opts = list(opts)
    weights = ""
    for i in range(0, len(opts) - 1, 2):
        if opts[i] == "MODEL.WEIGHTS":
            weights = opts[i + 1]
    return weights


def bundled_configs():
    """The YAML configs shipped in ``configs/`` and ``configs/quick_schedules/``, sorted."""
    found = glob.glob(os.path.join(CONFIG_DIR, "*.yaml"))
    found += glob.glob(os.path.join(CONFIG_DIR, "*", "*.yaml"))
    return sorted(found)


@functools.lru_cache(maxsize=None)
def _meta_shapes(config_file):
    """``{key: shape}`` of the model ``config_file`` builds, built on the meta device."""
    import torch
    from detectron2.modeling import build_model

    from .engine.setup import build_cfg

    cfg = build_cfg(config_file, ["MODEL.DEVICE", "meta", "MODEL.WEIGHTS", ""])
    with torch.device("meta"), _quiet_model_build():
        model = build_model(cfg)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


@contextlib.contextmanager
def _quiet_model_build():
    previous = logging.root.manager.disable
    logging.disable(logging.INFO)
    try:
        yield
    finally:
        logging.disable(previous)


def _fits(state_shapes, model_shapes):
    return all(state_shapes.get(k) == shape for k, shape in model_shapes.items())


def fitting_configs(state_shapes, candidates=None):
    """The config files among ``candidates`` (default: :func:`bundled_configs`) whose model has
    exactly the checkpoint's keys' shapes (``state_shapes``: ``{key: shape tuple}``)."""
    fitting = []
    for config_file in bundled_configs() if candidates is None else candidates:
        try:
            shapes = _meta_shapes(os.path.abspath(config_file))
        except Exception as exc:  # noqa: BLE001  (a hint must never hide the real error)
            logger.debug("cannot build %s on the meta device: %s", config_file, exc)
            continue
        if _fits(state_shapes, shapes):
            fitting.append(config_file)
    return fitting


def _checkpoint_shapes(checkpoint):
    import torch

    from .checkpoint import SeqRankCheckpointer

    state = SeqRankCheckpointer(torch.nn.Module())._load_file(os.fspath(checkpoint))["model"]
    return {k.removeprefix("module."): tuple(v.shape) for k, v in state.items()}


def mismatch_hint(checkpoint, used_config, shapes=None):
    """One phrase telling which bundled config fits ``checkpoint`` (``""`` when the checkpoint
    cannot be read again); ``shapes`` are its tensors' shapes when already read."""
    from .cli import SeqRankUserError

    try:
        shapes = _checkpoint_shapes(checkpoint) if shapes is None else shapes
    except SeqRankUserError:
        return ""
    used = os.path.abspath(used_config)
    fitting = [c for c in fitting_configs(shapes) if os.path.abspath(c) != used]
    if not fitting:
        return "no bundled config fits it either"
    name = _short(fitting[0])
    return f"{name} fits it: pass --config-file {name} (or {CONFIG_ENV}={name})"


def _difference(shapes, model_shapes):
    """What differs between a checkpoint's and a model's tensors, in a few words."""
    bad = [k for k, v in model_shapes.items() if k in shapes and shapes[k] != v]
    if bad:
        first = bad[0]
        return (
            f"{len(bad)} tensor(s) have other shapes, e.g. {first} {shapes[first]} vs model "
            f"{model_shapes[first]}"
        )
    missing = [k for k in model_shapes if k not in shapes]
    return (
        f"{len(missing)} tensor(s) of the model are missing, e.g. {missing[0]}" if missing else ""
    )


def explain_mismatch(exc, checkpoint, resolved):
    """The one-line message of a :class:`CheckpointMismatchError` ``exc``: the checkpoint, the
    config used and why, what differs, and the bundled config that fits (when one does)."""
    from .cli import SeqRankUserError

    try:
        shapes = _checkpoint_shapes(checkpoint)
        difference = _difference(shapes, _meta_shapes(os.path.abspath(resolved.path)))
    except (SeqRankUserError, OSError, ValueError, RuntimeError):
        shapes, difference = None, ""
    if not difference:
        return f"{exc} [config: {resolved.describe()}]"
    hint = mismatch_hint(checkpoint, resolved.path, shapes)
    message = f"{checkpoint} does not fit the model of config {resolved.describe()}: {difference}"
    return f"{message}; {hint}" if hint else message


@contextlib.contextmanager
def mismatch_explained(checkpoint, resolved):
    """Re-raise a :class:`CheckpointMismatchError` of the block with :func:`explain_mismatch`'s
    message (nothing changes when ``resolved`` is ``None``)."""
    from .checkpoint import CheckpointMismatchError

    try:
        yield
    except CheckpointMismatchError as exc:
        if resolved is None:
            raise
        raise CheckpointMismatchError(explain_mismatch(exc, checkpoint, resolved)) from None
