"""TEST.METRICS_OF_INTEREST selects and orders what SOREvaluator returns, logs and writes (the
``train_net.py --eval-only`` path), as the original's ``Metrics(cfg.TEST.METRICS_OF_INTEREST)``."""

import json
import logging

import numpy as np
import torch

from seqrank.evaluation import SOREvaluator
from seqrank.evaluation.metrics import METRIC_NAMES, select_metrics
from tests.helpers import seqrank_cfg


def _strip(cols):
    mask = np.zeros((1, 20), np.float32)
    mask[0, cols] = 1
    return mask


def _run(evaluator):
    a, b, c = _strip(slice(0, 5)), _strip(slice(5, 10)), _strip(slice(10, 15))
    evaluator.process(
        [{"image_name": "t2", "masks": torch.from_numpy(np.stack([a, b, c]))}],
        [{"image_name": "t2", "masks": [c, b, a]}],
    )
    return evaluator.evaluate()


def test_select_metrics_keeps_known_names_in_order(caplog):
    with caplog.at_level(logging.WARNING):
        assert select_metrics(["top2", "sor", "nope", "top2", "mae"]) == ("top2", "sor", "mae")
    assert "nope" in caplog.text
    assert select_metrics(None) == METRIC_NAMES


def test_evaluator_from_cfg_reports_the_metrics_of_interest(tmp_path):
    cfg = seqrank_cfg()
    cfg.TEST.METRICS_OF_INTEREST = ["sor", "top2", "sa_sor"]
    cfg.OUTPUT_DIR = str(tmp_path)
    evaluator = SOREvaluator.from_cfg(cfg, "strips")
    evaluator.distributed = False
    got = _run(evaluator)
    # Case T2 of METRICS.md: preds [C, B, A] for gts [A, B, C].
    assert list(got.items()) == [
        ("sor", 0.0),
        ("sor_count", 1.0),
        ("top2", 1.0),
        ("top2_count", 1.0),
        ("sa_sor", -1.0),
        ("sa_sor_count", 1.0),
    ]
    written = json.loads((tmp_path / "strips_metrics.json").read_text())
    assert list(written) == list(got)
    assert (tmp_path / "strips_coco_format.pth").is_file()  # the results file is unchanged


def test_default_config_reports_mae_only_as_the_original(tmp_path):
    evaluator = SOREvaluator.from_cfg(seqrank_cfg(), "strips", output_dir=str(tmp_path))
    evaluator.distributed = False
    assert list(_run(evaluator)) == ["mae", "mae_count"]
