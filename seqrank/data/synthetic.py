"""A synthetic salient-object-ranking benchmark ("synsor") in the official SeqRank layout.

Every image shows 1-6 objects (ellipse, rectangle, triangle, star, regular polygon; solid, striped
or noisy texture) on a cluttered, low-contrast background (gradient, smooth noise, faint stripes,
small distractor blobs that are not objects). Exactly one object is drawn in a saturated colour;
all others, the background and the distractors are muted. Objects may overlap mildly; the ground
truth of an occluded object is its visible region only.

Ground-truth attention sequence (also in docs/SYNTHETIC.md):

* Contrast of object i: Euclidean distance in CIELAB (OpenCV float convention: L in [0, 100])
  between the mean colour of its visible pixels and the mean colour of its local background ring.
  The ring is the visible mask dilated by an elliptic kernel of radius
  ``max(2, round(0.06 * min(H, W)))`` minus the union of the full (unoccluded) masks of all
  objects; if that is empty, every pixel outside all objects is used. Colours are measured on
  the rendered uint8 BGR image before JPEG encoding.
* The first object attended is the one with the highest contrast. Scenes are resampled until it
  wins with a clear margin: ``c1 >= 1.5 * c2`` and ``c1 - c2 >= 15`` (c2 = runner-up).
* Each next object is the unvisited one whose visible-mask centroid (mean pixel x, y) is nearest
  in Euclidean pixel distance to the centroid of the current object. Distances are compared
  after rounding to 1e-6 px; ties go to the larger visible area, then to the lower object index.
* ``category_id = n - position`` (the first object attended gets n, the last gets 1).

That is the ``chain`` order (the default). The ``global`` order is a control whose every step
depends on a visible property of the object alone: the first object is the same (highest
contrast), and every next one is the unvisited object with the largest visible area. Scenes are
resampled until each of those areas is at least ``AREA_RATIO`` times the next one, so that the
order is unambiguous.

Per image, the random stream is ``numpy.random.default_rng([seed, split_id, index])``, so every
image depends only on (seed, split, index, height, width). N denotes the number of objects,
H x W the image size.
"""

import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field

import cv2
import numpy as np
from tqdm import tqdm

from ..utils.atomic_io import atomic_write_json, current_umask
from .datasets import register_sor_dataset

__all__ = [
    "GENERATOR_VERSION",
    "Scene",
    "SceneObject",
    "attention_order",
    "dataset_comment",
    "local_contrast",
    "make_synthetic_sor",
    "mask_to_polygons",
    "polygons_to_mask",
    "register_synthetic",
    "render_scene",
    "scene_to_record",
]

logger = logging.getLogger(__name__)

# Bump whenever the images or annotations produced for given parameters change, so that cached
# datasets from an older generator are not silently reused.
GENERATOR_VERSION = 1

SPLITS = ("train", "test")
_SPLIT_IDS = {"train": 0, "test": 1}
_SHAPES = ("ellipse", "rectangle", "triangle", "star", "polygon")
_TEXTURES = ("solid", "stripes", "noise")
_MIN_SIZE = 32
_JPEG_QUALITY = 95

MAX_OBJECTS = 6
CONTRAST_RATIO = 1.5
CONTRAST_GAP = 15.0
# Placement limits for mild overlaps: IoU with any earlier object, and the visible fraction an
# occluded object must keep.
MAX_IOU = 0.25
MIN_VISIBLE_FRACTION = 0.7
_PLACEMENT_TRIES = 30
_SCENE_TRIES = 100
_TIE_DECIMALS = 6
ORDERS = ("chain", "global")
# Global order: consecutive visible areas after the first pick differ by at least this factor.
AREA_RATIO = 1.2


@dataclass
class SceneObject:
    """One object of a scene; ``mask`` (H x W bool) is the rasterised GT polygon set."""

    shape: str
    texture: str
    salient: bool
    color_bgr: tuple
    polygons: list
    mask: np.ndarray
    full_mask: np.ndarray
    area: int = 0
    centroid: tuple = (0.0, 0.0)
    contrast: float = 0.0


