"""Binary views of ranked masks for the demos and their renderers.

The predictor returns its masks as H x W ``bool`` arrays (thresholded once, in float32, by
:func:`seqrank.modeling.postprocessing.threshold_masks`); renderers also accept {0, 1} float maps
(results files, GT masks). A pixel is foreground where the mask is ``> 0.5``; for a boolean mask
that is the mask itself, so it is used as is: K full-size masks are never copied (a 4000 x 3000
photo with 100 objects holds 1.1 GiB of boolean masks; each copy would add as much).
"""

import numpy as np

__all__ = ["MASK_THRESHOLD", "binary_mask", "mask_uint8"]

# A mask pixel is foreground when strictly above this value.
MASK_THRESHOLD = 0.5


def binary_mask(mask):
    """H x W ``bool`` array of ``mask > 0.5``: ``mask`` itself (no copy) when it is boolean."""
    array = np.asarray(mask)
    return array if array.dtype == bool else array > MASK_THRESHOLD


def mask_uint8(mask):
    """H x W C-contiguous ``uint8`` {0, 1} map of :func:`binary_mask` (OpenCV's input), a view
    of a contiguous boolean mask."""
    return np.ascontiguousarray(binary_mask(mask)).view(np.uint8)
