"""The seed README's inference command, typed verbatim, with a Swin-L checkpoint of the released
layout (random weights) on CPU."""

import json
import os
import subprocess
import sys

import pytest
import torch
from detectron2.modeling import META_ARCH_REGISTRY

import seqrank  # noqa: F401
from seqrank.engine import build_cfg
from tests.conftest import PARITY, REPO

# Runs the command end to end (subprocesses): left out of `make test-fast`.
pytestmark = pytest.mark.e2e

VERBATIM = """python train_net.py \\
   --eval-only \\
   --num-gpu 1 \\
   --config-file configs/swinL.yaml \\
   MODEL.WEIGHTS seqrank_assr_swinL_ckp.pth \\
   DATASETS.TEST "('assr_test',)" \\
   OUTPUT_DIR output/assr_inference/"""


def _workspace(tmp_path):
    """A directory laid out like the repository after the README's data and download steps."""
    os.symlink(REPO / "train_net.py", tmp_path / "train_net.py")
    os.symlink(REPO / "configs", tmp_path / "configs")
    assr = tmp_path / "assets" / "datasets" / "assr"
    (assr / "images" / "test").mkdir(parents=True)
    records = json.loads((PARITY / "datasets/assr/assr_test.json").read_text())
    records["data"] = records["data"][2:3]  # one small image keeps Swin-L on CPU affordable
    (assr / "assr_test.json").write_text(json.dumps(records))
    name = records["data"][0]["image_name"]
    os.symlink(
        PARITY / "datasets/assr/images/test" / f"{name}.jpg", assr / "images/test" / f"{name}.jpg"
    )
    cfg = build_cfg(str(REPO / "configs/swinL.yaml"), ["MODEL.DEVICE", "cpu"])
    torch.manual_seed(0)
    model = META_ARCH_REGISTRY.get("SeqRank")(cfg)
    torch.save(
        {"model": model.state_dict(), "iteration": 29999}, tmp_path / "seqrank_assr_swinL_ckp.pth"
    )
    return name


def test_inference_command_runs_verbatim_on_cpu(tmp_path):
    name = _workspace(tmp_path)
    env = dict(os.environ, PYTHONPATH=str(REPO), CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run(
        VERBATIM.replace("python ", f"{sys.executable} ", 1).replace("\\\n", " "),
        shell=True, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    assert "MODEL.DEVICE=cpu" in log
    out = tmp_path / "output" / "assr_inference"
    results = torch.load(out / "assr_test_coco_format.pth", weights_only=True)
    assert list(results) == [name]
    assert json.loads((out / "assr_test_metrics.json").read_text())["mae_count"] == 1.0
