"""demo.py --video-input / --webcam (seqrank/video.py) with a short OpenCV clip of moving shapes."""

import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from seqrank.video import VideoError, rank_video, rank_webcam
from tests.helpers import write_tiny_checkpoint

FRAMES, HEIGHT, WIDTH = 6, 96, 128


def _write_clip(path):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (WIDTH, HEIGHT))
    assert writer.isOpened()
    for t in range(FRAMES):
        frame = np.full((HEIGHT, WIDTH, 3), 60, np.uint8)
        cv2.circle(frame, (20 + 12 * t, 40), 14, (40, 80, 230), -1)
        cv2.rectangle(frame, (90 - 5 * t, 55), (115 - 5 * t, 85), (230, 200, 40), -1)
        writer.write(frame)
    writer.release()
    return path


def _count_frames(path):
    capture = cv2.VideoCapture(str(path))
    count, size = 0, None
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        count, size = count + 1, frame.shape[:2]
    capture.release()
    return count, size


class _TwoObjects:
    def __call__(self, image_rgb, image_name=0):
        height, width = image_rgb.shape[:2]
        left = np.zeros((height, width), np.uint8)
        left[:, : width // 2] = 1
        right = 1 - left
        return {
            "masks": [left, right],
            "bboxes": [[0, 0, width / 2, height], [width / 2, 0, width, height]],
            "scores": [0.9, 0.6],
            "saliency": [0.8, 0.4],
            "num": 2,
        }


def test_rank_video_writes_one_frame_and_one_line_per_frame(tmp_path, caplog):
    caplog.set_level("INFO")
    clip = _write_clip(tmp_path / "clip.mp4")
    video, jsonl, count = rank_video(_TwoObjects(), str(clip), str(tmp_path / "out"))
    assert count == FRAMES and os.path.basename(video) == "clip_ranked.mp4"
    assert _count_frames(video) == (FRAMES, (HEIGHT, WIDTH))
    lines = [json.loads(line) for line in open(jsonl)]
    assert [line["frame"] for line in lines] == list(range(FRAMES))
    assert lines[0]["ranks"] == [1, 2] and lines[0]["masks"][0]["size"] == [HEIGHT, WIDTH]
    assert "frames/s" in caplog.text
    assert sorted(os.listdir(tmp_path / "out")) == ["clip.jsonl", "clip_ranked.mp4"]


def test_unreadable_video_is_one_error(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_text("not a video\n")
    with pytest.raises(VideoError, match="bad.mp4: not a readable video"):
        rank_video(_TwoObjects(), str(bad), str(tmp_path / "out"))
    with pytest.raises(VideoError, match="not found"):
        rank_video(_TwoObjects(), str(tmp_path / "absent.mp4"), str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_webcam_without_camera_says_so(tmp_path, monkeypatch):
    class NoCamera:
        def __init__(self, index):
            pass

        def isOpened(self):
            return False

        def release(self):
            pass

    monkeypatch.setattr(cv2, "VideoCapture", NoCamera)
    with pytest.raises(VideoError, match="--webcam: no camera found"):
        rank_webcam(_TwoObjects(), str(tmp_path))


@pytest.mark.e2e
def test_demo_video_cli(repo_root, tmp_path):
    checkpoint = write_tiny_checkpoint(tmp_path / "model" / "model_final.pth", sidecar=True)
    clip = _write_clip(tmp_path / "clip.mp4")
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00" * 100)
    env = {k: v for k, v in os.environ.items() if k != "SEQRANK_CONFIG"}

    def demo(*args):
        command = [sys.executable, "demo.py", *args, "--output", str(tmp_path / "out")]
        command += ["--opts", "MODEL.WEIGHTS", str(checkpoint), "MODEL.DEVICE", "cpu"]
        return subprocess.run(
            command, cwd=repo_root / "demo", capture_output=True, text=True, timeout=300, env=env
        )

    result = demo("--video-input", str(clip))
    assert result.returncode == 0, result.stderr[-2000:]
    assert _count_frames(tmp_path / "out" / "clip_ranked.mp4") == (FRAMES, (HEIGHT, WIDTH))
    assert len((tmp_path / "out" / "clip.jsonl").read_text().splitlines()) == FRAMES
    assert "frames/s" in result.stderr and "FutureWarning" not in result.stderr

    broken = demo("--video-input", str(bad))
    assert broken.returncode == 1
    errors = [line for line in broken.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and "broken.mp4: not a readable video" in errors[0]
    assert "Traceback" not in broken.stderr
