"""convert_assr on a tiny fabricated release in the original ASSR layout."""

import json
import logging
import os

import numpy as np
import pytest

from seqrank.data.annotations import rasterize_annotations
from seqrank.data.converters.assr import convert_assr, main, parse_args
from seqrank.data.converters.common import ConversionError, ConvertOptions
from tests.helpers import load_converted, run_converter_cli, write_jpeg

SIZES = {"img_a": (30, 40), "img_b": (25, 35), "img_c": (20, 20)}  # name -> (height, width)
RANKS = {
    # index: 0    1     2    3    4    5    6
    "img_a": [0.7, -1.0, 1.0, 0.5, 0.9, 0.3, 0.8],
    "img_b": [0.9, 0.9, 0.6],  # tie between objects 0 and 1
    "img_c": [0.5, -0.2],  # nothing ranked
}


def _square(k):
    x = 2 + 3 * k
    return [[x, 1, x + 2, 1, x + 2, 4, x, 4]]


def make_release(root):
    """Build images/test, obj_seg_data_test.json and rank_order/test in ``root``."""
    entries = []
    for i, (name, (h, w)) in enumerate(SIZES.items()):
        write_jpeg(root / "images" / "test" / f"{name}.jpg", h, w, (40 * i, 90, 200))
        objects = [
            {"bbox": [0, 0, 5, 5], "segmentation": _square(k)} for k in range(len(RANKS[name]))
        ]
        entries.append({"img": name + (".jpg" if name == "img_b" else ""), "object_data": objects})
        rank_dir = root / "rank_order" / "test"
        rank_dir.mkdir(parents=True, exist_ok=True)
        (rank_dir / f"{name}.json").write_text(json.dumps({"rank_order": RANKS[name]}))
    entries[0]["object_data"][4]["segmentation"] = [[1.4, 2.6, 9.5, 2.5, 9.49, 8.0]]
    (root / "obj_seg_data_test.json").write_text(json.dumps(entries))
    return entries


@pytest.fixture
def release(tmp_path):
    root = tmp_path / "ASSR"
    make_release(root)
    return root


def test_conversion(release, tmp_path, caplog):
    out = tmp_path / "datasets"
    with caplog.at_level(logging.INFO):
        summary = convert_assr(str(release), str(out), ["test"])["test"]
    records = load_converted(out, "assr")
    assert list(records) == ["img_a", "img_b", "img_c"]
    a, b, c = records["img_a"], records["img_b"], records["img_c"]
    # img_a keeps objects 0, 2, 4, 6 in source order; 1.0 > 0.9 > 0.8 > 0.7 -> ids 4, 3, 2, 1.
    assert [x["category_id"] for x in a["annotations"]] == [1, 4, 3, 2]
    assert a["annotations"][0]["segmentation"] == _square(0)
    assert a["annotations"][2]["segmentation"] == [[1, 3, 10, 3, 9, 8]]  # rounded half up
    assert [x["category_id"] for x in b["annotations"]] == [3, 2, 1]  # tie: object 0 first
    assert c["annotations"] == []
    for name, record in records.items():
        assert (record["height"], record["width"]) == SIZES[name]
        src = release / "images" / "test" / f"{name}.jpg"
        assert open(record["file_name"], "rb").read() == src.read_bytes()
        assert not os.path.islink(record["file_name"])
    assert (summary.images, summary.objects_kept, summary.objects_unranked) == (3, 7, 5)
    assert (summary.objects_negative, summary.tied_images, summary.empty_images) == (2, 1, 1)
    tie_warnings = [
        r for r in caplog.records if r.levelno == logging.WARNING and "img_b" in r.message
    ]
    assert tie_warnings and "0.9: 2" in tie_warnings[0].message
    assert any("1 images with rank ties" in r.message for r in caplog.records)


def test_converted_polygons_rasterise_to_the_original_objects(release, tmp_path):
    # The converted annotations, rasterised as training and evaluation do, give back the
    # release's objects: the squares exactly, the float triangle within its rounded corners.
    out = tmp_path / "datasets"
    convert_assr(str(release), str(out), ["test"])
    record = load_converted(out, "assr")["img_a"]
    ranks, masks = rasterize_annotations(record["annotations"], record["height"], record["width"])
    assert ranks == [4, 3, 2, 1]  # objects 2, 4, 6, 0 of the release
    for mask, k in ((masks[0], 2), (masks[2], 6), (masks[3], 0)):
        expected = np.zeros((30, 40), np.float32)
        x = 2 + 3 * k
        expected[1:5, x : x + 3] = 1  # the square's corner pixels are included
        np.testing.assert_array_equal(mask, expected)
    rows, cols = np.nonzero(masks[1])
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (3, 8, 1, 10)
    assert masks[1][3, 1:11].all() and masks[1][8, 9] == 1


def test_link_keep_unranked_and_dry_run(release, tmp_path):
    out = tmp_path / "linked"
    convert_assr(str(release), str(out), ["test"], ConvertOptions(link=True, keep_unranked=True))
    records = load_converted(out, "assr")
    assert [x["category_id"] for x in records["img_a"]["annotations"]] == [1, 0, 4, 0, 3, 0, 2]
    assert os.path.islink(records["img_c"]["file_name"])
    dry = tmp_path / "dry"
    summary = convert_assr(str(release), str(dry), ["test"], ConvertOptions(dry_run=True))
    assert summary["test"].images == 3 and not dry.exists()


def test_errors_name_the_file(release, tmp_path):
    out = str(tmp_path / "out")
    with pytest.raises(ConversionError, match="ASSR root not found"):
        convert_assr(str(tmp_path / "nowhere"), out, ["test"])
    with pytest.raises(ConversionError, match="obj_seg_data_train.json"):
        convert_assr(str(release), out, ["train"])
    (release / "rank_order" / "test" / "img_b.json").write_text('{"rank_order": [0.9]}')
    with pytest.raises(ConversionError, match=r"img_b\.json: 1 rank values for 3 objects"):
        convert_assr(str(release), out, ["test"])
    make_release(release)
    entries = json.loads((release / "obj_seg_data_test.json").read_text())
    entries[1]["object_data"][0]["segmentation"] = {"size": [25, 35], "counts": "abc"}
    (release / "obj_seg_data_test.json").write_text(json.dumps(entries))
    with pytest.raises(ConversionError, match=r"obj_seg_data_test.json entry 1 \(img_b\) object 0"):
        convert_assr(str(release), out, ["test"])
    make_release(release)
    (release / "images" / "test" / "img_c.jpg").unlink()
    with pytest.raises(ConversionError, match="image 'img_c' not found"):
        convert_assr(str(release), out, ["test"])
    assert not os.path.exists(out)  # validation happens before anything is written


@pytest.mark.e2e
def test_cli(release, tmp_path):
    out = tmp_path / "datasets"
    proc = run_converter_cli("convert_assr", release, out, "--splits", "test")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "img_b" in proc.stderr and "tied rank values" in proc.stderr
    assert "assr_test: 3 images, 7 ranked objects kept" in proc.stderr
    assert len(load_converted(out, "assr")) == 3


def test_cli_help_and_one_line_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        parse_args(["--help"])
    assert exc.value.code == 0 and "--splits" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        main(["--root", str(tmp_path / "missing"), "--output", str(tmp_path / "o")])
    assert str(exc.value.code).startswith("convert_assr: error: ASSR root not found")
