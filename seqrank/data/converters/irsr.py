"""Convert the original IRSR release (Liu et al., TPAMI 2021) into the SeqRank dataset layout.

Usage::

    python -m scripts.convert_irsr --root /data/IRSR --output datasets [--splits train test]

Source layout (``--root``)::

    Annotations/<split>.pkl      list of {"file_name", "annotations": [{"bbox" (XYWH),
                                 "segmentation" (COCO polygons)}], "rank": [value per annotation]}
    Images/<split>/rgb/<file_name>

Output: ``<output>/irsr/irsr_<split>.json`` and ``<output>/irsr/images/<split>/<name>.jpg``
(copies, or symlinks with ``--link``); ``height``/``width`` are read from the image files.

Rank mapping (an assumption, documented because the release does not state it). IRSR stores
per-object rank values where 0 means "not salient"; we assume, as for its grey-level GT rank maps
(brighter = more salient), that a LARGER value means MORE salient (``--rank-order higher-first``,
the default). If your copy numbers ranks 1 = most salient, pass ``--rank-order lower-first``.
Either way only objects with a value > 0 are ranked, and the M ranked objects of an image get the
distinct ``category_id`` M (most salient) down to 1, because the SeqRank format needs a strict
order (higher = more salient). IRSR contains equal rank values: each such image is reported
(warning naming it) and its ties are broken by annotation index, the earlier annotation being
treated as more salient; the summary counts the tied images. Unranked objects are dropped unless
``--keep-unranked`` writes them with ``category_id`` 0. Annotation order is preserved; float
polygon coordinates are rounded to the nearest integer.

The pickle is read with a restricted unpickler that only accepts builtin containers and numpy
array/scalar reconstruction; any other class is refused with an error. Before that its opcodes
are scanned (``seqrank.utils.safe_pickle``): a ``bytearray``, ``range``, ``bytes`` or array of more
than 16 MB, or objects adding up to far more than the file holds, are refused too.
"""

import argparse
import logging
import os
import pickle

from tqdm import tqdm

from ...utils.safe_pickle import PickleLimitError, check_pickle_file
from .common import (
    ConversionError,
    ConvertOptions,
    SourceImage,
    add_source_arguments,
    add_switch_arguments,
    convert_release,
    find_image,
    run_cli,
    strip_image_extension,
)

logger = logging.getLogger(__name__)

DEFAULT_SPLITS = ("train", "test")

_ALLOWED_GLOBALS = {
    ("builtins", "set"),
    ("builtins", "frozenset"),
    ("builtins", "complex"),
    ("builtins", "slice"),
    ("builtins", "range"),
    ("builtins", "bytearray"),
    ("collections", "OrderedDict"),
    # Protocol-2 pickles of numpy arrays rebuild their byte buffers through _codecs.encode.
    ("_codecs", "encode"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
}
# Python 2 pickles name the builtins module differently.
_MODULE_ALIASES = {"__builtin__": "builtins"}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler limited to plain data: builtin containers and numpy arrays/scalars."""

    def find_class(self, module, name):
        module = _MODULE_ALIASES.get(module, module)
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(
                f"refusing to load {module}.{name}: only builtin containers and numpy arrays "
                "are allowed in an IRSR annotation file"
            )
        return super().find_class(module, name)


def load_annotations(path):
    """Read an IRSR ``.pkl`` annotation file with the restricted unpickler."""
    if not os.path.isfile(path):
        raise ConversionError(f"IRSR annotation file not found: {path}")
    try:
        check_pickle_file(path)
    except PickleLimitError as exc:
        raise ConversionError(str(exc)) from None
    try:
        with open(path, "rb") as f:
            # latin1 lets Python 2 pickles (str file names, numpy buffers) load unchanged.
            content = RestrictedUnpickler(f, encoding="latin1").load()
    except (
        pickle.UnpicklingError,
        EOFError,
        AttributeError,
        ImportError,
        ValueError,
        TypeError,
        IndexError,
        KeyError,
    ) as exc:
        raise ConversionError(f"{path}: cannot read annotations ({exc})") from None
    if not isinstance(content, list):
        raise ConversionError(
            f"{path}: expected a list of image dicts, got {type(content).__name__}"
        )
    return content


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m scripts.convert_irsr",
        description="Convert the original IRSR release into the SeqRank layout "
        "(<output>/irsr/irsr_<split>.json + images). Objects with rank 0 are unranked; ties "
        "are broken by annotation index and reported.",
    )
    add_source_arguments(parser, "IRSR", DEFAULT_SPLITS)
    parser.add_argument(
        "--rank-order",
        choices=("higher-first", "lower-first"),
        default="higher-first",
        help="which rank values are more salient: larger ones (default) or smaller positive ones",
    )
    add_switch_arguments(parser)
    return parser.parse_args(argv)


def _as_list(value):
    return value.tolist() if hasattr(value, "tolist") else value


def _rank_values(entry, num_objects, where):
    values = _as_list(entry.get("rank"))
    if not isinstance(values, list) or len(values) != num_objects:
        raise ConversionError(f'{where}: "rank" must be a list with one value per annotation')
    values = [_as_list(v) for v in values]
    if any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in values):
        raise ConversionError(f'{where}: "rank" values must be numbers')
    return values


def _source_image(root, split, entry, where):
    if not isinstance(entry, dict) or not isinstance(entry.get("file_name"), str):
        raise ConversionError(f'{where}: expected a dict with a "file_name"')
    name = strip_image_extension(entry["file_name"])
    where = f"{where} ({name})"
    objects = _as_list(entry.get("annotations"))
    if not isinstance(objects, list) or not all(
        isinstance(o, dict) and "segmentation" in o for o in objects
    ):
        raise ConversionError(f'{where}: "annotations" must be a list of dicts with "segmentation"')
    values = _rank_values(entry, len(objects), where)
    return SourceImage(
        name=name,
        image_path=find_image(os.path.join(root, "Images", split, "rgb"), entry["file_name"]),
        values=values,
        ranked=[v > 0 for v in values],
        segmentations=[o["segmentation"] for o in objects],
        where=where,
    )


def _sources(root, split):
    ann_path = os.path.join(root, "Annotations", f"{split}.pkl")
    entries = load_annotations(ann_path)
    for index, entry in enumerate(tqdm(entries, desc=f"irsr_{split}", unit="img")):
        yield _source_image(root, split, entry, f"{ann_path} entry {index}")


def convert_irsr(root, output, splits=DEFAULT_SPLITS, options=None):
    """Convert the requested splits; returns ``{split: SplitSummary}``."""
    options = options or ConvertOptions()
    order = "higher-first" if options.higher_first else "lower-first"
    return convert_release(
        "irsr", root, output, splits, _sources, options, f" (rank order {order})"
    )


def main(argv=None):
    args = parse_args(argv)
    run_cli("convert_irsr", convert_irsr, args, higher_first=args.rank_order == "higher-first")
