"""Bad or unusual inputs: missing/malformed files, odd image modes, EXIF, degenerate polygons."""

import json
import logging

import cv2
import numpy as np
import pytest
from PIL import Image

from seqrank.data import SORDatasetMapper, load_sor_json, rasterize_annotations, read_rgb


def _mapper(is_train=True, size=16):
    return SORDatasetMapper(is_train=is_train, image_size=size, flip_prob=0.0)


def _record(file_name, height=12, width=20, annotations=()):
    return {
        "file_name": str(file_name),
        "image_name": "bad",
        "height": height,
        "width": width,
        "annotations": list(annotations),
    }


# ----------------------------------------------------------------------------- dataset files


def test_missing_json_names_the_path(tmp_path):
    missing = tmp_path / "nope" / "assr_test.json"
    with pytest.raises(FileNotFoundError, match="assr_test.json") as info:
        load_sor_json(missing, tmp_path)
    assert str(missing) in str(info.value) and "\n" not in str(info.value)


def _one_record(**changes):
    record = {"image_name": "a", "height": 2, "width": 2, "annotations": []}
    record.update(changes)
    return json.dumps({"data": [{k: v for k, v in record.items() if v is not None}]})


@pytest.mark.parametrize(
    "content,problem",
    [
        ("{not json", "not valid JSON"),
        (json.dumps({"__comment__": "x"}), '"data" list'),
        (json.dumps([1, 2]), '"data" list'),
        (_one_record(annotations=None), "missing key 'annotations'"),
        (_one_record(height="2"), "'height' should be int"),
        (_one_record(annotations=[{"category_id": 1}]), "missing key 'segmentation'"),
    ],
)
def test_malformed_json_is_a_value_error(tmp_path, content, problem):
    path = tmp_path / "broken.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=problem) as info:
        load_sor_json(path, tmp_path)
    assert str(path) in str(info.value)


# ----------------------------------------------------------------------------- images


def test_missing_image_names_the_path(tmp_path):
    missing = tmp_path / "missing.jpg"
    with pytest.raises(FileNotFoundError, match="missing.jpg"):
        _mapper()(_record(missing))


@pytest.mark.parametrize("payload", [b"", b"definitely not an image"])
def test_unreadable_image_is_a_value_error(tmp_path, payload):
    path = tmp_path / "junk.jpg"
    path.write_bytes(payload)
    with pytest.raises(ValueError, match="junk.jpg"):
        read_rgb(path)


def test_truncated_jpeg_is_a_value_error(tmp_path):
    path = tmp_path / "cut.jpg"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(path)
    path.write_bytes(path.read_bytes()[:600])
    with pytest.raises(ValueError, match="cut.jpg"):
        read_rgb(path)


def _gradient(height=12, width=20):
    return np.tile(np.linspace(0, 255, width, dtype=np.uint8), (height, 1))


@pytest.mark.parametrize(
    "mode,make",
    [
        ("L", lambda g: Image.fromarray(g, "L")),
        ("LA", lambda g: Image.fromarray(np.dstack([g, g]), "LA")),
        ("RGBA", lambda g: Image.fromarray(np.dstack([g, g, g, 255 - g]), "RGBA")),
        ("P", lambda g: Image.fromarray(np.dstack([g, g, g])).quantize(16)),
        ("CMYK", lambda g: Image.fromarray(np.dstack([g, g, g])).convert("CMYK")),
    ],
)
def test_image_modes_become_rgb(tmp_path, mode, make):
    img = make(_gradient())
    assert img.mode == mode
    path = tmp_path / f"img_{mode}.{'jpg' if mode == 'CMYK' else 'png'}"
    img.save(path)
    rgb = read_rgb(path)
    assert rgb.shape == (12, 20, 3) and rgb.dtype == np.uint8
    assert rgb[:, -1].mean() > rgb[:, 0].mean() + 100  # the gradient survives


def test_16bit_png_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 257, 32896, 65535]], dtype=np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(values).save(path)
    assert Image.open(path).mode in ("I;16", "I")
    rgb = read_rgb(path)
    assert rgb.shape == (1, 4, 3) and rgb.dtype == np.uint8
    np.testing.assert_array_equal(rgb[0, :, 0], [0, 1, 128, 255])
    assert (rgb[..., 0] == rgb[..., 2]).all()


