"""Reading other methods' rank and saliency maps: names, kinds, channels, bad files."""

import cv2
import numpy as np
import pytest
from PIL import Image

from seqrank.evaluation.prediction_maps import (
    CompareInputError,
    detect_kind,
    index_map_folder,
    is_rank_map,
    rank_map_masks,
    read_grey_map,
    resize_map,
)


def rank_map(h=60, w=80):
    """Three flat objects of values 200 (most salient), 120 and 40."""
    grey = np.zeros((h, w), np.uint8)
    grey[5:25, 5:30] = 120
    grey[30:50, 10:40] = 200
    grey[10:40, 50:70] = 40
    return grey


def saliency_map(h=60, w=80):
    ys, xs = np.mgrid[:h, :w]
    blob = np.exp(-((xs - 40) ** 2 + (ys - 30) ** 2) / 300.0)
    return (blob * 255).astype(np.uint8)


def test_index_matches_names_and_the_count_suffix_and_counts_extras(tmp_path):
    for name in ("a.png", "b_count_3.png", "c.PNG", "notes.txt", "zzz.png"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "sub").mkdir()
    folder = index_map_folder(tmp_path, ["a", "b", "c", "d"])
    assert set(folder.files) == {"a", "b", "c"}
    assert folder.files["b"].endswith("b_count_3.png")
    assert folder.extra == ["notes.txt", "zzz.png"]


def test_exact_name_wins_over_the_count_suffix(tmp_path):
    (tmp_path / "x_count_2.png").write_bytes(b"")
    folder = index_map_folder(tmp_path, ["x_count_2", "x"])
    assert set(folder.files) == {"x_count_2"}


def test_two_maps_for_one_image_is_an_error(tmp_path):
    (tmp_path / "a.png").write_bytes(b"")
    (tmp_path / "a_count_2.png").write_bytes(b"")
    with pytest.raises(CompareInputError, match="two maps for image 'a'"):
        index_map_folder(tmp_path, ["a"])


def test_folder_without_matching_names_is_an_error(tmp_path):
    (tmp_path / "other.png").write_bytes(b"")
    with pytest.raises(CompareInputError, match="no file is named after an image.*other.png"):
        index_map_folder(tmp_path, ["a"])
    with pytest.raises(CompareInputError, match="no such file or folder"):
        index_map_folder(tmp_path / "missing", ["a"])


def test_grey_rgb_palette_and_one_bit_maps_read_as_grey(tmp_path):
    grey = rank_map()
    cv2.imwrite(str(tmp_path / "grey.png"), grey)
    cv2.imwrite(str(tmp_path / "rgb.png"), np.dstack([grey] * 3))
    cv2.imwrite(str(tmp_path / "rgba.png"), np.dstack([grey] * 3 + [np.full_like(grey, 255)]))
    Image.fromarray(grey).convert("P").save(tmp_path / "palette.png")
    for name in ("grey", "rgb", "rgba", "palette"):
        assert np.array_equal(read_grey_map(tmp_path / f"{name}.png"), grey), name
    Image.fromarray(grey > 0).save(tmp_path / "bits.png")
    assert set(np.unique(read_grey_map(tmp_path / "bits.png"))) == {0, 255}


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda g: np.dstack([g, g, np.roll(g, 3)]), "a colour image"),
        (lambda g: np.dstack([g, g, g, np.full_like(g, 128)]), "transparent"),
        (lambda g: g.astype(np.uint16) * 256, "uint16 pixels; maps must be 8-bit"),
    ],
    ids=["colour", "alpha", "16-bit"],
)
def test_bad_maps_are_one_line_errors_naming_the_file(tmp_path, make, message):
    path = tmp_path / "bad.png"
    cv2.imwrite(str(path), make(rank_map()))
    with pytest.raises(CompareInputError, match=message) as info:
        read_grey_map(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_unreadable_and_truncated_files_are_one_line_errors(tmp_path):
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(CompareInputError, match="text.png: not a readable image"):
        read_grey_map(tmp_path / "text.png")
    cv2.imwrite(str(tmp_path / "full.png"), saliency_map())
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(CompareInputError, match="cut.png"):
        read_grey_map(tmp_path / "cut.png")


def test_oversized_map_is_refused_from_its_header(tmp_path, monkeypatch):
    import seqrank.evaluation.prediction_maps as pm

    cv2.imwrite(str(tmp_path / "big.png"), rank_map())
    monkeypatch.setattr(pm, "MAX_MAP_PIXELS", 100)
    with pytest.raises(CompareInputError, match="80 x 60 pixels is more than the 100 allowed"):
        read_grey_map(tmp_path / "big.png")


def test_rank_map_objects_largest_value_first():
    values, masks, areas = rank_map_masks(rank_map())
    assert values.tolist() == [200, 120, 40]
    assert areas.tolist() == [600, 500, 600]
    assert masks.dtype == bool and masks[0, 30:50, 10:40].all() and masks.sum() == 1700


def test_kind_detection():
    assert is_rank_map(rank_map())
    assert not is_rank_map(saliency_map())
    # Few grey values, but a staircase ramp: still a saliency map.
    ramp = np.tile(np.repeat(np.arange(0, 250, 10, dtype=np.uint8), 3), (20, 1))
    assert not is_rank_map(ramp)
    many = (np.arange(60 * 80) % 40 + 1).astype(np.uint8).reshape(60, 80)
    assert not is_rank_map(many)


def test_detect_kind_reads_a_sample_of_the_folder(tmp_path):
    for k in range(5):
        cv2.imwrite(str(tmp_path / f"r{k}.png"), rank_map())
    assert detect_kind(index_map_folder(tmp_path, [f"r{k}" for k in range(5)]))[0] == "rankmap"
    cv2.imwrite(str(tmp_path / "r4.png"), saliency_map())
    kind, reason = detect_kind(index_map_folder(tmp_path, [f"r{k}" for k in range(5)]))
    assert kind == "saliency" and "r4.png" in reason


def test_resizing_keeps_rank_values_and_smooths_saliency():
    small = resize_map(rank_map(30, 40), 60, 80, "rankmap")
    assert set(np.unique(small)) <= {0, 40, 120, 200} and small.shape == (60, 80)
    smooth = resize_map(saliency_map(30, 40), 60, 80, "saliency")
    assert len(np.unique(smooth)) > 30