@dataclass
class Scene:
    """A rendered image (H x W x 3 BGR uint8, before JPEG), its objects and the GT sequence.

    ``order`` lists object indices in attention order; ``ranks[i]`` is the category_id of
    object i.
    """

    image: np.ndarray
    objects: list
    order: list = field(default_factory=list)
    ranks: list = field(default_factory=list)
    num_distractors: int = 0


# ----------------------------------------------------------------------------- colours


def _hsv_to_bgr(hue, sat, val):
    """HSV (hue in degrees, sat and val in [0, 1]) to a BGR float triple in [0, 255]."""
    pixel = np.array([[[hue, sat, val]]], dtype=np.float32)
    return cv2.cvtColor(pixel, cv2.COLOR_HSV2BGR)[0, 0].astype(np.float64) * 255.0


def _muted_color(rng, bg_value):
    """Low-saturation colour whose brightness differs from the background by 30-60 levels."""
    offset = rng.uniform(30, 60) * rng.choice([-1.0, 1.0])
    value = float(np.clip(bg_value + offset, 20, 235))
    return _hsv_to_bgr(rng.uniform(0, 360), rng.uniform(0.05, 0.3), value / 255.0)


def _salient_color(rng):
    return _hsv_to_bgr(rng.uniform(0, 360), rng.uniform(0.85, 1.0), rng.uniform(0.8, 1.0))


def _to_lab(image_bgr):
    return cv2.cvtColor(image_bgr.astype(np.float32) / 255.0, cv2.COLOR_BGR2Lab)


# ----------------------------------------------------------------------------- background


def _coordinate_grids(height, width):
    ys, xs = np.mgrid[0:height, 0:width]
    return xs.astype(np.float64), ys.astype(np.float64)


def _ramp(xs, ys, angle):
    """Projection of pixel coordinates on direction ``angle`` (radians)."""
    return xs * np.cos(angle) + ys * np.sin(angle)


