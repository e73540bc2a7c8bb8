"""Plain, non-repeating output (seqrank/log_hygiene.py, the warning filter) and the palette."""

import logging
import subprocess
import sys

import numpy as np
import pytest

from seqrank.log_hygiene import PURE_PYTHON_C_LINE, SetupLogFilter, strip_ansi
from seqrank.rank_render import layout_labels, rank_color, rank_color_hex


def _record(message):
    return logging.LogRecord("detectron2", logging.INFO, __file__, 1, message, (), None)


def test_setup_filter_strips_colours_drops_file_contents_and_explains_c():
    filt = SetupLogFilter()
    coloured = _record("Running with full config:\n\x1b[38;5;204mMODEL\x1b[39m:")
    assert filt.filter(coloured) and coloured.getMessage() == "Running with full config:\nMODEL:"
    assert not filt.filter(_record("Contents of args.config_file=a.yaml:\nMODEL: {}"))
    env = _record("----\ndetectron2._C     not built correctly: No module named 'x'\nPillow 1")
    assert filt.filter(env)
    assert f"detectron2._C     {PURE_PYTHON_C_LINE}\n" in env.getMessage()
    assert strip_ansi("\x1b[32mGET / 200\x1b[0m") == "GET / 200"


@pytest.mark.e2e
def test_no_future_warning_reaches_stderr(repo_root):
    code = "import seqrank.predictor, detectron2.modeling"
    result = subprocess.run(
        [sys.executable, "-W", "default", "-c", code],
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0 and "FutureWarning" not in result.stderr, result.stderr


def test_palette_keeps_rank_1_and_gives_every_rank_its_own_colour():
    assert rank_color(1) == (234, 87, 61) and rank_color_hex(1) == "#ea573d"
    colours = [rank_color(k) for k in range(1, 101)]
    assert len(set(colours)) == 100
    first = np.array(colours[:12], dtype=float)
    distance = np.linalg.norm(first[:, None] - first[None], axis=-1)
    assert distance[~np.eye(12, dtype=bool)].min() > 50  # visibly different swatches


def test_labels_sit_inside_their_object_and_never_overlap():
    height, width = 120, 160
    masks = []
    for x in (10, 30, 50, 70, 90):  # five overlapping bars: labels would collide at the centres
        mask = np.zeros((height, width), np.uint8)
        mask[40:80, x : x + 40] = 1
        masks.append(mask)
    boxes = layout_labels(masks, [f"{k} 90%" for k in range(1, 6)], height, width)
    assert [b.rank for b in boxes] == [1, 2, 3, 4, 5]
    for i, box in enumerate(boxes):
        assert 0 <= box.x1 < box.x2 <= width and 0 <= box.y1 < box.y2 <= height
        assert not any(box.overlaps(other) for other in boxes[i + 1 :])
    first = boxes[0]
    assert masks[0][(first.y1 + first.y2) // 2, (first.x1 + first.x2) // 2] == 1
