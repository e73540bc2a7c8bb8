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

The package: :mod:`.rendering` draws the scenes, :mod:`.ordering` computes the attention order,
:mod:`.writing` writes and registers the dataset, :mod:`.naming` names the variants.

Per image, the random stream is ``numpy.random.default_rng([seed, split_id, index])``, so every
image depends only on (seed, split, index, height, width). N denotes the number of objects,
H x W the image size.
"""

from ..annotations import mask_to_polygons, polygons_to_mask
from .naming import parse_synthetic_id, synthetic_id
from .ordering import (
    AREA_RATIO,
    CONTRAST_GAP,
    CONTRAST_RATIO,
    ORDERS,
    attention_order,
    local_contrast,
)
from .rendering import MAX_OBJECTS, SPLITS, Scene, SceneObject, render_scene
from .writing import (
    GENERATOR_VERSION,
    dataset_comment,
    make_synthetic_sor,
    register_synthetic,
    scene_to_record,
)

__all__ = [
    "AREA_RATIO",
    "CONTRAST_GAP",
    "CONTRAST_RATIO",
    "GENERATOR_VERSION",
    "MAX_OBJECTS",
    "ORDERS",
    "SPLITS",
    "Scene",
    "SceneObject",
    "attention_order",
    "dataset_comment",
    "local_contrast",
    "make_synthetic_sor",
    "mask_to_polygons",
    "parse_synthetic_id",
    "polygons_to_mask",
    "register_synthetic",
    "render_scene",
    "scene_to_record",
    "synthetic_id",
]
