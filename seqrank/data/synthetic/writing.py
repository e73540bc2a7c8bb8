"""Writing the synthetic SOR dataset to disk (cached by a fingerprint of its parameters) and
registering it with detectron2."""

import hashlib
import json
import logging
import os
import re
import shutil
import tempfile

import cv2
from tqdm import tqdm

from ...utils.atomic_io import atomic_write_json, current_umask
from ..datasets import register_sor_dataset
from .ordering import check_order
from .rendering import SPLITS, check_min_objects, render_scene

__all__ = [
    "GENERATOR_VERSION",
    "dataset_comment",
    "make_synthetic_sor",
    "register_synthetic",
    "scene_to_record",
]

logger = logging.getLogger(__name__)

# Bump whenever the images or annotations produced for given parameters change, so that cached
# datasets from an older generator are not silently reused.
GENERATOR_VERSION = 1

_MIN_SIZE = 32
_JPEG_QUALITY = 95


def scene_to_record(scene, image_name):
    """SeqRank JSON record of a scene; annotations are listed in attention order."""
    height, width = scene.image.shape[:2]
    annotations = [
        {"category_id": scene.ranks[i], "segmentation": scene.objects[i].polygons}
        for i in scene.order
    ]
    return {"image_name": image_name, "height": height, "width": width, "annotations": annotations}


def _check_params(name, counts, height, width):
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", name):
        raise ValueError(f"dataset name must be letters, digits, '_' or '-', got {name!r}")
    for split, count in counts.items():
        if int(count) < 1:
            raise ValueError(f"number of {split} images must be >= 1, got {count}")
    if min(height, width) < _MIN_SIZE:
        raise ValueError(f"image height and width must be >= {_MIN_SIZE}, got {height}x{width}")


def dataset_comment(name, seed, counts, height, width, order="chain", min_objects=1):
    """The ``__comment__`` of both JSON files; it fingerprints every generation parameter.

    ``min_objects`` is listed only when it is not 1, so the datasets written before it existed
    keep their fingerprint (and stay cached).
    """
    params = {
        "generator": f"seqrank.data.synthetic v{GENERATOR_VERSION}",
        "name": name,
        "order": order,
        "seed": int(seed),
        "num_train": int(counts["train"]),
        "num_test": int(counts["test"]),
        "height": int(height),
        "width": int(width),
    }
    if min_objects != 1:
        params["min_objects"] = int(min_objects)
    digest = hashlib.sha1(json.dumps(params, sort_keys=True).encode("utf-8")).hexdigest()[:16]
    settings = " ".join(f"{k}={v}" for k, v in params.items() if k != "generator")
    return f"synthetic SOR benchmark ({params['generator']}): {settings} fingerprint={digest}"


def _read_comment(json_file):
    try:
        with open(json_file, encoding="utf-8") as f:
            return json.load(f).get("__comment__")
    except (OSError, ValueError, AttributeError):
        return None


def _is_cached(target, name, comment, counts):
    for split, count in counts.items():
        if _read_comment(os.path.join(target, f"{name}_{split}.json")) != comment:
            return False
        image_dir = os.path.join(target, "images", split)
        if not os.path.isdir(image_dir):
            return False
        if sum(f.endswith(".jpg") for f in os.listdir(image_dir)) != count:
            return False
    return True


def _write_split(directory, name, split, count, seed, scene_args, comment, progress):
    """``scene_args``: ``(height, width, order, min_objects)`` of :func:`render_scene`."""
    image_dir = os.path.join(directory, "images", split)
    os.makedirs(image_dir)
    records = []
    for index in tqdm(range(count), desc=f"{name} {split}", unit="img", disable=not progress):
        scene = render_scene(seed, split, index, *scene_args)
        image_name = f"{name}_{split}_{index:06d}"
        ok, encoded = cv2.imencode(".jpg", scene.image, [cv2.IMWRITE_JPEG_QUALITY, _JPEG_QUALITY])
        if not ok:
            raise OSError(f"cv2 could not encode {image_name}.jpg")
        with open(os.path.join(image_dir, image_name + ".jpg"), "wb") as f:
            f.write(encoded.tobytes())
        records.append(scene_to_record(scene, image_name))
    content = {"__comment__": comment, "data": records}
    atomic_write_json(os.path.join(directory, f"{name}_{split}.json"), content, None, newline=True)


def _swap_in(tmp_dir, target):
    """Move the finished ``tmp_dir`` to ``target``, replacing an existing dataset."""
    if not os.path.exists(target):
        os.rename(tmp_dir, target)
        return
    old = tempfile.mkdtemp(prefix=f".{os.path.basename(target)}.old-", dir=os.path.dirname(target))
    os.rename(target, os.path.join(old, "dataset"))
    os.rename(tmp_dir, target)
    shutil.rmtree(old)


def make_synthetic_sor(
    root,
    name="synsor",
    seed=0,
    num_train=600,
    num_test=100,
    height=128,
    width=128,
    force=False,
    progress=True,
    order="chain",
    min_objects=1,
):
    """Write the synthetic dataset to ``{root}/{name}`` unless an identical one is there.

    ``min_objects``: the fewest objects an image may hold (1..6; see :func:`render_scene`).

    Layout: ``{name}_{train,test}.json`` and ``images/{train,test}/{image_name}.jpg``. Everything
    is generated in a temporary directory next to the target and renamed into place, so the
    target is never half-written.

    Returns:
        the dataset directory ``{root}/{name}``.

    Raises:
        ValueError: bad parameters.
        FileExistsError: the target exists but was not generated with these parameters and
            ``force`` is false.
    """
    counts = {"train": int(num_train), "test": int(num_test)}
    height, width = int(height), int(width)
    _check_params(name, counts, height, width)
    check_order(order)
    min_objects = check_min_objects(min_objects)
    root = os.fspath(root)
    target = os.path.join(root, name)
    comment = dataset_comment(name, seed, counts, height, width, order, min_objects)
    if os.path.exists(target) and not force:
        if _is_cached(target, name, comment, counts):
            logger.info("Synthetic dataset %s is cached (%s)", target, comment)
            return target
        raise FileExistsError(
            f"{target} exists but was not generated with these parameters ({comment}); "
            "pass force=True (--force) to regenerate it"
        )
    os.makedirs(root, exist_ok=True)
    tmp_dir = tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=root)
    try:
        # mkdtemp creates the folder 0700; the dataset should get the mode of a plain mkdir.
        os.chmod(tmp_dir, 0o777 & ~current_umask())
        scene_args = (height, width, order, min_objects)
        for split, count in counts.items():
            _write_split(tmp_dir, name, split, count, seed, scene_args, comment, progress)
        _swap_in(tmp_dir, target)
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise
    logger.info("Wrote synthetic dataset %s (%s)", target, comment)
    return target


def register_synthetic(root, name="synsor"):
    """Register ``{name}_train`` and ``{name}_test`` (files under ``{root}/{name}``).

    Registration is lazy (the JSON is read on ``DatasetCatalog.get``) and idempotent: calling
    this again with the same files is a no-op. Returns the two registered names.
    """
    directory = os.path.join(os.fspath(root), name)
    names = []
    for split in SPLITS:
        dataset_name = f"{name}_{split}"
        register_sor_dataset(
            dataset_name,
            os.path.join(directory, f"{name}_{split}.json"),
            os.path.join(directory, "images", split),
        )
        names.append(dataset_name)
    return names
