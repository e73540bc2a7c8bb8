"""CLI tests of scripts/evaluation_tool.py (the seed README's evaluation command)."""

import json
import subprocess
import sys

import pytest
import torch

from seqrank.data.annotations import rasterize_annotations
from seqrank.data.datasets import load_sor_json
from seqrank.evaluation.protocols import assr_mae_image, assr_sor_image, irsr_sa_sor_image
from seqrank.evaluation.results_file import decode_masks
from tests.conftest import PARITY, REPO

# Runs the command end to end (subprocesses): left out of `make test-fast`.
pytestmark = pytest.mark.e2e


def run_tool(out, results, *extra):
    cmd = [
        sys.executable, "-m", "scripts.evaluation_tool", "--eval-only",
        "--config-file", str(PARITY / "config.yaml"),
        "DATASETS.TEST", "('assr_test',)",
        "MODEL.WEIGHTS", str(results),
        "DATASETS.ROOT", str(PARITY / "datasets"),
        "OUTPUT_DIR", str(out),
        *extra,
    ]  # fmt: skip
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)


def test_reproduces_original_tool_on_handmade_results(tmp_path):
    proc = run_tool(tmp_path, PARITY / "results_handmade.pth")
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads((tmp_path / "assr_test_metrics.json").read_text())
    expected = json.loads((PARITY / "expected/results_handmade_metrics.json").read_text())
    for key, value in expected.items():
        if not key.endswith("_count") and expected[key + "_count"] == 0:
            assert got[key] is None, key  # count-0 metrics: null instead of the original's 1.0
        else:
            assert got[key] == value, key  # bit for bit, rounded to 4 decimals as the original
    assert "sa_sor" in proc.stdout and "-0.0500" in proc.stdout
    csv_lines = (tmp_path / "assr_test_metrics.csv").read_text().splitlines()
    assert csv_lines[0] == "protocol,metric,value,images" and len(csv_lines) == 14


def test_protocol_all_writes_one_object_per_protocol(tmp_path):
    proc = run_tool(tmp_path, PARITY / "results_handmade.pth", "--protocol", "all")
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads((tmp_path / "assr_test_metrics.json").read_text())
    assert set(got) == {"seqrank", "irsr", "assr"}
    expected = json.loads((PARITY / "expected/results_handmade_metrics.json").read_text())
    count0 = {k for k in expected if not k.endswith("_count") and expected[k + "_count"] == 0}
    assert got["seqrank"] == {k: (None if k in count0 else v) for k, v in expected.items()}
    official = _official_protocols()
    for protocol in ("irsr", "assr"):
        assert got[protocol] == pytest.approx(official[protocol], rel=1e-12, abs=0), protocol
    for label in ("seqrank", "irsr", "assr"):
        assert label in proc.stdout


def _official_protocols():
    """The irsr / assr values of the handmade results, image by image with the protocol
    functions (tests/evaluation/test_protocols.py checks those on the METRICS.md cases)."""
    results = torch.load(PARITY / "results_handmade.pth", weights_only=True)
    root = PARITY / "datasets" / "assr"
    irsr, rhos, maes = [], [], []
    for record in load_sor_json(root / "assr_test.json", root / "images" / "test"):
        preds = decode_masks(results[record["image_name"]])
        _, gts = rasterize_annotations(record["annotations"], record["height"], record["width"])
        irsr.append(irsr_sa_sor_image(preds, list(gts)))
        rhos.append(assr_sor_image(preds, list(gts)))
        maes.append(assr_mae_image(preds, list(gts)))
    counted = [v for v in irsr if v is not None]
    used = [v for v in rhos if v is not None]
    assert len(counted) >= 2 and len(used) >= 2 and len(maes) == 4
    return {
        "irsr": {"sa_sor": sum(counted) / len(counted), "sa_sor_count": float(len(counted))},
        "assr": {
            "sor": (sum(used) / len(used) + 1) / 2,
            "sor_count": float(len(used)),
            "mae": sum(maes) / len(maes),
            "mae_count": 4.0,
        },
    }


def test_protocol_irsr_option_before_opts(tmp_path):
    cmd = [
        sys.executable, "-m", "scripts.evaluation_tool", "--protocol", "irsr",
        "--config-file", str(PARITY / "config.yaml"),
        "MODEL.WEIGHTS", str(PARITY / "results_handmade.pth"),
        "DATASETS.ROOT", str(PARITY / "datasets"), "OUTPUT_DIR", str(tmp_path),
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads((tmp_path / "assr_test_metrics.json").read_text())
    assert set(got) == {"seqrank", "irsr"}


def test_missing_images_count_as_empty_and_are_listed(tmp_path):
    results = torch.load(PARITY / "results_handmade.pth", weights_only=True)
    dropped = sorted(results)[0]
    del results[dropped]
    path = tmp_path / "partial.pth"
    torch.save(results, path)
    proc = run_tool(tmp_path / "out", path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    log = proc.stdout + proc.stderr
    assert "missing" in log and dropped in log


def test_bad_results_file_is_one_line_error(tmp_path):
    bad = tmp_path / "bad.pth"
    bad.write_text("garbage")
    proc = run_tool(tmp_path, bad)
    assert proc.returncode != 0
    assert "bad.pth" in proc.stderr and "Traceback" not in proc.stderr
