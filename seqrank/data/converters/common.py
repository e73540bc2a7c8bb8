"""Shared pieces of the ASSR / IRSR converters into the SeqRank dataset layout.

Output layout (docs/ARCHITECTURE.md, "Data formats")::

    <output>/<id>/<id>_<split>.json       {"__comment__": str, "data": [record, ...]}
    <output>/<id>/images/<split>/<image_name>.jpg

A record is ``{"image_name", "height", "width", "annotations": [{"category_id", "segmentation"}]}``
where ``category_id > 0`` is the object's rank value, higher = more salient, and the segmentation
is a list of flat integer polygons ``[x1, y1, x2, y2, ...]``.
"""

import logging
import math
import numbers
import os
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass

from PIL import Image

from ...cli import (
    SeqRankUserError,
    add_debug_argument,
    debug_requested,
    setup_cli_logging,
    user_errors,
)
from ...utils.atomic_io import atomic_write_json
from ..image_io import IMAGE_EXTENSIONS

__all__ = [
    "ConversionError",
    "ConvertOptions",
    "SourceImage",
    "SplitSummary",
    "add_source_arguments",
    "add_switch_arguments",
    "convert_release",
    "convert_split",
    "assign_category_ids",
    "find_image",
    "image_size",
    "normalise_polygons",
    "place_image",
    "run_cli",
    "strip_image_extension",
    "write_dataset_json",
]

logger = logging.getLogger(__name__)


class ConversionError(SeqRankUserError, ValueError):
    """The source release is missing a file or holds a malformed record (message names it)."""


@dataclass
class SplitSummary:
    """Counts gathered while converting one split."""

    images: int = 0
    objects_kept: int = 0
    objects_unranked: int = 0
    objects_negative: int = 0
    tied_images: int = 0
    empty_images: int = 0
    non_jpeg_images: int = 0
    unranked_written: bool = False

    def log(self, name):
        logger.info(
            "%s: %d images, %d ranked objects kept, %d unranked objects %s "
            "(%d of them with a negative rank value), %d images with rank ties, "
            "%d images without any ranked object",
            name,
            self.images,
            self.objects_kept,
            self.objects_unranked,
            "written with category_id 0" if self.unranked_written else "dropped",
            self.objects_negative,
            self.tied_images,
            self.empty_images,
        )
        if self.tied_images:
            logger.warning(
                "%s: %d images had tied rank values; ties were broken by object index "
                "(the earlier object is treated as more salient)",
                name,
                self.tied_images,
            )
        if self.empty_images:
            logger.warning(
                "%s: %d images have no ranked object; they are kept (evaluation needs every "
                "image) but the original training mapper cannot use them",
                name,
                self.empty_images,
            )
        if self.non_jpeg_images:
            logger.warning(
                "%s: %d source images are not JPEG files; they were stored unchanged under a "
                ".jpg name (PIL and OpenCV detect the format from the content)",
                name,
                self.non_jpeg_images,
            )


def assign_category_ids(values, ranked, higher_first=True):
    """Turn per-object rank values into SeqRank category ids.

    Args:
        values: K rank values, one per object, in the source object order.
        ranked: K booleans, True for the objects that take part in the ranking.
        higher_first: True if a larger value means more salient.

    Returns:
        (category_ids, ties): ``category_ids[i]`` is 0 for unranked objects; the M ranked objects
        get the distinct ids 1..M, M for the most salient. Equal values are ordered by object
        index, the earlier object being more salient. ``ties`` maps each value shared by several
        ranked objects to its count (empty without ties).
    """
    kept = [i for i in range(len(values)) if ranked[i]]
    sign = -1 if higher_first else 1
    order = sorted(kept, key=lambda i: (sign * values[i], i))
    category_ids = [0] * len(values)
    for position, index in enumerate(order):
        category_ids[index] = len(order) - position
    counts = Counter(values[i] for i in kept)
    ties = {value: count for value, count in counts.items() if count > 1}
    return category_ids, ties


def _as_number(value, where):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ConversionError(f"{where}: expected a number, got {value!r:.60}")
    if not math.isfinite(float(value)):
        raise ConversionError(f"{where}: non-finite value {value!r}")
    return value


