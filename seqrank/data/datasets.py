"""Registration of salient-object-ranking (SOR) datasets with detectron2's catalogs.

Layout under a dataset root (see DATA_FORMATS.md)::

    {root}/{id}/{id}_{split}.json
    {root}/{id}/images/{split}/{image_name}.jpg
"""

import json
import logging
import os
from functools import partial

from detectron2.data import DatasetCatalog, MetadataCatalog

__all__ = ["SOR_SPLITS", "load_sor_json", "register_sor_dataset", "register_sor_datasets"]

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


def load_sor_json(json_file, image_root):
    """Read a SOR JSON file into detectron2 dataset dicts.

    Each record keeps ``image_name``, ``height``, ``width`` and ``annotations`` and gains
    ``file_name = {image_root}/{image_name}.jpg``.

    Raises:
        FileNotFoundError: ``json_file`` does not exist.
        ValueError: the file is not JSON, has no ``data`` list, or a record is malformed.
    """
    json_file = os.fspath(json_file)
    if not os.path.isfile(json_file):
        raise FileNotFoundError(f"SOR dataset json not found: {json_file}")
    try:
        with open(json_file, encoding="utf-8") as f:
            content = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{json_file}: not valid JSON ({exc})") from exc
    if not isinstance(content, dict) or not isinstance(content.get("data"), list):
        raise ValueError(f'{json_file}: expected an object with a "data" list of records')
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
        raise ValueError(f"{where} is not an object")
    _check_keys(where, record, _RECORD_KEYS)
    for k, annotation in enumerate(record["annotations"]):
        if not isinstance(annotation, dict):
            raise ValueError(f"{where} ({record['image_name']}): annotation {k} is not an object")
        _check_keys(
            f"{where} ({record['image_name']}) annotation {k}", annotation, _ANNOTATION_KEYS
        )


def _check_keys(where, obj, expected):
    for key, kind in expected.items():
        if key not in obj:
            raise ValueError(f"{where} is missing key '{key}'")
        # bool is a subclass of int but never a valid size or rank.
        if not isinstance(obj[key], kind) or isinstance(obj[key], bool):
            raise ValueError(f"{where}: '{key}' should be {kind.__name__}, got {obj[key]!r:.80}")


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
    MetadataCatalog.get(name).set(
        json_file=json_file,
        image_root=image_root,
        evaluator_type="sor",
    )


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
