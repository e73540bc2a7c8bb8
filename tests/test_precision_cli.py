"""``--precision`` on the terminal demo, the browser demo and train_net.py reaches
``TEST.PRECISION`` and the model (issue 13, item 1)."""

import logging
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import online.app as web_app
import train_net
from demo import demo as terminal_demo
from seqrank.predictor import build_predictor_from_args
from tests.conftest import PARITY, REPO

CONFIG = str(PARITY / "config.yaml")
WEIGHTS = ["MODEL.WEIGHTS", str(PARITY / "checkpoint.pth"), "MODEL.DEVICE", "cpu"]
FALLBACK = "TEST.PRECISION fp16 needs a GPU: inference runs in fp32"


@pytest.mark.parametrize(
    "parse",
    [
        lambda argv: terminal_demo.get_parser().parse_args(["--input", "x.jpg", *argv]),
        lambda argv: web_app.get_parser().parse_args(argv),
        lambda argv: train_net.build_parser().parse_args(["--eval-only", *argv]),
    ],
    ids=["demo", "online", "train_net"],
)
def test_precision_flag_is_parsed_and_checked(parse, capsys):
    assert parse([]).precision is None
    assert parse(["--precision", "bf16"]).precision == "bf16"
    with pytest.raises(SystemExit) as exc:
        parse(["--precision", "fp8"])
    assert exc.value.code == 2 and "invalid choice: 'fp8'" in capsys.readouterr().err


def test_predictor_precision_reaches_cfg_and_model():
    predictor = build_predictor_from_args(CONFIG, WEIGHTS, False, precision="bf16")
    assert predictor.cfg.TEST.PRECISION == "bf16" and predictor.model.precision == "bf16"
    default = build_predictor_from_args(CONFIG, WEIGHTS, False)
    assert default.cfg.TEST.PRECISION == "fp32" and default.model.precision == "fp32"


def test_terminal_demo_ranks_with_the_precision_asked_for(tmp_path, caplog):
    image = tmp_path / "in" / "photo.png"
    image.parent.mkdir()
    rgb = np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(image)
    argv = ["--input", str(image), "--output", str(tmp_path / "out"), "--precision", "fp16"]
    with caplog.at_level(logging.WARNING):
        status = terminal_demo.main(argv + ["--config-file", CONFIG, "--opts", *WEIGHTS])
    assert status == 0 and (tmp_path / "out").is_dir()
    assert sum(FALLBACK in r.getMessage() for r in caplog.records) == 1


@pytest.mark.e2e
def test_eval_only_with_precision(tmp_path):
    base = [sys.executable, "train_net.py", "--eval-only", "--config-file", CONFIG]
    opts = [*WEIGHTS, "DATASETS.ROOT", str(PARITY / "datasets"), "OUTPUT_DIR", str(tmp_path)]
    proc = subprocess.run(
        base + ["--precision", "fp16"] + opts,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (proc.stdout + proc.stderr).count(FALLBACK) == 1
    assert "PRECISION: fp16" in (tmp_path / "config.yaml").read_text()
    assert (tmp_path / "assr_test_metrics.json").is_file()
    bad = subprocess.run(
        base + opts + ["TEST.PRECISION", "fp8"], cwd=REPO, capture_output=True, text=True
    )
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().splitlines()[-1] == (
        "train_net.py: error: TEST.PRECISION must be one of fp32, bf16, fp16, got 'fp8'"
    )
