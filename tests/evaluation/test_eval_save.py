"""TEST.EVAL_SAVE: the original's grey rank maps,
``<OUTPUT_DIR>/results/<dataset>/<image>_count_<n>.png`` (object k of n has the grey
``uint8(255 * linspace(1.0, 0.5, n)[k])``, the most salient drawn last)."""

import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

from seqrank.evaluation import SOREvaluator
from seqrank.evaluation.results_file import decode_masks
from seqrank.utils.colormap import render_rank_map
from tests.conftest import PARITY, REPO
from tests.helpers import seqrank_cfg

# Three overlapping 4 x 6 masks in rank order, and the map computed by hand: n = 3 gives greys
# 255 * (1.0, 0.75, 0.5) = 255, 191.25 -> 191, 127.5 -> 127; on overlap the most salient wins.
MASKS = np.array(
    [
        [[0, 1, 1, 0, 0, 0], [0, 1, 1, 0, 0, 0], [0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0]],
        [[0, 0, 1, 1, 1, 0], [0, 0, 1, 1, 1, 0], [0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0]],
        [[0, 0, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1], [1, 1, 0, 0, 0, 0], [0, 0, 0, 0, 0, 1]],
    ],
    dtype=np.float32,
)
EXPECTED = np.array(
    [
        [0, 255, 255, 191, 191, 0],
        [127, 255, 255, 191, 191, 127],
        [127, 127, 0, 0, 0, 0],
        [0, 0, 0, 0, 0, 127],
    ],
    dtype=np.uint8,
)


def evaluate(tmp_path, images, eval_save=True):
    evaluator = SOREvaluator("toy_test", str(tmp_path), distributed=False, eval_save=eval_save)
    for name, masks, gts in images:
        h, w = gts.shape[1:] if len(gts) else (4, 6)
        inp = {"image_name": name, "height": h, "width": w, "masks": torch.from_numpy(gts)}
        evaluator.process([inp], [{"masks": torch.from_numpy(masks) if len(masks) else []}])
    evaluator.evaluate()
    return tmp_path / "results" / "toy_test"


def read(path):
    grey = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert grey is not None and grey.dtype == np.uint8 and grey.ndim == 2, path
    return grey


def test_maps_are_the_hand_computed_ones(tmp_path):
    six = np.zeros((6, 4, 6), np.float32)
    for k in range(6):
        six[k, :, k] = 1
    folder = evaluate(
        tmp_path,
        [
            ("three", MASKS, MASKS[:2]),
            ("six", six, six[:1]),
            ("none", np.zeros((0, 4, 6), np.float32), MASKS[:1]),
        ],
    )
    assert sorted(p.name for p in folder.iterdir()) == [
        "none_count_0.png",
        "six_count_6.png",
        "three_count_3.png",
    ]
    assert np.array_equal(read(folder / "three_count_3.png"), EXPECTED)
    # n = 6: 255 * (1, .9, .8, .7, .6, .5) truncated.
    assert read(folder / "six_count_6.png")[0].tolist() == [255, 229, 204, 178, 153, 127]
    assert np.array_equal(read(folder / "none_count_0.png"), np.zeros((4, 6), np.uint8))


def test_a_new_run_replaces_the_maps_of_an_earlier_one(tmp_path):
    folder = tmp_path / "results" / "toy_test"
    folder.mkdir(parents=True)
    cv2.imwrite(str(folder / "three_count_5.png"), np.zeros((4, 6), np.uint8))
    cv2.imwrite(str(folder / "other_count_2.png"), np.zeros((4, 6), np.uint8))
    evaluate(tmp_path, [("three", MASKS, MASKS)])
    assert sorted(p.name for p in folder.iterdir()) == ["other_count_2.png", "three_count_3.png"]


def test_nothing_is_written_without_eval_save(tmp_path):
    evaluate(tmp_path, [("three", MASKS, MASKS)], eval_save=False)
    assert not (tmp_path / "results").exists()


def test_from_cfg_reads_test_eval_save(tmp_path):
    cfg = seqrank_cfg()
    assert SOREvaluator.from_cfg(cfg, "x", str(tmp_path)).eval_save is False
    cfg.TEST.EVAL_SAVE = True
    assert SOREvaluator.from_cfg(cfg, "x", str(tmp_path)).eval_save is True


def test_rank_map_rendering_matches_the_written_map():
    assert np.array_equal(render_rank_map(MASKS, 4, 6), EXPECTED)


@pytest.mark.e2e
def test_two_evaluation_processes_write_every_map(tmp_path):
    """train_net.py --eval-only --num-gpus 2: each process writes the maps of its images; they
    are the rank maps of the results file that rank 0 writes."""
    cmd = [
        sys.executable, str(REPO / "train_net.py"), "--eval-only", "--num-gpus", "2",
        "--config-file", str(PARITY / "config.yaml"),
        "MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", str(PARITY / "checkpoint.pth"),
        "DATASETS.ROOT", str(PARITY / "datasets"), "DATASETS.TEST", "('assr_test',)",
        "INPUT.FT_SIZE_TEST", "64", "DATALOADER.NUM_WORKERS", "0",
        "TEST.EVAL_SAVE", "True", "OUTPUT_DIR", str(tmp_path),
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = torch.load(tmp_path / "assr_test_coco_format.pth", weights_only=True)
    folder = tmp_path / "results" / "assr_test"
    written = sorted(p.name for p in folder.iterdir())
    assert written == sorted(f"{n}_count_{len(r['masks'])}.png" for n, r in results.items())
    for name, record in results.items():
        masks = decode_masks(record)
        grey = read(folder / f"{name}_count_{len(masks)}.png")
        h, w = grey.shape
        assert np.array_equal(grey, render_rank_map(masks, h, w))
