"""Image reading against the original: datasets in stored pixel order (EXIF ignored), the terminal
demo with EXIF applied like detectron2's ``read_image``. JPEGs with each of the 8 EXIF
orientations are generated here, square and not."""

import cv2
import numpy as np
import pytest
from detectron2.data.detection_utils import read_image
from PIL import Image

from seqrank.data import SORDatasetMapper, read_rgb

EXIF_ORIENTATION = 0x0112
SHAPES = {"square": (24, 24), "wide": (16, 28)}


def tagged_jpeg(path, orientation, height, width):
    """A JPEG whose top-left quarter is bright, stored as height x width, tagged ``orientation``."""
    rng = np.random.default_rng(orientation)
    pixels = rng.integers(0, 90, (height, width, 3), dtype=np.uint8)
    pixels[: height // 2, : width // 2] = 230
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = orientation
    Image.fromarray(pixels).save(path, exif=exif, quality=95)
    return path


def original_read(path):
    """How the original dataset mappers read an image."""
    return np.array(Image.open(path).convert("RGB")).astype(np.uint8)


@pytest.fixture(
    params=[(o, s) for o in range(1, 9) for s in SHAPES], ids=lambda p: f"o{p[0]}-{p[1]}"
)
def jpeg(request, tmp_path):
    orientation, shape = request.param
    height, width = SHAPES[shape]
    path = tagged_jpeg(tmp_path / f"o{orientation}_{shape}.jpg", orientation, height, width)
    assert Image.open(path).getexif()[EXIF_ORIENTATION] == orientation
    return path, orientation, (height, width)


def test_dataset_reading_is_pixel_identical_to_the_original(jpeg):
    path, _, _ = jpeg
    np.testing.assert_array_equal(read_rgb(path), original_read(path))


def test_mapper_input_and_gt_stay_in_stored_order(jpeg):
    """The test mapper's image is the original's read resized, and the GT polygon (drawn in the
    stored frame) covers the bright quarter, for every orientation."""
    path, _, (height, width) = jpeg
    polygon = [0, 0, width // 2 - 1, 0, width // 2 - 1, height // 2 - 1, 0, height // 2 - 1]
    record = {
        "file_name": str(path),
        "image_name": path.stem,
        "height": height,
        "width": width,
        "annotations": [{"category_id": 1, "segmentation": [polygon]}],
    }
    out = SORDatasetMapper(is_train=False, image_size=32)(record)
    expected = cv2.resize(original_read(path), (32, 32), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_array_equal(out["image"].numpy().transpose(1, 2, 0), expected)
    mask = out["masks"][0].numpy() > 0.5
    image = original_read(path).mean(axis=2)
    assert image[mask].mean() > 200 and image[~mask].mean() < 100


def test_demo_reading_applies_exif_like_detectron2(jpeg):
    path, orientation, (height, width) = jpeg
    shown = read_rgb(path, apply_exif=True)
    np.testing.assert_array_equal(shown, read_image(str(path), format="RGB"))
    rotated = orientation >= 5
    assert shown.shape[:2] == ((width, height) if rotated else (height, width))
    assert (orientation == 1) == np.array_equal(shown, original_read(path))


def test_terminal_demo_reads_with_exif(tmp_path, monkeypatch):
    """demo.py's process_image feeds the predictor the EXIF-applied image."""
    import demo.demo as demo_cli

    path = tagged_jpeg(tmp_path / "phone.jpg", 6, 16, 28)
    seen = {}

    def predictor(image, name):
        seen["image"] = image
        return {"masks": [], "bboxes": [], "scores": [], "saliency": [], "num": 0}

    demo_cli.process_image(predictor, str(path), "phone", str(tmp_path))
    np.testing.assert_array_equal(seen["image"], read_image(str(path), format="RGB"))
    assert seen["image"].shape == (28, 16, 3)
