"""Protocol ``seqrank`` on the parity bundle's results files against the original tool's JSON."""

import json

import cv2
import numpy as np
import pytest
import torch
from pycocotools import mask as mask_util

from seqrank.evaluation.metrics import METRIC_NAMES, aggregate, image_metrics

RESULTS = [
    ("results_handmade.pth", "expected/results_handmade_metrics.json"),
    ("expected/assr_test_coco_format.pth", "expected/assr_test_metrics.json"),
]


def rasterise_gts(record):
    """H x W float maps of the salient annotations, most salient (highest category_id) first."""
    anns = [a for a in record["annotations"] if a["category_id"] > 0]
    anns = sorted(anns, key=lambda a: -a["category_id"])  # stable on equal ranks
    maps = []
    for ann in anns:
        m = np.zeros((record["height"], record["width"]), dtype=np.float32)
        polys = [np.asarray(p, dtype=np.int32).reshape(-1, 2) for p in ann["segmentation"]]
        cv2.fillPoly(m, polys, 1)
        maps.append(m)
    return maps


@pytest.mark.parametrize("results_file, expected_file", RESULTS)
def test_results_file_metrics_match_original(parity_dir, results_file, expected_file):
    records = json.loads((parity_dir / "datasets/assr/assr_test.json").read_text())["data"]
    results = torch.load(parity_dir / results_file, weights_only=False)
    per_image = []
    for record in records:
        rles = results.get(record["image_name"], {}).get("masks", [])
        preds = [mask_util.decode(rle) > 0.5 for rle in rles]
        per_image.append(image_metrics(preds, rasterise_gts(record)))
    got = aggregate(per_image, faithful_count0=True)
    expected = json.loads((parity_dir / expected_file).read_text())
    assert list(got) == list(expected)
    for name in METRIC_NAMES:
        assert got[f"{name}_count"] == expected[f"{name}_count"], name
        assert got[name] == pytest.approx(expected[name], abs=1e-3), name
