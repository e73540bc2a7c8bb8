"""The ground-truth attention order of a synthetic scene (rules in :mod:`seqrank.data.synthetic`).

N = objects of a scene, H x W = image size.
"""

import cv2
import numpy as np

__all__ = [
    "AREA_RATIO",
    "CONTRAST_GAP",
    "CONTRAST_RATIO",
    "ORDERS",
    "attention_order",
    "check_order",
    "clear_sizes",
    "clear_winner",
    "local_contrast",
]

# The most conspicuous object must win by this ratio and this CIELAB gap over the runner-up.
CONTRAST_RATIO = 1.5
CONTRAST_GAP = 15.0
# Chain order: centroid distances are compared after rounding to this many decimals (px).
_TIE_DECIMALS = 6
ORDERS = ("chain", "global")
# Global order: consecutive visible areas after the first pick differ by at least this factor.
AREA_RATIO = 1.2


def _to_lab(image_bgr):
    return cv2.cvtColor(image_bgr.astype(np.float32) / 255.0, cv2.COLOR_BGR2Lab)


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
    check_order(order)
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


def check_order(order):
    """Raise ``ValueError`` unless ``order`` is one of :data:`ORDERS`."""
    if order not in ORDERS:
        raise ValueError(f"order must be one of {ORDERS}, got {order!r}")


def clear_sizes(objects):
    """Global order: the areas after the first pick are separated by ``AREA_RATIO``."""
    first = int(np.argmax([obj.contrast for obj in objects]))
    areas = sorted((obj.area for i, obj in enumerate(objects) if i != first), reverse=True)
    return all(big >= AREA_RATIO * small for big, small in zip(areas, areas[1:]))


def clear_winner(contrasts):
    """The highest contrast beats the runner-up by ``CONTRAST_RATIO`` and ``CONTRAST_GAP``."""
    if len(contrasts) < 2:
        return True
    first, second = sorted(contrasts, reverse=True)[:2]
    return first >= CONTRAST_RATIO * second and first - second >= CONTRAST_GAP
