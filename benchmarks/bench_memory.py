"""Peak memory of ranking one large photo with many objects, and of the demos' outputs.

    python -m benchmarks.bench_memory [--height 3000] [--width 4000] [--objects 100]

Model: the quick-schedule config (``configs/quick_schedules/synsor_tiny.yaml``) with random
weights (seed 0) and ``MODEL.COMMON.NUM_QUERIES`` = ``--objects``. The stop rule is switched off
in this process (``meta_arch.STOP_THRESHOLD`` below every probability), so every image ranks
exactly ``--objects`` objects; nothing else of the model's computation changes. Input: a smooth
synthetic ``--width`` x ``--height`` RGB photo (a 4000 x 3000 photo by default).

Stages, one after the other in this process, each with the peak rise of the resident set (VmHWM
after a reset through ``/proc/self/clear_refs``) over the resident set at its start, and the
resident set at its start over the one before stage 1 (what earlier stages still hold):

1. ``predictor``: ``SeqRankPredictor(image)``; the result (K full-size masks) is kept;
2. ``terminal demo``: ``demo/demo.py``'s ``write_outputs`` for that result (overlay, colour map,
   K per-rank PNGs, JSON with RLE masks);
3. ``web demo``: the browser demo's ranking of an upload (``online.app``: the predictor, the
   display-size rendering, the JSON objects with RLE masks), result of stage 1 released first.

The last lines give the memory the result's masks hold and ``peak: <MiB>``, the highest resident
set of stages 1 and 2 over the one before stage 1: ranking a photo with the terminal demo.
"""

import argparse
import contextlib
import os
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

import numpy as np
import torch
from detectron2.modeling import build_model

import online.app as web
import seqrank  # noqa: F401  (registers the model)
from benchmarks.bench_inference import _release_free_memory, _status_kib
from demo import demo as demo_cli
from seqrank.engine import build_cfg
from seqrank.modeling import meta_arch
from seqrank.predictor import SeqRankPredictor

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "quick_schedules" / "synsor_tiny.yaml"


def build_predictor(objects, folder):
    """The tiny model with random weights (seed 0) and ``objects`` queries, as a predictor."""
    opts = ["MODEL.DEVICE", "cpu", "MODEL.COMMON.NUM_QUERIES", str(objects)]
    cfg = build_cfg(str(CONFIG), opts)
    torch.manual_seed(0)
    weights = os.path.join(folder, "random.pth")
    torch.save({"model": build_model(cfg).state_dict()}, weights)
    cfg.MODEL.WEIGHTS = weights
    cfg.freeze()
    return SeqRankPredictor(cfg)


def synthetic_photo(height, width):
    """H x W x 3 uint8: smooth gradients with a few discs (content only matters for PNG sizes)."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    image = np.stack([x / width, y / height, (x + y) / (width + height)], axis=-1) * 200
    for k in range(5):
        cy, cx, r = height * (k + 1) / 6, width * (5 - k) / 6, min(height, width) / (4 + k)
        image[(y - cy) ** 2 + (x - cx) ** 2 < r * r] += 40
    return np.clip(image, 0, 255).astype(np.uint8)


def _reset_peak():
    """Reset VmHWM to the current resident set; False where /proc does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


@contextlib.contextmanager
def stage(name, rows, base_kib):
    """Run the block as a stage: appends ``(name, peak rise MiB, resident at its start over
    base_kib MiB, seconds)`` to ``rows``."""
    _release_free_memory()
    reset = _reset_peak()
    start_kib = _status_kib("VmRSS")
    start = time.perf_counter()
    yield
    seconds = time.perf_counter() - start
    rise = (_status_kib("VmHWM") - start_kib) / 1024 if reset else float("nan")
    rows.append((name, rise, (start_kib - base_kib) / 1024, seconds))
    print(f"{name}: peak +{rise:.0f} MiB, {seconds:.1f} s", flush=True)


def _held_mib(result):
    return sum(np.asarray(m).nbytes for m in result["masks"]) / 2**20


def run(args):
    rows = []
    image = synthetic_photo(args.height, args.width)
    with tempfile.TemporaryDirectory() as folder, mock.patch.object(
        meta_arch, "STOP_THRESHOLD", -1.0
    ):
        predictor = build_predictor(args.objects, folder)
        predictor(image[:64, :64])  # first call's one-off allocations out of the measurement
        _release_free_memory()
        base = _status_kib("VmRSS")
        with stage("predictor", rows, base):
            result = predictor(image, "photo")
        dtypes = sorted({str(np.asarray(m).dtype) for m in result["masks"]})
        held = _held_mib(result)
        with stage("terminal demo", rows, base):
            demo_cli.write_outputs(image, result, "photo", "photo.png", folder)
        assert result["num"] == args.objects, f"{result['num']} objects ranked"
        del result
        _release_free_memory()
        ranker = web._Ranker(predictor, web.DEFAULT_MAX_SIDE, web.MAX_PIXELS)
        with stage("web demo", rows, base):
            answer, _ = ranker._rank(image)
        assert len(answer["objects"]) == args.objects
    print(f"\n{args.width} x {args.height} photo, {args.objects} objects, masks {dtypes}")
    print(f"{'stage':<16}{'held at start MiB':>18}{'peak rise MiB':>14}{'seconds':>9}")
    for name, rise, offset, seconds in rows:
        print(f"{name:<16}{offset:>18.0f}{rise:>14.0f}{seconds:>9.1f}")
    print(f"masks held by the result: {held:.0f} MiB")
    # Ranking plus the terminal demo's outputs: the highest level above the resident set
    # before the predictor call, over stages 1 and 2.
    peak = max(offset + rise for _, rise, offset, _ in rows[:2])
    print(f"peak: {peak:.0f}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--height", type=int, default=3000, help="photo height (3000)")
    parser.add_argument("--width", type=int, default=4000, help="photo width (4000)")
    parser.add_argument("--objects", type=int, default=100, help="ranked objects (100)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