def _render_background(rng, height, width):
    """Muted base colour + gradient + smooth noise (+ faint stripes) + pixel noise.

    Returns the H x W x 3 float image and the base brightness (0-255).
    """
    xs, ys = _coordinate_grids(height, width)
    bg_value = rng.uniform(90, 170)
    base = _hsv_to_bgr(rng.uniform(0, 360), rng.uniform(0, 0.15), bg_value / 255.0)
    ramp = _ramp(xs, ys, rng.uniform(0, 2 * np.pi))
    ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1.0) * 2.0 - 1.0
    shade = ramp * rng.uniform(5, 20)
    coarse = rng.normal(0, 1, (max(2, height // 16), max(2, width // 16))).astype(np.float32)
    smooth = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    shade = shade + smooth * rng.uniform(3, 10)
    if rng.random() < 0.3:
        period = rng.uniform(4, 10)
        stripes = np.floor(_ramp(xs, ys, rng.uniform(0, np.pi)) / period) % 2
        shade = shade + (stripes - 0.5) * 8.0
    image = base[None, None, :] + shade[..., None]
    image = image + rng.normal(0, 3, (height, width, 1))
    return image, bg_value


def _draw_distractors(rng, image, bg_value):
    """Small muted blobs (not objects); returns how many were drawn."""
    height, width = image.shape[:2]
    count = int(rng.integers(3, 11))
    max_radius = max(2.0, 0.03 * min(height, width))
    for _ in range(count):
        center = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        axes = tuple(int(round(rng.uniform(1, max_radius))) for _ in range(2))
        value = np.clip(bg_value + rng.uniform(10, 30) * rng.choice([-1.0, 1.0]), 0, 255)
        color = _hsv_to_bgr(rng.uniform(0, 360), rng.uniform(0, 0.2), value / 255.0)
        angle = float(rng.uniform(0, 180))
        cv2.ellipse(image, center, axes, angle, 0, 360, tuple(float(c) for c in color), -1)
    return count


# ----------------------------------------------------------------------------- shapes


def _rotate(points, angle):
    c, s = np.cos(angle), np.sin(angle)
    return points @ np.array([[c, s], [-s, c]])


def _shape_outline(rng, shape, radius):
    """Vertices (K x 2 float, centred on the origin) of a shape of circumradius ~``radius``."""
    if shape == "ellipse":
        angles = np.linspace(0, 2 * np.pi, 48, endpoint=False)
        aspect = rng.uniform(0.5, 1.0)
        points = np.stack([np.cos(angles), aspect * np.sin(angles)], axis=1)
    elif shape == "rectangle":
        aspect = rng.uniform(0.45, 1.0)
        points = np.array([[-1, -aspect], [1, -aspect], [1, aspect], [-1, aspect]], float)
    elif shape == "triangle":
        jitter = rng.uniform(-0.35, 0.35, 3)
        angles = np.array([0.0, 2 * np.pi / 3, 4 * np.pi / 3]) + jitter
        points = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    elif shape == "star":
        tips = int(rng.integers(5, 8))
        angles = np.linspace(0, 2 * np.pi, 2 * tips, endpoint=False)
        lengths = np.where(np.arange(2 * tips) % 2 == 0, 1.0, rng.uniform(0.4, 0.55))
        points = np.stack([np.cos(angles), np.sin(angles)], axis=1) * lengths[:, None]
    else:
        sides = int(rng.integers(5, 9))
        angles = np.linspace(0, 2 * np.pi, sides, endpoint=False)
        points = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    return _rotate(points * radius, rng.uniform(0, 2 * np.pi))


def _sample_full_mask(rng, shape, height, width):
    """Random size and position; returns the H x W bool mask of the unoccluded shape."""
    short = min(height, width)
    radius = rng.uniform(0.09, 0.22) * short
    center = np.array([rng.uniform(radius, width - radius), rng.uniform(radius, height - radius)])
    points = np.round(_shape_outline(rng, shape, radius) + center).astype(np.int32)
    mask = np.zeros((height, width), np.uint8)
    cv2.fillPoly(mask, [points], 1)
    return mask.astype(bool)


def _texture_layer(rng, texture, color, height, width):
    """H x W x 3 float layer painting ``color`` with the given texture."""
    layer = np.broadcast_to(color, (height, width, 3)).astype(np.float64)
    if texture == "stripes":
        xs, ys = _coordinate_grids(height, width)
        period = rng.uniform(3, 8)
        stripes = (np.floor(_ramp(xs, ys, rng.uniform(0, np.pi)) / period) % 2).astype(bool)
        layer = np.where(stripes[..., None], layer * rng.uniform(0.6, 0.8), layer)
    elif texture == "noise":
        layer = layer + rng.normal(0, 14, (height, width, 1))
    return layer


# ----------------------------------------------------------------------------- masks


def _iou(a, b):
    union = np.count_nonzero(a | b)
    return np.count_nonzero(a & b) / union if union else 0.0


def _has_hole(mask):
    contours, hierarchy = cv2.findContours(
        mask.astype(np.uint8), cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE
    )
    return bool(contours) and bool(np.any(hierarchy[0][:, 3] >= 0))


def mask_to_polygons(mask):
    """Outer contours of a bool mask as flat integer lists ``[x1, y1, x2, y2, ...]``.

    Contours with fewer than 3 points (1-2 pixel slivers) cannot be drawn by cv2.fillPoly as an
    area and are dropped.
    """
    contours, _ = cv2.findContours(
        mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
    )
    return [[int(v) for v in c.reshape(-1)] for c in contours if len(c) >= 3]


def polygons_to_mask(polygons, height, width):
    """Rasterise flat polygons with cv2.fillPoly (as the data mapper does); H x W bool."""
    mask = np.zeros((height, width), np.uint8)
    points = [np.asarray(p, np.int32).reshape(-1, 2) for p in polygons]
    if points:
        cv2.fillPoly(mask, points, 1)
    return mask.astype(bool)


def _placement_ok(candidate, fulls, visibles):
    """Mild overlap only: bounded IoU, occluded objects keep most of their area and no holes."""
    for full, visible in zip(fulls, visibles):
        if _iou(candidate, full) > MAX_IOU:
            return False
        remaining = visible & ~candidate
        if np.count_nonzero(remaining) < MIN_VISIBLE_FRACTION * np.count_nonzero(full):
            return False
        if np.any(visible & candidate) and _has_hole(remaining):
            return False
    return True


def _place_objects(rng, count, height, width):
    """Place up to ``count`` shapes (later ones on top); returns (shapes, full, visible masks)."""
    shapes, fulls, visibles = [], [], []
    min_area = max(12, int(0.004 * height * width))
    for _ in range(count):
        shape = str(rng.choice(_SHAPES))
        for _ in range(_PLACEMENT_TRIES):
            candidate = _sample_full_mask(rng, shape, height, width)
            if np.count_nonzero(candidate) >= min_area and _placement_ok(
                candidate, fulls, visibles
            ):
                break
        else:
            continue
        visibles = [visible & ~candidate for visible in visibles]
        shapes.append(shape)
        fulls.append(candidate)
        visibles.append(candidate.copy())
    return shapes, fulls, visibles


# ----------------------------------------------------------------------------- ranking


def local_contrast(image_bgr, mask, all_full_masks):
    """CIELAB distance between the mean colour of ``mask`` and of its local background ring.

    Args:
        image_bgr: H x W x 3 uint8 BGR image.
        mask: H x W bool visible mask of the object.
        all_full_masks: N x H x W bool (or list of H x W) unoccluded masks of all objects.
    """
    height, width = mask.shape
    occupied = np.any(np.asarray(all_full_masks, dtype=bool), axis=0)
    radius = max(2, int(round(0.06 * min(height, width))))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    ring = cv2.dilate(mask.astype(np.uint8), kernel).astype(bool) & ~occupied
    if not ring.any():
        ring = ~occupied
    lab = _to_lab(image_bgr)
    return float(np.linalg.norm(lab[mask].mean(axis=0) - lab[ring].mean(axis=0)))


def attention_order(contrasts, centroids, areas, order="chain"):
    """GT attention sequence; the first object is always the one with the highest contrast.

    Args:
        contrasts: N floats; centroids: N (x, y) pairs; areas: N visible areas (pixels).
        order: ``chain`` (each next object is the unvisited one nearest to the current one) or
            ``global`` (each next object is the unvisited one with the largest visible area).

    Returns:
        list of N object indices in attention order.
    """
    _check_order(order)
    count = len(contrasts)
    if count == 0:
        return []
    sequence = [int(np.argmax(contrasts))]
    if order == "global":
        rest = sorted((i for i in range(count) if i != sequence[0]), key=lambda i: (-areas[i], i))
        return sequence + rest
    points = np.asarray(centroids, dtype=np.float64).reshape(count, 2)
    while len(sequence) < count:
        current = points[sequence[-1]]
        candidates = [i for i in range(count) if i not in sequence]
        sequence.append(
            min(
                candidates,
                key=lambda i: (
                    round(float(np.linalg.norm(points[i] - current)), _TIE_DECIMALS),
                    -areas[i],
                    i,
                ),
            )
        )
    return sequence


def _check_order(order):
    if order not in ORDERS:
        raise ValueError(f"order must be one of {ORDERS}, got {order!r}")


def _clear_sizes(objects):
    """Global order: the areas after the first pick are separated by ``AREA_RATIO``."""
    first = int(np.argmax([obj.contrast for obj in objects]))
    areas = sorted((obj.area for i, obj in enumerate(objects) if i != first), reverse=True)
    return all(big >= AREA_RATIO * small for big, small in zip(areas, areas[1:]))


def _clear_winner(contrasts):
    if len(contrasts) < 2:
        return True
    first, second = sorted(contrasts, reverse=True)[:2]
    return first >= CONTRAST_RATIO * second and first - second >= CONTRAST_GAP


# ----------------------------------------------------------------------------- scenes


def _build_objects(rng, image, shapes, fulls, visibles, bg_value):
    """Paint the objects (in placement order) onto ``image`` and return SceneObjects."""
    height, width = image.shape[:2]
    salient_index = int(rng.integers(len(shapes)))
    objects = []
    for i, (shape, full, visible) in enumerate(zip(shapes, fulls, visibles)):
        salient = i == salient_index
        color = _salient_color(rng) if salient else _muted_color(rng, bg_value)
        texture = str(rng.choice(_TEXTURES))
        layer = _texture_layer(rng, texture, color, height, width)
        image[full] = layer[full]
        polygons = mask_to_polygons(visible)
        objects.append(
            SceneObject(
                shape=shape,
                texture=texture,
                salient=salient,
                color_bgr=tuple(float(c) for c in color),
                polygons=polygons,
                mask=polygons_to_mask(polygons, height, width),
                full_mask=full,
            )
        )
    return objects


def _measure(objects, image_u8):
    fulls = [obj.full_mask for obj in objects]
    for obj in objects:
        ys, xs = np.nonzero(obj.mask)
        obj.area = int(xs.size)
        obj.centroid = (float(xs.mean()), float(ys.mean()))
        obj.contrast = local_contrast(image_u8, obj.mask, fulls)


def _try_scene(rng, height, width, order="chain"):
    """One attempt at a scene; None if it has no clear most-conspicuous object (or, for the
    global order, no clear order of sizes)."""
    image, bg_value = _render_background(rng, height, width)
    num_distractors = _draw_distractors(rng, image, bg_value)
    count = int(rng.integers(1, MAX_OBJECTS + 1))
    shapes, fulls, visibles = _place_objects(rng, count, height, width)
    if not shapes:
        return None
    objects = _build_objects(rng, image, shapes, fulls, visibles, bg_value)
    image_u8 = np.clip(np.round(image), 0, 255).astype(np.uint8)
    if any(not obj.mask.any() for obj in objects):
        return None
    _measure(objects, image_u8)
    if not _clear_winner([obj.contrast for obj in objects]):
        return None
    if order == "global" and not _clear_sizes(objects):
        return None
    return Scene(image=image_u8, objects=objects, num_distractors=num_distractors)


def render_scene(seed, split, index, height=128, width=128, order="chain"):
    """Render image ``index`` of ``split`` deterministically; returns a :class:`Scene`.

    ``order`` (``chain`` or ``global``, see the module docstring) selects the GT sequence; the
    chain scenes are the same as those of earlier versions of the generator.
    """
    if split not in _SPLIT_IDS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    _check_order(order)
    rng = np.random.default_rng([int(seed), _SPLIT_IDS[split], int(index)])
    for _ in range(_SCENE_TRIES):
        scene = _try_scene(rng, height, width, order)
        if scene is not None:
            break
    else:
        raise RuntimeError(f"could not build a valid scene for {split}/{index} (seed {seed})")
    objects = scene.objects
    scene.order = attention_order(
        [o.contrast for o in objects],
        [o.centroid for o in objects],
        [o.area for o in objects],
        order,
    )
    scene.ranks = [0] * len(objects)
    for position, object_index in enumerate(scene.order):
        scene.ranks[object_index] = len(objects) - position
    return scene


def scene_to_record(scene, image_name):
    """SeqRank JSON record of a scene; annotations are listed in attention order."""
    height, width = scene.image.shape[:2]
    annotations = [
        {"category_id": scene.ranks[i], "segmentation": scene.objects[i].polygons}
        for i in scene.order
    ]
    return {"image_name": image_name, "height": height, "width": width, "annotations": annotations}


# ----------------------------------------------------------------------------- dataset on disk


def _check_params(name, counts, height, width):
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", name):
        raise ValueError(f"dataset name must be letters, digits, '_' or '-', got {name!r}")
    for split, count in counts.items():
        if int(count) < 1:
            raise ValueError(f"number of {split} images must be >= 1, got {count}")
    if min(height, width) < _MIN_SIZE:
        raise ValueError(f"image height and width must be >= {_MIN_SIZE}, got {height}x{width}")


def dataset_comment(name, seed, counts, height, width, order="chain"):
    """The ``__comment__`` of both JSON files; it fingerprints every generation parameter."""
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


def _write_split(directory, name, split, count, seed, size, order, comment, progress):
    height, width = size
    image_dir = os.path.join(directory, "images", split)
    os.makedirs(image_dir)
    records = []
    for index in tqdm(range(count), desc=f"{name} {split}", unit="img", disable=not progress):
        scene = render_scene(seed, split, index, height, width, order)
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
):
    """Write the synthetic dataset to ``{root}/{name}`` unless an identical one is there.

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
    _check_order(order)
    root = os.fspath(root)
    target = os.path.join(root, name)
    comment = dataset_comment(name, seed, counts, height, width, order)
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
        for split, count in counts.items():
            _write_split(
                tmp_dir, name, split, count, seed, (height, width), order, comment, progress
            )
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