def _exif_rotated_jpeg(path, height=12, width=20):
    """Stored as height x width with orientation 6 (displayed rotated by 90 degrees)."""
    pixels = np.zeros((height, width, 3), dtype=np.uint8)
    pixels[:, : width // 2] = 255
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(pixels).save(path, exif=exif, quality=100)


def test_exif_orientation_only_on_request(tmp_path):
    path = tmp_path / "rotated.jpg"
    _exif_rotated_jpeg(path)
    assert read_rgb(path).shape == (12, 20, 3)  # datasets: stored order, as the original
    rgb = read_rgb(path, apply_exif=True)
    assert rgb.shape == (20, 12, 3) and rgb.dtype == np.uint8
    assert rgb[:5].mean() > 200 and rgb[-5:].mean() < 50  # the white left half is now on top


def test_record_size_is_the_stored_or_the_rotated_size_of_the_image(tmp_path, caplog):
    """Checked on the header before decoding; the image is read in stored order either way."""
    path = tmp_path / "rotated.jpg"
    _exif_rotated_jpeg(path)  # stored 12 x 20, shown 20 x 12
    salient = [{"category_id": 1, "segmentation": [[0, 0, 5, 0, 5, 5]]}]
    mapper = _mapper(is_train=False)
    with caplog.at_level(logging.WARNING, logger="seqrank.data.mapper"):
        stored = mapper(_record(path, 12, 20, salient))
    assert stored["masks"].shape == (1, 12, 20) and "record says" not in caplog.text
    with caplog.at_level(logging.WARNING, logger="seqrank.data.mapper"):
        rotated = mapper(_record(path, 20, 12, salient))
    assert rotated["masks"].shape == (1, 20, 12)
    assert "image is 12x20 (HxW) but the record says 20x12 (its EXIF-rotated size)" in caplog.text
    np.testing.assert_array_equal(rotated["image"], stored["image"])
    with pytest.raises(
        ValueError, match=r"says 30 x 40 \(height x width\) but the image is 12 x 20"
    ):
        mapper(_record(path, 30, 40, salient))


# ----------------------------------------------------------------------------- annotations


def test_float_polygons_are_rounded():
    floats = [[1.4, 1.6, 8.5001, 1.2, 8.7, 7.49, 0.6, 7.51]]
    ints = [[1, 2, 9, 1, 9, 7, 1, 8]]
    _, from_floats = rasterize_annotations([{"category_id": 1, "segmentation": floats}], 10, 10)
    _, from_ints = rasterize_annotations([{"category_id": 1, "segmentation": ints}], 10, 10)
    np.testing.assert_array_equal(from_floats, from_ints)
    assert from_floats.dtype == np.float32 and from_floats.sum() > 0


def _original_fill(segmentation, height, width):
    """The original mappers' rasterisation: one cv2.fillPoly of int32 (-1, 2) point arrays."""
    mask = np.zeros((height, width), dtype=float)
    points = [np.array(xy, dtype=np.int32).reshape(-1, 2) for xy in segmentation]
    cv2.fillPoly(mask, points, 1.0)
    return mask


@pytest.mark.parametrize(
    "segmentation",
    [
        [[1, 1, 6, 5]],  # a 2-point polygon: a line
        [[3, 4]],  # a single point
        [[0, 0, 7, 0], [2, 2]],  # line + dot in one fill
        [[0, 0, 5, 5], [0, 0, 6, 0, 6, 6, 0, 6]],  # even-odd fill with a short polygon
        [],  # no polygon at all: an empty mask
    ],
)
def test_short_polygons_are_drawn_like_the_original_and_the_object_kept(segmentation):
    annotations = [
        {"category_id": 1, "segmentation": [[0, 0, 3, 0, 3, 3]]},
        {"category_id": 2, "segmentation": segmentation},
    ]
    ranks, masks = rasterize_annotations(annotations, 8, 8, image_name="img_short")
    assert ranks == [2, 1] and masks.shape == (2, 8, 8)
    np.testing.assert_array_equal(masks[0], _original_fill(segmentation, 8, 8))
    assert masks[0].sum() == _original_fill(segmentation, 8, 8).sum()


def test_undrawable_polygons_are_skipped_and_the_object_kept(caplog):
    annotations = [
        {"category_id": 3, "segmentation": [[0, 0, 5], [0, 0, 5, "x", 5, 5], [[1, 2], [3]], []]},
        {"category_id": 1, "segmentation": [[0, 0, 3, 0, 3, 3]]},
    ]
    with caplog.at_level(logging.WARNING, logger="seqrank.data.mapper"):
        ranks, masks = rasterize_annotations(annotations, 8, 8, image_name="img_empty")
    assert ranks == [3, 1] and masks.shape == (2, 8, 8)
    assert masks[0].sum() == 0 and masks[1].sum() > 0
    assert "category_id 3" in caplog.text and "kept with an empty mask" in caplog.text
    assert "3 coordinates" in caplog.text and "0 coordinates" in caplog.text


@pytest.mark.parametrize("is_train,mask_shape", [(True, (0, 16, 16)), (False, (0, 12, 20))])
def test_image_without_salient_object(tmp_path, is_train, mask_shape):
    path = tmp_path / "plain.jpg"
    Image.fromarray(np.zeros((12, 20, 3), np.uint8)).save(path)
    annotations = [{"category_id": 0, "segmentation": [[0, 0, 5, 0, 5, 5]]}]
    out = _mapper(is_train)(_record(path, annotations=annotations))
    assert tuple(out["masks"].shape) == mask_shape and out["ranks"] == []
    assert out["image"].shape == (3, 16, 16)
