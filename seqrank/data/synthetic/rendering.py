"""Rendering of the synthetic SOR scenes: background, objects, occlusion and the GT masks.

Per image, the random stream is ``numpy.random.default_rng([seed, split_id, index])``, so every
image depends only on (seed, split, index, height, width, order). The rules are in
:mod:`seqrank.data.synthetic` and docs/SYNTHETIC.md. N = objects of a scene, H x W = image size.
"""

from dataclasses import dataclass, field

import cv2
import numpy as np

from ..annotations import mask_to_polygons, polygons_to_mask
from .ordering import attention_order, check_order, clear_sizes, clear_winner, local_contrast

__all__ = ["MAX_OBJECTS", "SPLITS", "Scene", "SceneObject", "render_scene"]

SPLITS = ("train", "test")
_SPLIT_IDS = {"train": 0, "test": 1}
_SHAPES = ("ellipse", "rectangle", "triangle", "star", "polygon")
_TEXTURES = ("solid", "stripes", "noise")

MAX_OBJECTS = 6
# Placement limits for mild overlaps: IoU with any earlier object, and the visible fraction an
# occluded object must keep.
MAX_IOU = 0.25
MIN_VISIBLE_FRACTION = 0.7
_PLACEMENT_TRIES = 30
_SCENE_TRIES = 100


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


def _try_scene(rng, height, width, order="chain", min_objects=1):
    """One attempt at a scene; None if fewer than ``min_objects`` objects could be placed, or it
    has no clear most-conspicuous object (or, for the global order, no clear order of sizes)."""
    image, bg_value = _render_background(rng, height, width)
    num_distractors = _draw_distractors(rng, image, bg_value)
    count = int(rng.integers(min_objects, MAX_OBJECTS + 1))
    shapes, fulls, visibles = _place_objects(rng, count, height, width)
    if len(shapes) < min_objects:
        return None
    objects = _build_objects(rng, image, shapes, fulls, visibles, bg_value)
    image_u8 = np.clip(np.round(image), 0, 255).astype(np.uint8)
    if any(not obj.mask.any() for obj in objects):
        return None
    _measure(objects, image_u8)
    if not clear_winner([obj.contrast for obj in objects]):
        return None
    if order == "global" and not clear_sizes(objects):
        return None
    return Scene(image=image_u8, objects=objects, num_distractors=num_distractors)


def check_min_objects(min_objects):
    """``min_objects`` as an int in 1..MAX_OBJECTS, else ValueError."""
    if isinstance(min_objects, bool) or int(min_objects) != min_objects:
        raise ValueError(f"min_objects must be an integer, got {min_objects!r}")
    if not 1 <= min_objects <= MAX_OBJECTS:
        raise ValueError(f"min_objects must be between 1 and {MAX_OBJECTS}, got {min_objects}")
    return int(min_objects)


def render_scene(seed, split, index, height=128, width=128, order="chain", min_objects=1):
    """Render image ``index`` of ``split`` deterministically; returns a :class:`Scene`.

    ``order`` (``chain`` or ``global``, see the module docstring) selects the GT sequence; the
    chain scenes are the same as those of earlier versions of the generator. ``min_objects``
    (1..MAX_OBJECTS) resamples scenes with fewer objects; with the default 1 the scenes are those
    of earlier versions (SA-SOR scores a one-object image 0, capping a dataset's mean).
    """
    if split not in _SPLIT_IDS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    check_order(order)
    min_objects = check_min_objects(min_objects)
    rng = np.random.default_rng([int(seed), _SPLIT_IDS[split], int(index)])
    for _ in range(_SCENE_TRIES):
        scene = _try_scene(rng, height, width, order, min_objects)
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
