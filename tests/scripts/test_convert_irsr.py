"""convert_irsr on a tiny fabricated release in the original IRSR layout."""

import logging
import os
import pickle

import numpy as np
import pytest

from seqrank.data.converters.common import ConversionError, ConvertOptions
from seqrank.data.converters.irsr import convert_irsr, load_annotations, main, parse_args
from tests.helpers import load_converted, run_converter_cli, write_jpeg

SIZES = {"i1": (30, 40), "i2": (24, 32)}
RANKS = {"i1": np.array([2, 0, 3, 1]), "i2": [1, 2, 2, 0]}  # i2: tie on value 2


def _annotation(k):
    x = 1.5 + 4 * k  # IRSR polygons are floats
    return {"bbox": [x, 1.0, 3.0, 3.0], "segmentation": [[x, 1.0, x + 3, 1.0, x + 3, 4.0, x, 4.0]]}


def make_release(root, entries=None, protocol=2):
    """Build Annotations/test.pkl and Images/test/rgb in ``root``."""
    (root / "Images" / "test" / "gt").mkdir(parents=True, exist_ok=True)
    for name, (h, w) in SIZES.items():
        write_jpeg(root / "Images" / "test" / "rgb" / f"{name}.jpg", h, w, (10, 120, 30))
    if entries is None:
        entries = [
            {
                "file_name": f"{name}.jpg",
                "height": SIZES[name][0],
                "width": SIZES[name][1],
                "annotations": [_annotation(k) for k in range(len(RANKS[name]))],
                "rank": RANKS[name],
            }
            for name in SIZES
        ]
    (root / "Annotations").mkdir(parents=True, exist_ok=True)
    with open(root / "Annotations" / "test.pkl", "wb") as f:
        pickle.dump(entries, f, protocol=protocol)
    return entries


@pytest.fixture
def release(tmp_path):
    root = tmp_path / "IRSR"
    make_release(root)
    return root


def test_conversion_higher_first(release, tmp_path, caplog):
    out = tmp_path / "datasets"
    with caplog.at_level(logging.INFO):
        summary = convert_irsr(str(release), str(out), ["test"])["test"]
    records = load_converted(out, "irsr")
    assert list(records) == ["i1", "i2"]
    # i1 ranks [2, 0, 3, 1]: object 1 dropped, larger = more salient.
    assert [a["category_id"] for a in records["i1"]["annotations"]] == [2, 3, 1]
    # i2 ranks [1, 2, 2, 0]: tie on 2 broken by index (object 1 before object 2).
    assert [a["category_id"] for a in records["i2"]["annotations"]] == [1, 3, 2]
    assert records["i1"]["annotations"][1]["segmentation"] == [[10, 1, 13, 1, 13, 4, 10, 4]]
    for name, record in records.items():
        assert (record["height"], record["width"]) == SIZES[name]
        assert os.path.isfile(record["file_name"])
    assert (summary.images, summary.objects_kept, summary.objects_unranked) == (2, 6, 2)
    assert summary.tied_images == 1
    warnings = [r.message for r in caplog.records if r.levelno == logging.WARNING]
    assert any("i2" in m and "2: 2" in m for m in warnings)
    assert any("1 images had tied rank values" in m for m in warnings)


def test_conversion_lower_first(release, tmp_path):
    out = tmp_path / "datasets"
    convert_irsr(str(release), str(out), ["test"], ConvertOptions(higher_first=False))
    records = load_converted(out, "irsr")
    assert [a["category_id"] for a in records["i1"]["annotations"]] == [2, 1, 3]
    assert [a["category_id"] for a in records["i2"]["annotations"]] == [3, 2, 1]


@pytest.mark.parametrize("protocol", [2, 5])
def test_restricted_unpickler_reads_numpy(tmp_path, protocol):
    entries = make_release(tmp_path, protocol=protocol)
    loaded = load_annotations(str(tmp_path / "Annotations" / "test.pkl"))
    np.testing.assert_array_equal(loaded[0]["rank"], entries[0]["rank"])


class _Sneaky:
    def __reduce__(self):
        return (os.getcwd, ())


def test_restricted_unpickler_refuses_other_globals(tmp_path):
    make_release(tmp_path, entries=[{"file_name": "i1.jpg", "payload": _Sneaky()}])
    with pytest.raises(ConversionError, match=r"test.pkl: cannot read .*refusing to load"):
        load_annotations(str(tmp_path / "Annotations" / "test.pkl"))


def test_errors_name_the_file(release, tmp_path):
    out = str(tmp_path / "out")
    with pytest.raises(ConversionError, match="IRSR root not found"):
        convert_irsr(str(tmp_path / "nowhere"), out, ["test"])
    with pytest.raises(ConversionError, match=r"Annotations/train.pkl"):
        convert_irsr(str(release), out, ["train"])
    entries = make_release(release)
    entries[1]["rank"] = [1, 2]
    make_release(release, entries)
    with pytest.raises(ConversionError, match=r"test.pkl entry 1 \(i2\): \"rank\" must be a list"):
        convert_irsr(str(release), out, ["test"])
    make_release(release, {"not": "a list"})
    with pytest.raises(ConversionError, match="test.pkl: expected a list"):
        convert_irsr(str(release), out, ["test"])
    assert not os.path.exists(out)


@pytest.mark.e2e
def test_cli(release, tmp_path):
    out = tmp_path / "datasets"
    proc = run_converter_cli("convert_irsr", release, out, "--splits", "test", "--link")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "i2" in proc.stderr and "tied rank values" in proc.stderr
    assert "irsr_test: 2 images, 6 ranked objects kept" in proc.stderr
    records = load_converted(out, "irsr")
    assert os.path.islink(records["i1"]["file_name"])


def test_cli_help_and_one_line_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        parse_args(["--help"])
    assert exc.value.code == 0 and "--rank-order" in capsys.readouterr().out
    assert parse_args(["--root", "r", "--output", "o"]).rank_order == "higher-first"
    with pytest.raises(SystemExit) as exc:
        main(["--root", str(tmp_path / "missing"), "--output", str(tmp_path / "o")])
    assert str(exc.value.code).startswith("convert_irsr: error: IRSR root not found")
