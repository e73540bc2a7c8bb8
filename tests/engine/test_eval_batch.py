"""Batched evaluation (TEST.IMS_PER_BATCH): the same metrics and predictions as one image at a
time, on the parity bundle (4 test images of 4 different sizes)."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from seqrank.cli import ConfigError
from seqrank.data import register_sor_datasets
from seqrank.engine import Trainer, build_cfg
from tests.conftest import PARITY, REPO
from tests.helpers import parity_model

BATCHES = (1, 4, 3)  # 3: a full batch and a last batch of one


@pytest.fixture(scope="module")
def evaluations(tmp_path_factory):
    """``{batch: (output folder, batch sizes seen by the model)}`` of one model."""
    cfg, model = parity_model("DATASETS.ROOT", str(PARITY / "datasets"), "TEST.EVAL_SAVE", "True")
    register_sor_datasets(cfg.DATASETS.ROOT, tuple(cfg.DATASETS.TEST))
    model.eval()
    seen = []
    model.register_forward_pre_hook(lambda module, args: seen.append(len(args[0])))
    runs = {}
    for batch in BATCHES:
        out = tmp_path_factory.mktemp(f"batch{batch}")
        run_cfg = cfg.clone()
        run_cfg.TEST.IMS_PER_BATCH = batch
        run_cfg.OUTPUT_DIR = str(out)
        seen.clear()
        Trainer.test(run_cfg, model)
        runs[batch] = (out, list(seen))
    return runs


def test_the_model_gets_batches_of_ims_per_batch(evaluations):
    assert {b: sizes for b, (_, sizes) in evaluations.items()} == {
        1: [1, 1, 1, 1],
        4: [4],
        3: [3, 1],
    }


@pytest.mark.parametrize("batch", BATCHES[1:])
def test_batched_evaluation_writes_the_same_metrics_and_predictions(evaluations, batch):
    one, _ = evaluations[1]
    out, _ = evaluations[batch]
    name = "assr_test_metrics.json"
    assert (out / name).read_bytes() == (one / name).read_bytes()
    maps = sorted(p.name for p in (one / "results" / "assr_test").iterdir())
    assert len(maps) == 4
    for map_name in maps:
        got = (out / "results" / "assr_test" / map_name).read_bytes()
        assert got == (one / "results" / "assr_test" / map_name).read_bytes(), map_name
    expected = torch.load(one / "assr_test_coco_format.pth", weights_only=True)
    results = torch.load(out / "assr_test_coco_format.pth", weights_only=True)
    assert list(results) == list(expected)
    for image, exp in expected.items():
        got = results[image]
        assert got["num"] == exp["num"] and got["masks"] == exp["masks"], image
        # A batch changes how the backbone's matrix products are blocked: the same values up
        # to float32 rounding (measured: 2e-8 objectness, 3e-7 saliency, 5e-5 px).
        for key, atol in (("scores", 1e-6), ("saliency", 1e-6), ("bboxes", 1e-3)):
            np.testing.assert_allclose(got[key], exp[key], rtol=1e-5, atol=atol, err_msg=key)


def test_ims_per_batch_below_one_is_a_one_line_error():
    with pytest.raises(ConfigError, match=r"TEST.IMS_PER_BATCH must be an integer >= 1, got 0"):
        build_cfg(str(PARITY / "config.yaml"), ["TEST.IMS_PER_BATCH", "0"])


@pytest.mark.e2e
def test_eval_only_honours_ims_per_batch(evaluations, tmp_path):
    cmd = [
        sys.executable, str(REPO / "train_net.py"), "--eval-only",
        "--config-file", str(PARITY / "config.yaml"),
        "MODEL.WEIGHTS", str(PARITY / "checkpoint.pth"), "MODEL.DEVICE", "cpu",
        "DATASETS.ROOT", str(PARITY / "datasets"), "DATALOADER.NUM_WORKERS", "0",
        "TEST.IMS_PER_BATCH", "4", "OUTPUT_DIR", str(tmp_path),
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Start inference on 1 batches" in proc.stdout + proc.stderr
    one, _ = evaluations[1]
    metrics = json.loads((tmp_path / "assr_test_metrics.json").read_text())
    assert metrics == json.loads((one / "assr_test_metrics.json").read_text())
