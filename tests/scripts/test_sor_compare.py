"""CLI of scripts/sor_compare.py: the README example end to end, options, and bad input (one-line
errors, exit code 2, nothing written)."""

import csv
import json
import re
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest

from scripts import sor_compare
from tests.conftest import PARITY, REPO

EXAMPLE = REPO / "assets" / "sor_compare"
README_COMMAND = [
    "--dataset", "assr_test", "--dataset-root", "assets/sor_compare/datasets",
    "--pred", "MethodA=assets/sor_compare/MethodA",
    "--pred", "MethodB=assets/sor_compare/MethodB",
    "--protocol", "all", "--output", "output/sor_compare_example",
]  # fmt: skip
OUTPUTS = {
    "comparison.json",
    "comparison.csv",
    "comparison.md",
    "per_image.csv",
    "comparison.png",
    "inputs.json",
}


def readme_block(after):
    """The first fenced block of README.md after the line containing ``after``."""
    text = (REPO / "README.md").read_text()
    start = text.index("```", text.index(after)) + 3
    return text[text.index("\n", start) + 1 : text.index("```", start)]


@pytest.mark.e2e
def test_readme_example_prints_the_readme_table(tmp_path):
    command = readme_block("## Compare methods")
    args = command.replace("\\\n", " ").split()
    assert args[:3] == ["python", "-m", "scripts.sor_compare"]
    assert args[3:] == README_COMMAND
    output = tmp_path / "out"
    args = [a if a != "output/sor_compare_example" else str(output) for a in args[3:]]
    proc = subprocess.run(
        [sys.executable, "-m", "scripts.sor_compare", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = readme_block("prints this table")
    assert table.strip() in proc.stdout, proc.stdout
    assert {p.name for p in output.iterdir()} == OUTPUTS
    assert (output / "comparison.md").read_text().startswith(table.strip().splitlines()[0])
    got = json.loads((output / "comparison.json").read_text())
    assert set(got) == {"MethodA", "MethodB"}
    assert set(got["MethodA"]) == {"seqrank", "irsr", "assr"}
    with open(output / "per_image.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 8 and rows[0]["method"] == "MethodA" and "irsr_sa_sor" in rows[0]
    assert cv2.imread(str(output / "comparison.png")).shape[2] == 3


@pytest.fixture(autouse=True)
def no_logger_setup(monkeypatch):
    # detectron2's setup_logger is cached: in one process it would keep writing to the stdout
    # that pytest captured for the first test.
    monkeypatch.setattr(sor_compare, "setup_logger", lambda **kwargs: None)


def run_main(argv, capsys):
    """``(exit code, stdout, stderr)`` of sor_compare.main in this process."""
    try:
        sor_compare.main(["--workers", "1", *argv])
        code = 0
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def example_args(output, *preds, dataset="assr_test", root=EXAMPLE / "datasets"):
    preds = preds or (f"MethodA={EXAMPLE / 'MethodA'}", f"MethodB={EXAMPLE / 'MethodB'}")
    args = ["--dataset", dataset, "--dataset-root", str(root), "--output", str(output)]
    for p in preds:
        args += ["--pred", p]
    return args


def test_bootstrap_and_sod_metrics_add_intervals_and_columns(tmp_path, capsys):
    code, out, err = run_main(
        example_args(tmp_path / "out") + ["--bootstrap", "50", "--sod-metrics"], capsys
    )
    assert code == 0, err
    assert "S-measure" in out and "max F" in out and "50 bootstrap resamples" in out
    got = json.loads((tmp_path / "out" / "comparison.json").read_text())
    assert len(got["MethodA"]["seqrank"]["sa_sor_ci95"]) == 2
    assert 0 < got["MethodB"]["sod"]["s_measure"] < 1
    head = (tmp_path / "out" / "comparison.csv").read_text().splitlines()[0]
    assert head == "method,kind,protocol,metric,value,ci95_low,ci95_high,images"


def test_one_protocol_and_a_results_file(tmp_path, capsys):
    code, out, err = run_main(
        example_args(
            tmp_path / "out",
            f"handmade={PARITY / 'results_handmade.pth'}",
            root=PARITY / "datasets",
        )
        + ["--protocol", "irsr"],
        capsys,
    )
    assert code == 0, err
    got = json.loads((tmp_path / "out" / "comparison.json").read_text())
    assert list(got["handmade"]) == ["irsr"]
    assert got["handmade"]["irsr"]["sa_sor"] == pytest.approx(-0.0667, abs=1e-4)


def bad_map_folder(tmp_path, content):
    folder = tmp_path / "maps"
    shutil.copytree(EXAMPLE / "MethodB", folder)
    target = folder / "example_2.png"
    if isinstance(content, bytes):
        target.write_bytes(content)
    else:
        cv2.imwrite(str(target), content)
    return folder, target


def colour_map():
    grey = cv2.imread(str(EXAMPLE / "MethodB" / "example_2.png"), cv2.IMREAD_UNCHANGED)
    return np.dstack([grey, np.roll(grey, 5, axis=1), grey])


@pytest.mark.parametrize(
    "case",
    ["colour", "unreadable", "truncated", "no-match", "duplicate", "dataset", "path", "results"],
)
def test_bad_input_is_one_line_exit_2_and_nothing_written(tmp_path, capsys, case):
    output = tmp_path / "out"
    output.mkdir()
    (output / "comparison.md").write_text("old")  # an earlier run's output stays as it was
    named = None
    if case in ("colour", "unreadable", "truncated"):
        png = (EXAMPLE / "MethodB" / "example_2.png").read_bytes()
        content = {"colour": colour_map(), "unreadable": b"no png", "truncated": png[:200]}
        folder, named = bad_map_folder(tmp_path, content[case])
        # Forced kind: the bad file is found while scoring, after other images were scored.
        args = example_args(output, f"A={EXAMPLE / 'MethodA'}", f"B=rankmap:{folder}")
    elif case == "no-match":
        folder = tmp_path / "other"
        folder.mkdir()
        (folder / "cat.png").write_bytes(b"")
        args, named = example_args(output, f"A={folder}"), folder
    elif case == "duplicate":
        args = example_args(output, f"A={EXAMPLE / 'MethodA'}", f"A={EXAMPLE / 'MethodB'}")
        named = "'A' is given twice"
    elif case == "dataset":
        args, named = example_args(output, dataset="nosuch_test"), "--dataset nosuch_test"
    elif case == "path":
        args = example_args(output, f"A={tmp_path / 'nowhere'}")
        named = tmp_path / "nowhere"
    else:
        bad = tmp_path / "bad_coco_format.pth"
        bad.write_text("garbage")
        args, named = example_args(output, f"A={bad}"), bad
    code, out, err = run_main(args, capsys)
    assert code == 2, (out, err)
    lines = [ln for ln in err.splitlines() if ln.startswith("sor_compare: error:")]
    assert len(lines) == 1 and str(named) in lines[0], err
    assert "Traceback" not in err
    assert sorted(p.name for p in output.iterdir()) == ["comparison.md"]
    assert (output / "comparison.md").read_text() == "old"


def test_missing_pysodmetrics_is_a_one_line_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "py_sod_metrics", None)
    code, _, err = run_main(example_args(tmp_path / "out") + ["--sod-metrics"], capsys)
    assert code == 2 and re.search(r"error: .*pysodmetrics==1\.6\.2", err)
    assert not (tmp_path / "out").exists()


def test_usage_errors_exit_2(capsys):
    assert run_main(["--dataset", "assr_test"], capsys)[0] == 2  # no --pred / --output
    code, _, err = run_main(
        ["--dataset", "a", "--pred", "A=x", "--output", "o", "--bootstrap", "-1"], capsys
    )
    assert code == 2 and "--bootstrap" in err
