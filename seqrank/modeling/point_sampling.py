"""Evaluating upsampled mask logits at pixel positions without materialising the upsampled maps.

Letters: N = number of masks, h x w = logit resolution, S_h x S_w = target (GT) resolution,
P = number of points.

The original upsampled every logit map to the GT size with bilinear interpolation
(``align_corners=False``) and then indexed pixels. ``grid_sample`` with ``padding_mode="border"``
and ``align_corners=False`` at the pixel centres of the target grid computes exactly the same
bilinear weights (the original's negative source indices are clamped to 0, the border padding
clamps them too), so sampling first gives the same values at a fraction of the memory.
"""

import torch
import torch.nn.functional as F


def draw_points(height, width, num_points, device):
    """Pixel rows/cols at which mask losses are evaluated.

    All pixels when ``height * width <= num_points``; otherwise ``num_points`` rows and columns
    drawn independently, uniformly, with replacement, from the global CPU RNG (as the original).

    Returns:
        (rows P, cols P) int64 tensors on ``device``.
    """
    if height * width <= num_points:
        rows = torch.arange(height).repeat_interleave(width)
        cols = torch.arange(width).repeat(height)
    else:
        rows = torch.randint(height, (num_points,))
        cols = torch.randint(width, (num_points,))
    return rows.to(device), cols.to(device)


def sample_logits(logits, rows, cols, out_size):
    """Values of ``bilinear_resize(logits, out_size)`` at pixels (rows, cols).

    Args:
        logits: ``N x h x w``.
        rows, cols: ``P`` int64 pixel indices in the ``out_size`` grid.
        out_size: (S_h, S_w).
    Returns:
        ``N x P``.
    """
    n, h, w = logits.shape
    if n == 0:
        return logits.new_zeros((0, rows.numel()))
    if (h, w) == tuple(out_size):
        return logits[:, rows, cols]
    sh, sw = out_size
    gx = (2.0 * cols.to(logits.dtype) + 1.0) / sw - 1.0
    gy = (2.0 * rows.to(logits.dtype) + 1.0) / sh - 1.0
    grid = torch.stack([gx, gy], dim=-1).view(1, 1, -1, 2).expand(n, 1, -1, 2)
    out = F.grid_sample(
        logits[:, None], grid, mode="bilinear", padding_mode="border", align_corners=False
    )
    return out.view(n, -1)
