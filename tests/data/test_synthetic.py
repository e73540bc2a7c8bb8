"""Tests of the synthetic SOR benchmark generator (seqrank.data.synthetic) and its CLI."""

import json
import logging
import os

import cv2
import numpy as np
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog
from scipy import ndimage
from skimage.color import rgb2lab

from scripts import make_synthetic_sor as cli
from seqrank.data import synthetic
from seqrank.data.annotations import rasterize_annotations
from seqrank.data.synthetic import (
    attention_order,
    make_synthetic_sor,
    polygons_to_mask,
    register_synthetic,
    render_scene,
    scene_to_record,
)

TINY = {"seed": 0, "num_train": 6, "num_test": 4, "height": 64, "width": 64, "progress": False}
SPLIT_COUNTS = {"train": TINY["num_train"], "test": TINY["num_test"]}


def _make(root, **overrides):
    return make_synthetic_sor(root, **{**TINY, **overrides})


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("synroot")
    return root, _make(root)


def _load(directory, split, name="synsor"):
    with open(os.path.join(directory, f"{name}_{split}.json"), encoding="utf-8") as f:
        return json.load(f)


def _dataset_files(directory):
    files = {}
    for base, _, names in os.walk(directory):
        for name in names:
            path = os.path.join(base, name)
            files[os.path.relpath(path, directory)] = path
    return files


def _read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


def test_same_seed_is_byte_identical(dataset, tmp_path):
    _, first = dataset
    second = _make(tmp_path)
    files_a, files_b = _dataset_files(first), _dataset_files(second)
    assert sorted(files_a) == sorted(files_b)
    assert len(files_a) == 2 + sum(SPLIT_COUNTS.values())
    for rel, path in files_a.items():
        assert _read_bytes(path) == _read_bytes(files_b[rel]), rel
        if rel.endswith(".jpg"):
            np.testing.assert_array_equal(cv2.imread(path), cv2.imread(files_b[rel]))


def test_different_seed_differs(dataset, tmp_path):
    _, first = dataset
    other = _make(tmp_path, seed=1)
    assert _load(first, "train")["data"] != _load(other, "train")["data"]
    name = "images/test/synsor_test_000000.jpg"
    assert not np.array_equal(
        cv2.imread(os.path.join(first, name)), cv2.imread(os.path.join(other, name))
    )


def _check_annotation(annotation, height, width):
    assert set(annotation) == {"category_id", "segmentation"}
    assert annotation["segmentation"]
    for polygon in annotation["segmentation"]:
        assert all(type(v) is int for v in polygon)
        assert len(polygon) % 2 == 0 and len(polygon) >= 6
        points = np.asarray(polygon).reshape(-1, 2)
        assert points.min() >= 0 and points[:, 0].max() < width and points[:, 1].max() < height
    assert polygons_to_mask(annotation["segmentation"], height, width).any()


@pytest.mark.parametrize("split", ["train", "test"])
def test_format_is_valid(dataset, split):
    _, directory = dataset
    content = _load(directory, split)
    assert set(content) == {"__comment__", "data"}
    assert "fingerprint=" in content["__comment__"]
    assert len(content["data"]) == SPLIT_COUNTS[split]
    for record in content["data"]:
        assert set(record) == {"image_name", "height", "width", "annotations"}
        assert (record["height"], record["width"]) == (64, 64)
        ranks = [a["category_id"] for a in record["annotations"]]
        assert 1 <= len(ranks) <= 6
        assert sorted(ranks) == list(range(1, len(ranks) + 1))
        for annotation in record["annotations"]:
            _check_annotation(annotation, record["height"], record["width"])
        image = cv2.imread(os.path.join(directory, "images", split, record["image_name"] + ".jpg"))
        assert image.shape == (64, 64, 3)


def test_non_square_images(tmp_path):
    directory = _make(tmp_path, num_train=2, num_test=1, height=48, width=80)
    for split in ("train", "test"):
        for record in _load(directory, split)["data"]:
            assert (record["height"], record["width"]) == (48, 80)
            for annotation in record["annotations"]:
                _check_annotation(annotation, 48, 80)
            path = os.path.join(directory, "images", split, record["image_name"] + ".jpg")
            assert cv2.imread(path).shape == (48, 80, 3)


def _expected_order(objects):
    """Independent re-implementation of the documented rule."""
    contrasts = [o.contrast for o in objects]
    order = [int(np.argmax(contrasts))]
    while len(order) < len(objects):
        here = np.asarray(objects[order[-1]].centroid)
        rest = [i for i in range(len(objects)) if i not in order]
        dists = {i: round(float(np.linalg.norm(objects[i].centroid - here)), 6) for i in rest}
        best = min(dists.values())
        order.append(max((i for i in rest if dists[i] == best), key=lambda i: objects[i].area))
    return order


