"""Lean masks in the demos: boolean masks are rendered without copies, with the same output as
the {0, 1} float32 masks of the original's results."""

import json
import tracemalloc

import numpy as np
import pytest

from demo import demo as demo_cli
from online.app import display_result
from seqrank.demo_page import build_panel
from seqrank.utils.colormap import render_rank_map
from seqrank.utils.masks import binary_mask, mask_uint8
from seqrank.utils.visualize import ranked_objects, render_overlay, render_rank_colormap

K, H, W = 100, 120, 160


def _result(count=K, height=H, width=W, seed=0):
    """A predictor-like result: ``count`` overlapping boolean discs in rank order."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    masks = np.zeros((count, height, width), dtype=bool)
    for k in range(count):
        cy, cx, r = rng.uniform(0, height), rng.uniform(0, width), rng.uniform(5, height / 3)
        masks[k] = (y - cy) ** 2 + (x - cx) ** 2 < r * r
    masks[-1] = False  # an empty mask (no label, no contour)
    return {
        "image_name": "img",
        "masks": list(masks),
        "bboxes": rng.uniform(0, width, (count, 4)).tolist(),
        "scores": rng.uniform(0, 1, count).tolist(),
        "saliency": rng.uniform(0, 1, count).tolist(),
        "num": count,
    }


def _as_float(result):
    return {**result, "masks": [m.astype(np.float32) for m in result["masks"]]}


def _image(height=H, width=W):
    return np.random.default_rng(1).integers(0, 256, (height, width, 3), dtype=np.uint8)


def test_binary_mask_uses_a_boolean_mask_as_is():
    mask = np.zeros((3, 4), dtype=bool)
    mask[1, 2] = True
    assert binary_mask(mask) is mask
    assert np.shares_memory(mask_uint8(mask), mask)
    assert mask_uint8(mask).tolist() == mask.astype(np.uint8).tolist()
    values = np.array([[0.5, 0.50001, 1.0, -1.0]], dtype=np.float32)
    assert binary_mask(values).tolist() == [[False, True, True, False]]
    assert mask_uint8(values).dtype == np.uint8


def _png_and_json(result, image, tmp_path, name):
    folder = tmp_path / name
    folder.mkdir()
    demo_cli.write_outputs(image, result, "img", "img.png", str(folder))
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_demo_outputs_of_bool_masks_equal_those_of_float_masks(tmp_path):
    result, image = _result(), _image()
    written = _png_and_json(result, image, tmp_path, "bool")
    assert len(written) == K + 3  # overlay, colour map, JSON and one PNG per rank
    assert written == _png_and_json(_as_float(result), image, tmp_path, "float")
    shown = display_result(result, (60, 80))
    shown_float = display_result(_as_float(result), (60, 80))
    assert all(np.array_equal(a, b) for a, b in zip(shown["masks"], shown_float["masks"]))
    assert ranked_objects(result) == ranked_objects(_as_float(result))
    maps = np.stack(result["masks"])
    assert np.array_equal(render_rank_map(maps, H, W), render_rank_map(maps.astype(float), H, W))
    gts = np.stack(result["masks"][:3]).astype(np.float32)
    small = {**result, "masks": [m[:20, :30] for m in result["masks"]]}
    panels = [
        build_panel("img", image[:20, :30], gts[:, :20, :30], r) for r in (small, _as_float(small))
    ]
    assert json.dumps(panels[0], sort_keys=True) == json.dumps(panels[1], sort_keys=True)


def test_rendering_leaves_the_masks_unchanged():
    result = _result()
    before = np.stack(result["masks"]).copy()
    render_overlay(_image(), result, with_labels=True)
    render_rank_colormap(result, H, W)
    ranked_objects(result)
    assert np.array_equal(np.stack(result["masks"]), before)


@pytest.mark.parametrize(
    "render",
    [
        lambda r, image: render_overlay(image, r, with_labels=True),
        lambda r, image: render_rank_colormap(r, H, W),
        lambda r, image: ranked_objects(r),
        lambda r, image: render_rank_map(r["masks"], H, W),
    ],
    ids=["overlay", "colormap", "rle", "rank_map"],
)
def test_renderers_do_not_copy_the_boolean_masks(render):
    # Every numpy allocation is traced; copying the K masks (as ``m > 0.5`` did) would cost
    # K x H x W bytes at least. The rest is a few full-size canvases.
    result, image = _result(), _image()
    masks_bytes = K * H * W
    tracemalloc.start()
    try:
        render(result, image)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < masks_bytes / 2, (peak, masks_bytes)
