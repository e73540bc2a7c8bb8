"""Rank every frame of a video (or a webcam) for the terminal demo (``demo.py --video-input`` /
``--webcam``).

For a video ``clip.mp4`` and an output folder ``DIR`` it writes ``DIR/clip_ranked.mp4`` (each
frame drawn as the image demo's overlay, same palette and labels) and ``DIR/clip.jsonl`` (one JSON
line per frame: ``frame``, ``ranks``, ``bboxes``, ``scores``, ``saliency``, ``masks`` as COCO RLE
with str counts). Both appear complete or not at all (written under temporary names, renamed at
the end).
"""

import logging
import os
import time

import cv2
from tqdm import tqdm

from .cli import SeqRankUserError
from .utils.atomic_io import json_bytes
from .utils.visualize import ranked_objects, render_overlay

__all__ = ["VideoError", "check_video", "frame_record", "rank_video", "rank_webcam"]

logger = logging.getLogger(__name__)

DEFAULT_FPS = 25.0
WINDOW = "SeqRank (Esc to quit)"


class VideoError(SeqRankUserError):
    """A video or camera that cannot be read, or an output that cannot be written."""


def frame_record(index, result):
    """The JSON line of frame ``index`` (0-based)."""
    objects = ranked_objects(result)
    return {
        "frame": index,
        "ranks": [o["rank"] for o in objects],
        "bboxes": [o["bbox"] for o in objects],
        "scores": [o["objectness"] for o in objects],
        "saliency": [o["saliency"] for o in objects],
        "masks": [o["mask"] for o in objects],
    }


def _open_video(path):
    if not os.path.isfile(path):
        raise VideoError(f"{path}: video file not found")
    capture = cv2.VideoCapture(path)
    ok, frame = capture.read() if capture.isOpened() else (False, None)
    if not ok or frame is None:
        capture.release()
        raise VideoError(f"{path}: not a readable video (OpenCV cannot decode a frame of it)")
    return capture, frame


def check_video(path):
    """Raise :class:`VideoError` unless ``path`` is a video OpenCV can decode a frame of."""
    capture, _ = _open_video(path)
    capture.release()


def _frames(capture, first):
    frame = first
    while frame is not None:
        yield frame
        ok, frame = capture.read()
        if not ok:
            frame = None


def rank_video(predictor, path, output_dir):
    """Rank every frame of the video ``path``; returns ``(ranked video, jsonl, frame count)``.

    Raises:
        VideoError: the video cannot be read or the outputs cannot be written.
    """
    capture, first = _open_video(path)
    stem = os.path.splitext(os.path.basename(path))[0] or "video"
    os.makedirs(output_dir, exist_ok=True)
    video_out = os.path.join(output_dir, f"{stem}_ranked.mp4")
    jsonl_out = os.path.join(output_dir, f"{stem}.jsonl")
    fps = capture.get(cv2.CAP_PROP_FPS) or DEFAULT_FPS
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    tmp_video = os.path.join(output_dir, f".{stem}_ranked.tmp.mp4")
    tmp_jsonl = jsonl_out + ".tmp"
    height, width = first.shape[:2]
    writer = cv2.VideoWriter(tmp_video, cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    try:
        if not writer.isOpened():
            raise VideoError(f"{video_out}: cannot be written (no mp4v encoder in OpenCV?)")
        count = _rank_frames(predictor, _frames(capture, first), writer, tmp_jsonl, total, stem)
        writer.release()
        os.replace(tmp_video, video_out)
        os.replace(tmp_jsonl, jsonl_out)
    finally:
        writer.release()
        capture.release()
        for leftover in (tmp_video, tmp_jsonl):
            if os.path.exists(leftover):
                os.remove(leftover)
    return video_out, jsonl_out, count


def _rank_frames(predictor, frames, writer, jsonl_path, total, name, show=False):
    start, count = time.perf_counter(), 0
    with open(jsonl_path, "wb") as lines:
        for frame_bgr in tqdm(frames, total=total, desc=name, unit="frame"):
            rgb = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB)
            result = predictor(rgb, count)
            drawn = cv2.cvtColor(render_overlay(rgb, result), cv2.COLOR_RGB2BGR)
            if writer is not None:
                writer.write(drawn)
            lines.write(json_bytes(frame_record(count, result), newline=True))
            count += 1
            if show and not _show(drawn):
                break
    elapsed = max(time.perf_counter() - start, 1e-9)
    logger.info(
        "%s: %d frames ranked in %.1f s (%.2f frames/s)", name, count, elapsed, count / elapsed
    )
    return count


def _show(frame_bgr):
    """Show a frame; False once the user pressed Esc."""
    try:
        cv2.imshow(WINDOW, frame_bgr)
        return cv2.waitKey(1) != 27
    except cv2.error as exc:
        raise VideoError(f"--webcam: cannot open a window to show the frames ({exc.msg})") from None


def rank_webcam(predictor, output_dir, camera=0):
    """Rank the frames of camera ``camera`` live in a window until Esc; the per-frame records go
    to ``output_dir/webcam.jsonl``. Returns the frame count.

    Raises:
        VideoError: there is no camera (or it gives no frame), or no display for the window.
    """
    capture = cv2.VideoCapture(camera)
    ok, first = capture.read() if capture.isOpened() else (False, None)
    if not ok or first is None:
        capture.release()
        raise VideoError(
            f"--webcam: no camera found (OpenCV cannot open camera {camera} or read a frame "
            "from it); use --video-input for a video file"
        )
    os.makedirs(output_dir, exist_ok=True)
    try:
        jsonl = os.path.join(output_dir, "webcam.jsonl")
        return _rank_frames(predictor, _frames(capture, first), None, jsonl, None, "webcam", True)
    finally:
        capture.release()
        cv2.destroyAllWindows()