def normalise_polygons(segmentation, where):
    """Check COCO polygons and return them as lists of ints (floats rounded half up).

    The SeqRank mapper rasterises with cv2.fillPoly, which rejects float points (quirk 19), so
    float coordinates are rounded here. Raises ConversionError naming ``where`` for anything that
    is not a non-empty list of even-length coordinate lists (e.g. an RLE dict).
    """
    if hasattr(segmentation, "tolist"):
        segmentation = segmentation.tolist()
    if not isinstance(segmentation, (list, tuple)) or not segmentation:
        raise ConversionError(f"{where}: segmentation must be a non-empty list of polygons")
    polygons = []
    for k, polygon in enumerate(segmentation):
        if hasattr(polygon, "tolist"):
            polygon = polygon.tolist()
        if not isinstance(polygon, (list, tuple)) or len(polygon) < 2 or len(polygon) % 2:
            raise ConversionError(
                f"{where}: polygon {k} must be a flat list [x1, y1, x2, y2, ...] of even length"
            )
        coords = [_as_number(c, f"{where} polygon {k}") for c in polygon]
        polygons.append([int(c) if isinstance(c, numbers.Integral) else _round(c) for c in coords])
    return polygons


def _round(value):
    return int(math.floor(float(value) + 0.5))


def strip_image_extension(name):
    """``"a/b.jpg"`` -> ``"b"``; names without an image extension keep their suffix."""
    base = os.path.basename(str(name))
    stem, ext = os.path.splitext(base)
    return stem if ext.lower() in IMAGE_EXTENSIONS else base


def find_image(directory, name):
    """Return the path of image ``name`` in ``directory``, trying common extensions."""
    candidates = [os.path.join(directory, os.path.basename(str(name)))]
    stem = strip_image_extension(name)
    extensions = IMAGE_EXTENSIONS + tuple(ext.upper() for ext in IMAGE_EXTENSIONS)
    candidates += [os.path.join(directory, stem + ext) for ext in extensions]
    for path in candidates:
        if os.path.isfile(path):
            return path
    raise ConversionError(f"image '{name}' not found in {directory}")


def image_size(path):
    """(height, width, is_jpeg) of an image file as stored, i.e. without EXIF transpose.

    The SeqRank data loader reads images without EXIF transpose too, so the polygons and the
    record's size refer to the same pixel frame.
    """
    try:
        with Image.open(path) as img:
            width, height = img.size
            is_jpeg = img.format == "JPEG"
    except (OSError, SyntaxError, ValueError) as exc:
        raise ConversionError(f"cannot read image {path}: {exc}") from exc
    return int(height), int(width), is_jpeg


def place_image(src, dst, link=False):
    """Copy (or symlink, with ``link``) ``src`` to ``dst`` atomically, replacing ``dst``."""
    directory = os.path.dirname(os.path.abspath(dst))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(dst)}.", suffix=".tmp", dir=directory)
    os.close(fd)
    try:
        if link:
            os.remove(tmp)
            os.symlink(os.path.abspath(src), tmp)
        else:
            # copy() rather than copyfile(): the mkstemp file is 0600, copy() takes src's mode.
            shutil.copy(src, tmp)
        os.replace(tmp, dst)
    except BaseException:
        if os.path.lexists(tmp):
            os.remove(tmp)
        raise


def write_dataset_json(path, comment, records):
    """Write ``{"__comment__": comment, "data": records}`` to ``path`` atomically."""
    atomic_write_json(path, {"__comment__": comment, "data": records}, None, compact=True)
    logger.info("Wrote %d records to %s", len(records), path)


@dataclass
class SourceImage:
    """One image of a source release, objects in source order (K objects)."""

    name: str
    image_path: str
    values: list
    ranked: list
    segmentations: list
    where: str


@dataclass
class ConvertOptions:
    """Converter switches; ``higher_first``: a larger source rank value is more salient."""

    link: bool = False
    keep_unranked: bool = False
    dry_run: bool = False
    higher_first: bool = True


