"""Convert an ImageNet backbone checkpoint into a file that ``MODEL.WEIGHTS`` accepts.

Swin (default, ``--arch swin``): Microsoft's official checkpoint (e.g.
``swin_large_patch4_window12_384_22k.pth``, a dict whose "model" entry holds ``patch_embed.*``,
``layers.*``, ``norm.*``, ``head.*``) gets "backbone." prepended to every key. The classifier
``head.*``, the final ``norm.*`` (the detectron2 backbone has per-stage ``norm0..3`` instead, which
then start at their defaults) and the ``attn_mask`` buffers (recomputed on every forward) are
dropped.

ResNet (``--arch resnet``): a torchvision ResNet/ResNeXt ImageNet state dict is mapped onto the
``layer0..layer4`` layout of the SeqRank ResNeXt backbones.

Usage: ``python -m scripts.convert_backbone INPUT OUTPUT [--arch {swin,resnet}]`` (also under its
old name ``scripts.convert_swin_backbone`` and the original's ``pretrained/convert_backbone.py``)
"""

import argparse
import logging
import os
import pickle
import sys
from collections import OrderedDict

import torch

from seqrank.cli import SeqRankUserError, setup_cli_logging
from seqrank.modeling.backbone.resnet import convert_torchvision_resnet_state_dict
from seqrank.utils.atomic_io import atomic_torch_save
from seqrank.utils.safe_pickle import PickleLimitError, check_torch_file, describe_non_torch_file

logger = logging.getLogger(__name__)

PREFIX = "backbone."
AUTHOR = "seqrank-convert"


class ConversionError(SeqRankUserError):
    """A problem with the input file, reported to the user as one line."""


def load_state_dict(path, trust_pickle=False):
    """Read ``path`` and return its state dict (the "model" entry, or the whole dict)."""
    if not os.path.isfile(path):
        raise ConversionError(f"input checkpoint not found: {path}")
    if not trust_pickle:
        _check_untrusted(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=not trust_pickle)
    except pickle.UnpicklingError as exc:
        # weights_only refuses pickled classes (e.g. a saved yacs config) with "Unsupported global".
        if "unsupported global" in str(exc).lower():
            raise ConversionError(
                f"{path} holds pickled objects besides tensors; re-run with --trust-pickle "
                "only if you trust this file"
            ) from exc
        raise ConversionError(f"cannot read {path}: not a valid torch checkpoint") from exc
    except (OSError, RuntimeError, EOFError, ValueError) as exc:
        raise ConversionError(f"cannot read {path}: {_first_line(exc)}") from exc
    return _extract_state_dict(obj, path)


def _check_untrusted(path):
    """Refuse what is not a torch file, and pickles that would allocate more than they hold."""
    problem = describe_non_torch_file(path)
    if problem:
        raise ConversionError(f"cannot read {path}: {problem}")
    try:
        check_torch_file(path)
    except PickleLimitError as exc:
        raise ConversionError(str(exc)) from None


def _first_line(exc):
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _extract_state_dict(obj, path):
    if not isinstance(obj, dict):
        raise ConversionError(f"{path} holds a {type(obj).__name__}, not a checkpoint dict")
    for key in ("model", "state_dict"):
        if isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    tensors = OrderedDict((k, v) for k, v in obj.items() if isinstance(v, torch.Tensor))
    if not tensors:
        raise ConversionError(f"{path} has no 'model' entry and no tensors (not a state dict)")
    skipped = [k for k in obj if k not in tensors]
    if skipped:
        logger.warning("Ignoring %d non-tensor entries: %s", len(skipped), ", ".join(skipped))
    return tensors


def _is_dropped_swin_key(key):
    return key.startswith(("head.", "norm.")) or key.endswith("attn_mask")


def convert_swin_state_dict(state_dict, prefix=PREFIX):
    """Prefix Swin keys with "backbone." and drop head/final-norm/attn_mask entries.

    Keys that already carry ``prefix`` are kept unchanged. Returns ``(converted, dropped)``.
    """
    converted, dropped = OrderedDict(), []
    for key, value in state_dict.items():
        bare = key[len(prefix) :] if key.startswith(prefix) else key
        if _is_dropped_swin_key(bare):
            dropped.append(key)
        else:
            converted[prefix + bare] = value
    return converted, dropped


def convert(state_dict, arch="swin"):
    """Return ``(converted state dict, dropped keys)`` for the given architecture."""
    if arch == "swin":
        return convert_swin_state_dict(state_dict)
    return convert_torchvision_resnet_state_dict(state_dict, prefix=PREFIX)


def save_atomic(obj, path):
    """torch.save ``obj`` to a temporary file beside ``path``, then rename it into place."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    atomic_torch_save(path, obj)


def _summarise_dropped(dropped):
    masks = [k for k in dropped if k.endswith("attn_mask")]
    others = [k for k in dropped if not k.endswith("attn_mask")]
    parts = others + ([f"{len(masks)} attn_mask buffers"] if masks else [])
    return ", ".join(parts) if parts else "nothing"


def run(input_path, output_path, arch="swin", trust_pickle=False):
    """Convert ``input_path`` into a detectron2 checkpoint at ``output_path``; returns the dict."""
    state_dict = load_state_dict(input_path, trust_pickle=trust_pickle)
    converted, dropped = convert(state_dict, arch)
    if not converted:
        raise ConversionError(f"nothing left to save after dropping {len(dropped)} keys")
    logger.info("Dropped %d keys: %s", len(dropped), _summarise_dropped(dropped))
    checkpoint = {"model": converted, "__author__": AUTHOR, "matching_heuristics": False}
    save_atomic(checkpoint, output_path)
    logger.info("Wrote %d tensors to %s", len(converted), output_path)
    return checkpoint


def build_parser():
    parser = argparse.ArgumentParser(
        description="Convert an official Swin (or torchvision ResNet) ImageNet checkpoint into a "
        "SeqRank MODEL.WEIGHTS file with 'backbone.'-prefixed keys.",
    )
    parser.add_argument("input", help="source checkpoint (.pth)")
    parser.add_argument("output", help="converted checkpoint to write (.pth)")
    parser.add_argument(
        "--arch",
        choices=("swin", "resnet"),
        default="swin",
        help="layout of the source checkpoint (default: swin)",
    )
    parser.add_argument(
        "--trust-pickle",
        action="store_true",
        help="load with weights_only=False (runs pickled code: only for files you trust)",
    )
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    setup_cli_logging()
    try:
        run(args.input, args.output, arch=args.arch, trust_pickle=args.trust_pickle)
    except ConversionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
