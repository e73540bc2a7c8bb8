"""The page of `make demo` (seqrank/demo_page.py) from a fixed prediction."""

import numpy as np
import pytest

from seqrank.demo_page import build_panel, is_synthetic, render_page


def _masks(height, width):
    first = np.zeros((height, width), np.uint8)
    first[10:40, 10:40] = 1
    second = np.zeros((height, width), np.uint8)
    second[60:100, 50:110] = 1
    return [first, second]


def test_panel_reports_per_image_sa_sor_of_a_perfect_prediction():
    image = np.full((128, 128, 3), 100, np.uint8)
    gt = np.stack(_masks(128, 128))
    result = {"masks": _masks(128, 128), "scores": [0.9, 0.8], "saliency": [0.9, 0.5]}
    panel = build_panel("img", image, gt, result)
    assert panel["sa_sor"] == pytest.approx(1.0) and panel["num_gt"] == panel["num_pred"] == 2
    swapped = build_panel("img", image, gt, {**result, "masks": result["masks"][::-1]})
    assert swapped["sa_sor"] == pytest.approx(-1.0)


def test_page_warns_only_for_synthetic_training():
    image = np.full((64, 64, 3), 100, np.uint8)
    result = {"masks": _masks(64, 64)[:1], "scores": [0.9], "saliency": [0.9]}
    panel = build_panel("a", image, np.stack(_masks(64, 64)[:1]), result)
    info = {"checkpoint": "m.pth", "config": "c.yaml", "test_dataset": "x_test"}
    synthetic = render_page([panel], {"sa_sor": 0.5}, {**info, "train_datasets": ["synsor_train"]})
    real = render_page([panel], {"sa_sor": 0.5}, {**info, "train_datasets": ["assr_train"]})
    assert "not meaningful" in synthetic and "not meaningful" not in real
    assert is_synthetic(["synsor_global_train"]) and not is_synthetic([])