def _documented_contrast(image_bgr, mask, occupied):
    """Step 1 of docs/SYNTHETIC.md with other libraries than the generator's: scikit-image's
    CIELAB (it differs from OpenCV's by < 0.3 per pixel) and scipy's dilation."""
    radius = max(2, round(0.06 * min(mask.shape)))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1,) * 2).astype(bool)
    ring = ndimage.binary_dilation(mask, structure=kernel) & ~occupied
    if not ring.any():
        ring = ~occupied
    lab = rgb2lab(image_bgr[..., ::-1] / 255.0)
    return float(np.linalg.norm(lab[mask].mean(axis=0) - lab[ring].mean(axis=0)))


def _visible(objects, index):
    mask = objects[index].full_mask.copy()
    for later in objects[index + 1 :]:
        mask &= ~later.full_mask
    return mask


@pytest.mark.parametrize("split", ["train", "test"])
def test_ranking_rule(dataset, split):
    _, directory = dataset
    for index, record in enumerate(_load(directory, split)["data"]):
        scene = render_scene(TINY["seed"], split, index, 64, 64)
        assert scene_to_record(scene, record["image_name"]) == record
        objects = scene.objects
        # V_i of docs/SYNTHETIC.md: the record's polygons as the data mapper rasterises them,
        # in attention order.
        _, seen = rasterize_annotations(record["annotations"], 64, 64)
        occupied = np.any([o.full_mask for o in objects], axis=0)
        for position, k in enumerate(scene.order):
            obj, mask = objects[k], seen[position] > 0
            np.testing.assert_array_equal(obj.mask, mask)
            expected = _documented_contrast(scene.image, mask, occupied)
            assert obj.contrast == pytest.approx(expected, rel=0.02, abs=0.3)
            ys, xs = np.nonzero(mask)
            assert obj.area == xs.size
            assert tuple(obj.centroid) == pytest.approx((xs.mean(), ys.mean()), rel=1e-9)
        for k, obj in enumerate(objects):
            visible = _visible(objects, k)
            overlap = np.count_nonzero(visible & obj.mask)
            assert overlap >= 0.9 * np.count_nonzero(visible | obj.mask)
        order = _expected_order(objects)
        assert scene.order == order
        assert objects[order[0]].salient
        contrasts = sorted((o.contrast for o in objects), reverse=True)
        if len(contrasts) > 1:
            assert contrasts[0] >= 1.5 * contrasts[1] and contrasts[0] - contrasts[1] >= 15
        assert [a["category_id"] for a in record["annotations"]] == list(range(len(objects), 0, -1))
        assert [scene.ranks[i] for i in order] == list(range(len(objects), 0, -1))


def test_attention_order_tie_break():
    # Objects 0 and 2 are equally far from the first (object 1): the larger one (2) goes first.
    contrasts = [1.0, 5.0, 2.0, 0.5]
    centroids = [(3.0, 0.0), (0.0, 0.0), (-3.0, 0.0), (-3.0, 5.0)]
    assert attention_order(contrasts, centroids, [10, 50, 20, 5]) == [1, 2, 3, 0]
    assert attention_order(contrasts, centroids, [20, 50, 10, 5]) == [1, 0, 2, 3]
    assert attention_order([], [], []) == []


def _mtimes(directory):
    return {rel: os.stat(path).st_mtime_ns for rel, path in _dataset_files(directory).items()}


def test_second_call_is_cached(dataset, caplog):
    root, directory = dataset
    before = _mtimes(directory)
    with caplog.at_level(logging.INFO, logger="seqrank.data.synthetic"):
        assert _make(root) == directory
    assert _mtimes(directory) == before
    assert "cached" in caplog.text


def test_other_parameters_need_force(tmp_path):
    directory = _make(tmp_path, num_train=1, num_test=1)
    with pytest.raises(FileExistsError, match="--force"):
        _make(tmp_path, num_train=1, num_test=1, seed=3)
    _make(tmp_path, num_train=1, num_test=1, seed=3, force=True)
    assert "seed=3" in _load(directory, "train")["__comment__"]
    assert sorted(os.listdir(tmp_path)) == ["synsor"]


def test_bad_parameters(tmp_path):
    with pytest.raises(ValueError, match=">= 32"):
        _make(tmp_path, height=16)
    with pytest.raises(ValueError, match="name"):
        _make(tmp_path, name="../escape")
    with pytest.raises(ValueError, match=">= 1"):
        _make(tmp_path, num_test=0)
    with pytest.raises(ValueError, match="split"):
        render_scene(0, "val", 0)


@pytest.fixture
def registered(dataset):
    root, _ = dataset
    yield root
    for name in ("synsor_train", "synsor_test"):
        if name in DatasetCatalog:
            DatasetCatalog.remove(name)
        if name in MetadataCatalog:
            MetadataCatalog.remove(name)


def test_loads_through_registry(registered):
    assert register_synthetic(registered) == ["synsor_train", "synsor_test"]
    register_synthetic(registered)  # idempotent: no "already registered" error
    records = DatasetCatalog.get("synsor_test")
    assert len(records) == SPLIT_COUNTS["test"]
    for record in records:
        assert os.path.isfile(record["file_name"])
        assert record["annotations"]
    assert len(DatasetCatalog.get("synsor_train")) == SPLIT_COUNTS["train"]


