"""Registration of salient-object-ranking (SOR) datasets with detectron2's catalogs.

Layout under a dataset root (see docs/ARCHITECTURE.md, "Data formats")::

    {root}/{id}/{id}_{split}.json
    {root}/{id}/images/{split}/{image_name}.jpg
"""

import json
import logging
import numbers
import os
from functools import partial

from detectron2.data import DatasetCatalog, MetadataCatalog

from ..cli import MissingFileError, SeqRankUserError

__all__ = [
    "DatasetError",
    "SOR_SPLITS",
    "load_sor_json",
    "register_sor_dataset",
    "register_sor_datasets",
]

logger = logging.getLogger(__name__)

# Registered name -> (dataset id, split).
SOR_SPLITS = {
    "assr_train": ("assr", "train"),
    "assr_val": ("assr", "val"),
    "assr_test": ("assr", "test"),
    "irsr_train": ("irsr", "train"),
    "irsr_test": ("irsr", "test"),
}

_RECORD_KEYS = {"image_name": str, "height": int, "width": int, "annotations": list}
_ANNOTATION_KEYS = {"category_id": int, "segmentation": list}


class DatasetError(SeqRankUserError, ValueError):
    """A dataset file or record is malformed (the message names the file and the record)."""


def load_sor_json(json_file, image_root):
    """Read a SOR JSON file into detectron2 dataset dicts.

    Each record keeps ``image_name``, ``height``, ``width`` and ``annotations`` and gains
    ``file_name = {image_root}/{image_name}.jpg``.

    Raises:
        MissingFileError (a FileNotFoundError): ``json_file`` does not exist.
        DatasetError (a ValueError): the file is not JSON, has no ``data`` list, or a record is
            malformed: a missing key or wrong type, a size that is not positive, an
            ``image_name`` that leaves the image folder, polygon coordinates far outside the
            image.
    """
    json_file = os.fspath(json_file)
    if not os.path.isfile(json_file):
        raise MissingFileError(f"SOR dataset json not found: {json_file}")
    try:
        with open(json_file, encoding="utf-8") as f:
            content = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{json_file}: not valid JSON ({exc})") from None
    if not isinstance(content, dict) or not isinstance(content.get("data"), list):
        raise DatasetError(f'{json_file}: expected an object with a "data" list of records')
    if "__comment__" in content:
        logger.info("%s: %s", json_file, content["__comment__"])

    records = []
    for index, record in enumerate(content["data"]):
        _check_record(json_file, index, record)
        records.append(
            {
                "file_name": os.path.join(os.fspath(image_root), record["image_name"] + ".jpg"),
                "image_name": record["image_name"],
                "height": record["height"],
                "width": record["width"],
                "annotations": record["annotations"],
            }
        )
    logger.info("Loaded %d images from %s", len(records), json_file)
    return records


def _check_record(json_file, index, record):
    where = f"{json_file}: record {index}"
    if not isinstance(record, dict):
        raise DatasetError(f"{where} is not an object")
    _check_keys(where, record, _RECORD_KEYS)
    where = f"{where} ({record['image_name']!r:.80})"
    _check_image_name(where, record["image_name"])
    height, width = record["height"], record["width"]
    if height < 1 or width < 1:
        raise DatasetError(f"{where}: height and width must be >= 1, got {height} x {width}")
    for k, annotation in enumerate(record["annotations"]):
        if not isinstance(annotation, dict):
            raise DatasetError(f"{where}: annotation {k} is not an object")
        _check_keys(f"{where} annotation {k}", annotation, _ANNOTATION_KEYS)
        for p, polygon in enumerate(annotation["segmentation"]):
            _check_polygon(f"{where} annotation {k} polygon {p}", polygon, height, width)


def _check_keys(where, obj, expected):
    for key, kind in expected.items():
        if key not in obj:
            raise DatasetError(f"{where} is missing key '{key}'")
        # bool is a subclass of int but never a valid size or rank.
        if not isinstance(obj[key], kind) or isinstance(obj[key], bool):
            raise DatasetError(f"{where}: '{key}' should be {kind.__name__}, got {obj[key]!r:.80}")


def _check_image_name(where, name):
    """Image names are file stems inside the image folder: no absolute path, no ``..`` out."""
    norm = os.path.normpath(name) if name else ""
    if (
        not name
        or "\0" in name
        or os.path.isabs(name)
        or norm == os.pardir
        or norm.startswith(os.pardir + os.sep)
    ):
        raise DatasetError(f"{where}: image_name must name a file inside the image folder")


def _check_polygon(where, polygon, height, width):
    """Refuse coordinates far outside the image (cast to int32 they would wrap around).

    Polygons that are not flat lists of numbers are left to the mapper, which skips them with a
    warning. Up to one image size beyond each border is accepted.
    """
    if not isinstance(polygon, list) or not all(
        isinstance(c, numbers.Real) and not isinstance(c, bool) for c in polygon
    ):
        return
    for axis, values, size in (("x", polygon[0::2], width), ("y", polygon[1::2], height)):
        if not values:
            continue
        total = sum(values)
        # total != total: a NaN, which min() and max() may step over.
        if total == total and -size <= min(values) and max(values) <= 2 * size:
            continue
        bad = next(v for v in values if not -size <= v <= 2 * size)
        raise DatasetError(
            f"{where}: {axis} = {bad!r:.30} is far outside the {height} x {width} "
            "(height x width) image"
        )


def register_sor_dataset(name, json_file, image_root):
    """Register one SOR dataset lazily (the JSON is read when ``DatasetCatalog.get`` is called).

    Registering the same name again with the same files is a no-op; with other files the old
    catalog entries are removed first (detectron2 refuses to overwrite them) and this is logged.
    """
    json_file, image_root = os.fspath(json_file), os.fspath(image_root)
    if name in DatasetCatalog:
        previous = MetadataCatalog.get(name)
        old = (previous.get("json_file"), previous.get("image_root"))
        if old == (json_file, image_root):
            return
        logger.info("Re-registering dataset '%s': %s -> %s", name, old[0] or "<unknown>", json_file)
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    elif name in MetadataCatalog:
        # Metadata without a dataset (e.g. created by a stray MetadataCatalog.get) would make
        # .set() below fail on conflicting values.
        MetadataCatalog.remove(name)
    DatasetCatalog.register(name, partial(load_sor_json, json_file, image_root))
    MetadataCatalog.get(name).set(json_file=json_file, image_root=image_root)


def _register_in_layout(root, name, dataset_id, split):
    register_sor_dataset(
        name,
        os.path.join(root, dataset_id, f"{dataset_id}_{split}.json"),
        os.path.join(root, dataset_id, "images", split),
    )


def register_sor_datasets(root, extra_names=()):
    """Register assr_train/val/test and irsr_train/test found under ``root`` (cfg.DATASETS.ROOT).

    Any other ``<id>_<split>`` name in ``extra_names`` (e.g. cfg.DATASETS.TEST) that is not
    registered yet is looked up in the same layout, ``{root}/<id>/<id>_<split>.json`` with images
    in ``{root}/<id>/images/<split>/``, so new datasets need no code.
    """
    root = os.fspath(root)
    for name, (dataset_id, split) in SOR_SPLITS.items():
        _register_in_layout(root, name, dataset_id, split)
    for name in extra_names:
        if name in SOR_SPLITS or name in DatasetCatalog or "_" not in name:
            continue
        dataset_id, split = name.rsplit("_", 1)
        _register_in_layout(root, name, dataset_id, split)
