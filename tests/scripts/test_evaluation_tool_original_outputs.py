"""The evaluation tool's outputs as the original's: TEST.METRICS_OF_INTEREST selects and orders
the reported metrics (default protocol only) and ``dataset_<ds>_method_unknown.csv`` holds the
metrics dict as the original writes it."""

import ast
import json
import logging
import math

import pytest

from scripts import evaluation_tool
from tests.conftest import PARITY

ORIGINAL_CSV = "dataset_assr_test_method_unknown.csv"


def run_tool(out, results, *extra):
    """The tool in this process (the CLI itself is run by tests/scripts/test_evaluation_tool.py)."""
    evaluation_tool.main(
        [
            "--eval-only",
            "--config-file", str(PARITY / "config.yaml"),
            "DATASETS.TEST", "('assr_test',)",
            "MODEL.WEIGHTS", str(results),
            "DATASETS.ROOT", str(PARITY / "datasets"),
            "OUTPUT_DIR", str(out),
            *extra,
        ]
    )  # fmt: skip


def _python_dict(text):
    """Parse the original's ``str(dict)`` file (``nan`` is not a Python literal)."""
    return ast.literal_eval(text.replace("nan", "None"))


def test_original_csv_holds_the_metrics_dict(tmp_path):
    run_tool(tmp_path, PARITY / "results_handmade.pth")
    got = _python_dict((tmp_path / ORIGINAL_CSV).read_text())
    expected = json.loads((PARITY / "expected/results_handmade_metrics.json").read_text())
    assert list(got) == list(expected)
    for key, value in expected.items():
        if not key.endswith("_count") and expected[key + "_count"] == 0:
            assert got[key] is None, key  # count-0 metrics: nan instead of the original's 1.0
        else:
            assert got[key] == pytest.approx(value, abs=1e-3), key
    # Our own outputs are still written.
    assert (tmp_path / "assr_test_metrics.json").is_file()
    assert (tmp_path / "assr_test_metrics.csv").is_file()


def test_metrics_of_interest_select_and_order(tmp_path, capsys, caplog):
    with caplog.at_level(logging.WARNING):
        run_tool(
            tmp_path,
            PARITY / "results_handmade.pth",
            "TEST.METRICS_OF_INTEREST",
            "['sor', 'mae', 'bogus', 'sor']",
        )
    keys = ["sor", "sor_count", "mae", "mae_count"]
    got = json.loads((tmp_path / "assr_test_metrics.json").read_text())
    assert list(got) == keys
    assert got["sor"] == pytest.approx(0.7041, abs=1e-3)
    assert list(_python_dict((tmp_path / ORIGINAL_CSV).read_text())) == keys
    rows = (tmp_path / "assr_test_metrics.csv").read_text().splitlines()[1:]
    assert [r.split(",")[1] for r in rows] == ["sor", "mae"]
    table = capsys.readouterr().out.splitlines()
    assert any(line.startswith("sor ") for line in table)
    assert not any(line.startswith(("sa_sor", "top1", "acc")) for line in table)
    assert "ignoring unknown metric(s) bogus" in caplog.text


def test_protocol_all_ignores_metrics_of_interest(tmp_path):
    run_tool(
        tmp_path,
        PARITY / "results_handmade.pth",
        "--protocol",
        "all",
        "TEST.METRICS_OF_INTEREST",
        "['sor']",
    )
    got = json.loads((tmp_path / "assr_test_metrics.json").read_text())
    assert len(got["seqrank"]) == 26 and got["seqrank"]["sa_sor"] == pytest.approx(-0.05, abs=1e-3)
    original = _python_dict((tmp_path / ORIGINAL_CSV).read_text())
    assert len(original) == 26 and math.isclose(original["mae"], 0.252, abs_tol=1e-3)


def test_every_test_dataset_is_scored_and_no_results_file_is_written(tmp_path):
    """The original scored DATASETS.TEST[0] only and re-saved the results file as
    <ds>_coco_format.pth; ours scores every listed dataset and writes metrics files only."""
    run_tool(
        tmp_path, PARITY / "results_handmade.pth", "DATASETS.TEST", "('assr_test', 'assr_train')"
    )
    written = sorted(p.name for p in tmp_path.iterdir())
    expected = []
    for dataset in ("assr_test", "assr_train"):
        expected += [
            f"{dataset}_metrics.json",
            f"{dataset}_metrics.csv",
            f"dataset_{dataset}_method_unknown.csv",
        ]
    assert written == sorted(expected)