def test_cli(tmp_path):
    with pytest.raises(SystemExit) as info:
        cli.parse_args(["--help"])
    assert info.value.code == 0
    with pytest.raises(SystemExit) as info:
        cli.parse_args(["--num-train", "zero"])
    assert info.value.code == 2
    args = ["--root", str(tmp_path), "--name", "tiny", "--num-train", "1", "--num-test", "1"]
    target = cli.main(args + ["--height", "40", "--width", "56", "--no-progress"])
    assert _load(target, "test", name="tiny")["data"][0]["width"] == 56
    with pytest.raises(SystemExit, match="--force"):
        cli.main(args + ["--size", "48", "--no-progress"])


def test_generator_version_in_fingerprint():
    counts = dict(SPLIT_COUNTS)
    comment = synthetic.dataset_comment("synsor", 0, counts, 64, 64)
    assert f"v{synthetic.GENERATOR_VERSION}" in comment
    assert comment != synthetic.dataset_comment("synsor", 0, counts, 64, 65)


def test_global_order_is_by_visible_area_after_the_first_pick():
    contrasts = [1.0, 5.0, 2.0, 0.5]
    centroids = [(3.0, 0.0), (0.0, 0.0), (-3.0, 0.0), (-3.0, 5.0)]
    areas = [10, 5, 20, 40]
    assert attention_order(contrasts, centroids, areas, "global") == [1, 3, 2, 0]
    assert attention_order(contrasts, centroids, areas, "chain") == [1, 2, 3, 0]
    # Equal areas: the lower object index first.
    assert attention_order([9.0, 1.0, 1.0], [(0, 0)] * 3, [1, 7, 7], "global") == [0, 1, 2]
    with pytest.raises(ValueError, match="order"):
        attention_order(contrasts, centroids, areas, "size")


@pytest.mark.parametrize("index", range(8))
def test_global_scenes_have_a_clear_size_order(index):
    scene = render_scene(0, "train", index, 64, 64, order="global")
    objects = scene.objects
    assert objects[scene.order[0]].salient
    areas = [objects[i].area for i in scene.order[1:]]
    assert all(big >= synthetic.AREA_RATIO * small for big, small in zip(areas, areas[1:]))
    assert [scene.ranks[i] for i in scene.order] == list(range(len(objects), 0, -1))


def test_order_is_part_of_the_fingerprint_and_the_cli(tmp_path):
    counts = dict(SPLIT_COUNTS)
    chain = synthetic.dataset_comment("synsor", 0, counts, 64, 64)
    assert "order=chain" in chain
    assert chain != synthetic.dataset_comment("synsor", 0, counts, 64, 64, "global")
    args = ["--root", str(tmp_path), "--name", "glob", "--num-train", "2", "--num-test", "1"]
    target = cli.main(args + ["--size", "64", "--order", "global", "--no-progress"])
    content = _load(target, "train", name="glob")
    assert "order=global" in content["__comment__"]
    for index, record in enumerate(content["data"]):
        scene = render_scene(0, "train", index, 64, 64, order="global")
        assert scene_to_record(scene, record["image_name"]) == record
    with pytest.raises(SystemExit) as info:
        cli.parse_args(["--order", "size"])
    assert info.value.code == 2


def test_default_min_objects_keeps_the_fingerprint_of_existing_datasets():
    # The comment of the `make demo` dataset as generated before --min-objects existed.
    counts = {"train": 600, "test": 100}
    comment = synthetic.dataset_comment("synsor_global", 0, counts, 128, 128, "global")
    assert comment.endswith("height=128 width=128 fingerprint=313fd9600be53399")
    two = synthetic.dataset_comment("synsor_global", 0, counts, 128, 128, "global", 2)
    assert "min_objects=2" in two and two != comment


@pytest.mark.parametrize("order", ["chain", "global"])
def test_min_objects_leaves_no_image_with_fewer_objects(tmp_path, order):
    directory = _make(tmp_path, num_train=10, num_test=10, order=order, min_objects=2)
    for split in ("train", "test"):
        content = _load(directory, split)
        assert "min_objects=2" in content["__comment__"]
        assert all(len(record["annotations"]) >= 2 for record in content["data"])
    # Without the option some of these images hold a single object.
    singles = [len(render_scene(0, "train", i, 64, 64, order).objects) == 1 for i in range(10)]
    assert any(singles)


def test_min_objects_out_of_range_is_one_line(tmp_path):
    for bad in (0, 7, 1.5):
        with pytest.raises(ValueError, match="min_objects"):
            _make(tmp_path, min_objects=bad)
    args = ["--root", str(tmp_path), "--num-train", "1", "--num-test", "1", "--no-progress"]
    with pytest.raises(SystemExit, match="min_objects must be between 1 and 6, got 7"):
        cli.main(args + ["--min-objects", "7"])
    with pytest.raises(SystemExit) as info:
        cli.parse_args(args + ["--min-objects", "0"])
    assert info.value.code == 2
    assert not os.listdir(tmp_path)
