"""SORDatasetMapper: shapes, flip consistency, binary masks, rank order, parity bundle."""

import numpy as np
import pytest
import torch
from detectron2.config import get_cfg
from PIL import Image

from seqrank.config import add_seqrank_config
from seqrank.data import SORDatasetMapper, load_sor_json, rasterize_annotations


def _cfg(train_size=32, test_size=24):
    cfg = get_cfg()
    add_seqrank_config(cfg)
    cfg.INPUT.FT_SIZE_TRAIN = train_size
    cfg.INPUT.FT_SIZE_TEST = test_size
    return cfg


def _box(x0, y0, x1, y1):
    return [x0, y0, x1, y0, x1, y1, x0, y1]


def _half_red_record(tmp_path, height=20, width=40):
    """Left half pure red, right half pure blue; one salient object covering the left half."""
    pixels = np.zeros((height, width, 3), dtype=np.uint8)
    pixels[:, : width // 2, 0] = 255
    pixels[:, width // 2 :, 2] = 255
    Image.fromarray(pixels).save(tmp_path / "half.jpg", quality=100, subsampling=0)
    return {
        "file_name": str(tmp_path / "half.jpg"),
        "image_name": "half",
        "height": height,
        "width": width,
        "annotations": [
            {"category_id": 1, "segmentation": [_box(0, 0, width // 2 - 1, height - 1)]},
            {"category_id": 0, "segmentation": [_box(0, 0, 3, 3)]},
        ],
    }


def _ranked_record(tmp_path):
    """Three objects listed in a scrambled rank order, with distinct, recognisable areas."""
    Image.fromarray(np.full((30, 50, 3), 128, np.uint8)).save(tmp_path / "ranked.jpg")
    return {
        "file_name": str(tmp_path / "ranked.jpg"),
        "image_name": "ranked",
        "height": 30,
        "width": 50,
        "annotations": [
            {"category_id": 2, "segmentation": [_box(0, 0, 9, 9)]},  # 100 px
            {"category_id": 5, "segmentation": [_box(20, 0, 24, 4)]},  # 25 px
            {"category_id": 0, "segmentation": [_box(0, 20, 49, 29)]},
            {"category_id": 3, "segmentation": [_box(30, 10, 35, 15)]},  # 36 px
        ],
    }


def test_train_output_format(tmp_path):
    record = _ranked_record(tmp_path)
    out = SORDatasetMapper(_cfg(), is_train=True)(record)
    assert set(out) == {"file_name", "image_name", "image", "height", "width", "masks", "ranks"}
    assert out["image"].shape == (3, 32, 32) and out["image"].dtype == torch.float32
    assert out["image"].is_contiguous()
    assert 0 <= out["image"].min() and out["image"].max() <= 255
    assert out["masks"].shape == (3, 32, 32) and out["masks"].dtype == torch.float32
    assert (out["height"], out["width"], out["image_name"]) == (30, 50, "ranked")
    assert out["file_name"] == record["file_name"]
    assert "annotations" in record  # the input record is not modified


def test_test_output_keeps_original_mask_size(tmp_path):
    out = SORDatasetMapper(_cfg(), is_train=False)(_ranked_record(tmp_path))
    assert out["image"].shape == (3, 24, 24)
    assert out["masks"].shape == (3, 30, 50)


def test_ranks_sorted_descending_with_their_masks(tmp_path):
    out = SORDatasetMapper(_cfg(), is_train=False)(_ranked_record(tmp_path))
    assert out["ranks"] == [5, 3, 2]
    assert out["masks"].sum(dim=(1, 2)).tolist() == [25.0, 36.0, 100.0]


def test_rasterize_is_stable_for_equal_ranks():
    annotations = [
        {"category_id": 1, "segmentation": [_box(0, 0, 1, 1)]},
        {"category_id": 1, "segmentation": [_box(0, 0, 2, 2)]},
    ]
    ranks, masks = rasterize_annotations(annotations, 5, 5)
    assert ranks == [1, 1]
    assert masks.sum(axis=(1, 2)).tolist() == [4.0, 9.0]


def test_multi_polygon_single_fill_is_even_odd():
    outer, inner = _box(0, 0, 9, 9), _box(3, 3, 6, 6)
    _, masks = rasterize_annotations([{"category_id": 1, "segmentation": [outer, inner]}], 10, 10)
    assert masks[0, 5, 5] == 0 and masks[0, 0, 0] == 1


@pytest.mark.parametrize("flip_prob,salient_side", [(0.0, "left"), (1.0, "right")])
def test_masks_flip_with_image(tmp_path, flip_prob, salient_side):
    mapper = SORDatasetMapper(_cfg(train_size=40), is_train=True, flip_prob=flip_prob)
    out = mapper(_half_red_record(tmp_path))
    mask, red = out["masks"][0], out["image"][0]
    assert out["ranks"] == [1]
    left, right = mask[:, :20], mask[:, 20:]
    inside, outside = (left, right) if salient_side == "left" else (right, left)
    assert bool((inside == 1).all()) and bool((outside == 0).all())
    assert red[mask == 1].mean() > 200 and red[mask == 0].mean() < 60


def test_flip_uses_numpy_rng(tmp_path):
    mapper = SORDatasetMapper(_cfg(train_size=40), is_train=True)
    record = _half_red_record(tmp_path)
    np.random.seed(0)
    first = [bool(mapper(record)["masks"][0, 0, -1]) for _ in range(16)]
    np.random.seed(0)
    second = [bool(mapper(record)["masks"][0, 0, -1]) for _ in range(16)]
    assert first == second and any(first) and not all(first)


def test_test_mapper_never_flips(tmp_path):
    mapper = SORDatasetMapper(_cfg(test_size=40), is_train=False, flip_prob=1.0)
    out = mapper(_half_red_record(tmp_path))
    assert bool((out["masks"][0, :, :20] == 1).all())
    assert out["image"][0, :, :10].mean() > 200


def test_nearest_resize_keeps_masks_binary(tmp_path):
    record = _ranked_record(tmp_path)
    record["annotations"].append(
        {"category_id": 4, "segmentation": [[1, 28, 25, 12, 48, 27, 30, 29]]}
    )
    out = SORDatasetMapper(_cfg(train_size=37), is_train=True)(record)
    assert set(out["masks"].unique().tolist()) <= {0.0, 1.0}
    assert out["masks"].sum() > 0


def test_train_mapper_matches_parity_batch(parity_dir):
    expected = torch.load(parity_dir / "train_batch.pth", weights_only=True)
    root = parity_dir / "datasets" / "assr"
    records = {
        r["image_name"]: r
        for r in load_sor_json(root / "assr_train.json", root / "images" / "train")
    }
    mapper = SORDatasetMapper(_cfg(train_size=192), is_train=True, flip_prob=0.0)
    for item in expected:
        out = mapper(records[item["image_name"]])
        assert out["image"].shape == item["image"].shape
        assert (out["image"] - item["image"]).abs().max() <= 1.0
        assert torch.equal(out["masks"], item["masks"])
        assert out["ranks"] == list(item["ranks"])
        assert (out["height"], out["width"]) == (item["height"], item["width"])
