"""Convert the original ASSR release (Siris et al., CVPR 2020) into the SeqRank dataset layout.

Usage::

    python -m scripts.convert_assr --root /data/ASSR --output datasets [--splits train val test]

Source layout (``--root``)::

    obj_seg_data_<split>.json        [{"img": name, "object_data": [{"bbox", "segmentation"}]}]
    rank_order/<split>/<name>.json   {"rank_order": [value per object, aligned with object_data]}
    images/<split>/<name>.jpg

Output: ``<output>/assr/assr_<split>.json`` and ``<output>/assr/images/<split>/<name>.jpg``
(copies, or symlinks with ``--link``); ``height``/``width`` are read from the image files.

Rank mapping. ASSR rank values run 1.0, 0.9, 0.8, ... with 1.0 the most salient; only values
> 0.5 (the top 5) are ranked, values <= 0.5 (negative ones included) are unranked. The M ranked
objects of an image get the distinct ``category_id`` M (largest value) down to 1 (smallest), so
that higher = more salient as SeqRank expects; only the order matters to SeqRank, not the values.
Equal rank values are reported (warning naming the image) and broken by object index: the earlier
object is treated as more salient. Unranked objects are dropped unless ``--keep-unranked`` writes
them with ``category_id`` 0 (which SeqRank ignores). Objects keep their source order; float
polygon coordinates are rounded to the nearest integer.
"""

import argparse
import json
import logging
import os

from tqdm import tqdm

from .common import (
    ConversionError,
    SourceImage,
    add_source_arguments,
    add_switch_arguments,
    convert_release,
    find_image,
    run_cli,
    strip_image_extension,
)

logger = logging.getLogger(__name__)

RANKED_THRESHOLD = 0.5
DEFAULT_SPLITS = ("train", "val", "test")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m scripts.convert_assr",
        description="Convert the original ASSR release into the SeqRank layout "
        "(<output>/assr/assr_<split>.json + images). Rank value 1.0 = most salient = highest "
        "category_id; values <= 0.5 are unranked; ties are broken by object index.",
    )
    add_source_arguments(parser, "ASSR", DEFAULT_SPLITS)
    add_switch_arguments(parser)
    return parser.parse_args(argv)


def _read_json(path, what):
    if not os.path.isfile(path):
        raise ConversionError(f"{what} not found: {path}")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConversionError(f"{path}: not valid JSON ({exc})") from exc


def _rank_values(path, num_objects):
    content = _read_json(path, "rank order file")
    values = content.get("rank_order") if isinstance(content, dict) else None
    if not isinstance(values, list):
        raise ConversionError(f'{path}: expected {{"rank_order": [number, ...]}}')
    if len(values) != num_objects:
        raise ConversionError(
            f"{path}: {len(values)} rank values for {num_objects} objects in object_data"
        )
    if any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in values):
        raise ConversionError(f"{path}: rank values must be numbers")
    return values


def _source_image(root, split, entry, where):
    if not isinstance(entry, dict) or not isinstance(entry.get("img"), str):
        raise ConversionError(f'{where}: expected an object with an "img" name')
    objects = entry.get("object_data")
    if not isinstance(objects, list) or not all(isinstance(o, dict) for o in objects):
        raise ConversionError(f'{where} ({entry["img"]}): "object_data" must be a list of objects')
    if not all("segmentation" in o for o in objects):
        raise ConversionError(f'{where} ({entry["img"]}): an object has no "segmentation"')
    name = strip_image_extension(entry["img"])
    values = _rank_values(os.path.join(root, "rank_order", split, name + ".json"), len(objects))
    return SourceImage(
        name=name,
        image_path=find_image(os.path.join(root, "images", split), entry["img"]),
        values=values,
        ranked=[v > RANKED_THRESHOLD for v in values],
        segmentations=[o["segmentation"] for o in objects],
        where=f"{where} ({name})",
    )


def _sources(root, split):
    ann_path = os.path.join(root, f"obj_seg_data_{split}.json")
    entries = _read_json(ann_path, "ASSR annotation file")
    if not isinstance(entries, list):
        raise ConversionError(f"{ann_path}: expected a list of image entries")
    for index, entry in enumerate(tqdm(entries, desc=f"assr_{split}", unit="img")):
        yield _source_image(root, split, entry, f"{ann_path} entry {index}")


def convert_assr(root, output, splits=DEFAULT_SPLITS, options=None):
    """Convert the requested splits; returns ``{split: SplitSummary}``."""
    return convert_release("assr", root, output, splits, _sources, options)


def main(argv=None):
    run_cli("convert_assr", convert_assr, parse_args(argv))