def convert_split(sources, json_path, image_dir, comment, options):
    """Convert SourceImage items into one SeqRank JSON (+ images); returns a SplitSummary.

    Every record is validated before anything is written, so a malformed release leaves no
    partial output.
    """
    summary = SplitSummary(unranked_written=options.keep_unranked)
    records, image_paths = [], []
    seen = set()
    for source in sources:
        if source.name in seen:
            raise ConversionError(f"{source.where}: duplicate image name '{source.name}'")
        seen.add(source.name)
        records.append(_convert_image(source, options, summary))
        image_paths.append(source.image_path)
    if options.dry_run:
        return summary
    for record, src in zip(records, image_paths):
        place_image(src, os.path.join(image_dir, record["image_name"] + ".jpg"), options.link)
    write_dataset_json(json_path, comment, records)
    return summary


def _convert_image(source, options, summary):
    category_ids, ties = assign_category_ids(source.values, source.ranked, options.higher_first)
    if ties:
        summary.tied_images += 1
        logger.warning(
            "%s: tied rank values %s (value: count); broken by object index",
            source.where,
            ", ".join(f"{value}: {count}" for value, count in sorted(ties.items())),
        )
    annotations = []
    for k, (category_id, segmentation) in enumerate(zip(category_ids, source.segmentations)):
        if category_id == 0 and not options.keep_unranked:
            continue
        polygons = normalise_polygons(segmentation, f"{source.where} object {k}")
        annotations.append({"category_id": category_id, "segmentation": polygons})
    kept = sum(1 for c in category_ids if c > 0)
    height, width, is_jpeg = image_size(source.image_path)
    summary.images += 1
    summary.objects_kept += kept
    summary.objects_unranked += len(category_ids) - kept
    summary.objects_negative += sum(1 for v in source.values if v < 0)
    summary.empty_images += int(kept == 0)
    summary.non_jpeg_images += int(not is_jpeg)
    return {"image_name": source.name, "height": height, "width": width, "annotations": annotations}


def convert_release(dataset, root, output, splits, sources, options=None, note=""):
    """Convert ``splits`` of the release in ``root`` to ``<output>/<dataset>/``.

    Args:
        dataset: dataset id, e.g. ``"assr"``: names the output files and ``scripts.convert_<id>``
            in each JSON's ``__comment__``; upper-cased in messages.
        sources: ``sources(root, split)`` yields the split's SourceImage items.
        note: text added to the ``__comment__`` after the converter's name.

    Returns:
        ``{split: SplitSummary}``.
    """
    options = options or ConvertOptions()
    if not os.path.isdir(root):
        raise ConversionError(f"{dataset.upper()} root not found: {root}")
    summaries = {}
    for split in splits:
        comment = (
            f"{dataset.upper()} {split} converted from {os.path.abspath(root)} by "
            f"scripts.convert_{dataset}{note}; category_id: higher = more salient"
        )
        summaries[split] = convert_split(
            sources(root, split),
            os.path.join(output, dataset, f"{dataset}_{split}.json"),
            os.path.join(output, dataset, "images", split),
            comment,
            options,
        )
        summaries[split].log(f"{dataset}_{split}")
    return summaries


def add_source_arguments(parser, release, splits):
    """``--root``, ``--output`` and ``--splits`` (choices and default: ``splits``)."""
    parser.add_argument("--root", required=True, help=f"{release} release folder")
    parser.add_argument("--output", required=True, help="SeqRank dataset root (DATASETS.ROOT)")
    parser.add_argument("--splits", nargs="+", default=list(splits), choices=splits)


def add_switch_arguments(parser):
    """``--link``, ``--keep-unranked`` and ``--dry-run``, the switches of ConvertOptions."""
    parser.add_argument("--link", action="store_true", help="symlink images instead of copying")
    parser.add_argument(
        "--keep-unranked",
        action="store_true",
        help="also write unranked objects, with category_id 0",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="check the release and report, write nothing"
    )
    add_debug_argument(parser)


def run_cli(prog, convert, args, **options):
    """Log to stderr and run ``convert(root, output, splits, options)`` for parsed ``args``.

    ``options`` are extra ConvertOptions fields. Exits with a one-line ``"<prog>: error: ..."``
    message (code 1) on a user error or OSError; ``--debug`` adds the traceback.
    """
    setup_cli_logging()
    switches = ConvertOptions(
        link=args.link, keep_unranked=args.keep_unranked, dry_run=args.dry_run, **options
    )
    with user_errors(prog, debug_requested(args), also=(OSError,)):
        convert(args.root, args.output, args.splits, switches)
