"""Ranking diagnostics (seqrank.evaluation.diagnostics) and the rank_diagnostics CLI."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from seqrank.data.synthetic import make_synthetic_sor
from seqrank.evaluation.diagnostics import aggregate_diagnostics, analyze_image, teacher_forced
from tests.conftest import REPO


def _masks(height, width, boxes):
    """K x H x W {0, 1} float maps, one filled box (x0, y0, x1, y1) each."""
    out = np.zeros((len(boxes), height, width), dtype=np.float32)
    for k, (x0, y0, x1, y1) in enumerate(boxes):
        out[k, y0:y1, x0:x1] = 1
    return out


A, B, C, X = (0, 0, 4, 4), (4, 0, 8, 4), (0, 4, 4, 8), (4, 4, 8, 8)


def test_analyze_image_matches_each_pick_to_the_overlapping_gt_object():
    gts = _masks(8, 8, [A, B, C])
    record = analyze_image(_masks(8, 8, [A, C, X, A]), gts, [0.9, 0.5, 0.2, 0.1])
    assert record == {
        "n_gt": 3,
        "n_pred": 4,
        "match": [0, 2, -1, 0],
        "saliency": [0.9, 0.5, 0.2, 0.1],
    }
    # A pick overlapping a GT object with IoU < 0.5 is no match.
    half = _masks(8, 8, [(0, 0, 4, 1)])
    assert analyze_image(half, gts)["match"] == [-1]
    assert analyze_image(np.zeros((0, 8, 8)), gts)["match"] == []


def test_aggregate_counts_steps_prefixes_confusion_and_stops():
    records = [
        {"n_gt": 3, "n_pred": 3, "match": [0, 1, 2], "saliency": [0.9, 0.6, 0.3]},
        {"n_gt": 3, "n_pred": 2, "match": [0, 2], "saliency": [0.8, 0.4]},
        {"n_gt": 2, "n_pred": 4, "match": [1, 1, -1, 0], "saliency": [0.7, 0.2, 0.1, 0.1]},
        {"n_gt": 0, "n_pred": 1, "match": [-1], "saliency": [0.5]},  # skipped: no GT
    ]
    diag = aggregate_diagnostics(records, max_k=3)
    assert diag["images"] == 3
    top = {k: (v["value"], v["count"]) for k, v in diag["topk_by_step"].items()}
    assert top == {1: (2 / 3, 3), 2: (2 / 3, 3), 3: (1 / 2, 2)}
    cond = {k: (v["value"], v["count"]) for k, v in diag["conditional_by_step"].items()}
    # Step 2 counts images whose pick 1 was right (2 of them), step 3 those with picks 1-2 right.
    assert cond == {1: (2 / 3, 3), 2: (1 / 2, 2), 3: (1.0, 1)}
    assert diag["saliency_by_step"][2]["value"] == pytest.approx((0.6 + 0.4 + 0.2) / 3)
    assert diag["confusion"] == [
        [2, 1, 0, 0],
        [0, 2, 1, 0],
        [0, 0, 1, 1],
    ]
    assert diag["stop"] == {"early": 1, "exact": 1, "late": 1, "histogram": {-1: 1, 0: 1, 2: 1}}
    assert "teacher_forced_by_step" not in diag


class _ScriptedRanker(torch.nn.Module):
    """A ranking module that scores query ``plan[r]`` highest once r queries are ranked."""

    def __init__(self, plan, num_queries, stop_logit=-10.0):
        super().__init__()
        self.plan, self.num_queries, self.stop_logit = plan, num_queries, stop_logit

    def forward(self, q, z, qpe, zpe, q_vis):
        ranked = int((q_vis > 0.5).sum())
        logits = torch.zeros(1, self.num_queries, 1)
        if ranked < len(self.plan):
            logits[0, self.plan[ranked], 0] = 5.0
        else:
            logits.fill_(self.stop_logit)
        return logits


class _StubModel:
    exclude_ranked = False

    def __init__(self, plan, num_queries=4):
        self.gaze_shift = _ScriptedRanker(plan, num_queries)


def _encoded(mask_logits):
    q = torch.zeros(1, mask_logits.shape[0], 2)
    z = torch.zeros(1, 3, 2)
    out = {"masks": mask_logits[None], "scores": torch.full((1, mask_logits.shape[0], 1), 3.0)}
    return q, q, z, z, out


def test_teacher_forced_gives_the_true_prefix_and_checks_the_next_pick():
    gts = torch.from_numpy(_masks(8, 8, [A, B, C]))
    # Query 0 segments C, query 1 nothing, query 2 A, query 3 B: GT order A, B, C = q2, q3, q0.
    logits = torch.from_numpy(_masks(8, 8, [C, (0, 0, 0, 0), A, B]) * 20 - 10)
    inputs = [{"image": torch.zeros(3, 8, 8), "masks": gts}]
    right = teacher_forced(_StubModel([2, 3, 0]), inputs, _encoded(logits))
    assert right == [{"correct": [True, True, True], "stops": True}]
    wrong = teacher_forced(_StubModel([2, 0, 3, 1]), inputs, _encoded(logits))
    # Step 2 picks q0 (= C) instead of q3 (= B); step 3 is asked with the true prefix A, B.
    assert wrong == [{"correct": [True, False, False], "stops": False}]
    # A GT object without a query ends the teacher-forced steps before it.
    no_b = torch.from_numpy(_masks(8, 8, [C, (0, 0, 0, 0), A, (0, 0, 0, 0)]) * 20 - 10)
    partial = teacher_forced(_StubModel([2, 3, 0]), inputs, _encoded(no_b))
    assert partial == [{"correct": [True], "stops": None}]
    diag = aggregate_diagnostics(
        [{"n_gt": 3, "n_pred": 0, "match": [], "saliency": []}] * 2, 3, right + wrong
    )
    assert diag["teacher_forced_by_step"][2] == {"value": 0.5, "count": 2}
    assert diag["teacher_forced_stop"] == {"value": 0.5, "count": 2}


@pytest.mark.e2e
def test_cli_writes_tables_json_and_heat_map(tmp_path):
    make_synthetic_sor(
        tmp_path, name="tiny", num_train=1, num_test=3, height=64, width=64, progress=False
    )
    out = tmp_path / "diag"
    cmd = [
        sys.executable, "-m", "scripts.rank_diagnostics",
        "--config-file", "configs/quick_schedules/synsor_tiny.yaml",
        "--output", str(out), "--max-k", "4", "--num-images", "2",
        "MODEL.DEVICE", "cpu", "DATASETS.ROOT", str(tmp_path), "TEST.IMS_PER_BATCH", "4",
        "DATASETS.TEST", "('tiny_test',)", "INPUT.FT_SIZE_TEST", "64",
        "OUTPUT_DIR", str(tmp_path / "o"),
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "teacher-forced" in proc.stdout and "pick \\ GT rank" in proc.stdout
    diag = json.loads((out / "rank_diagnostics.json").read_text())
    # --num-images counts images, not batches: 2 of the first batch of 3.
    assert diag["images"] == 2 and diag["max_k"] == 4
    assert len(diag["confusion"]) == 4 and all(len(row) == 5 for row in diag["confusion"])
    assert (out / "confusion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "confusion.csv").read_text().startswith("pick,gt_rank_1")
    bad = subprocess.run(
        [sys.executable, "-m", "scripts.rank_diagnostics", "--config-file", "configs/none.yaml"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 1
    assert bad.stderr.strip().splitlines()[-1].startswith("rank_diagnostics: error:")
