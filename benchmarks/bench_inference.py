"""Inference throughput of SeqRank: the optimised path against the straightforward eager path.

Baseline: ``model.set_fast_inference(False)`` under ``torch.no_grad``: the original's explicit
attention maths and its ranking loop (``tests/reference/ranking.py``: every image of a batch
steps until all have stopped, each selected mask upsampled on its own). "one-by-one" feeds the
same images one at a time to that path. Project: ``model.set_fast_inference(True)`` (the
default): fused SDPA attention, ``torch.inference_mode``, stopped images dropped from the ranking
steps, per-block token projections computed once per image, one mask upsampling per image.

Settings: the tiny parity model (shared/reference/parity_fpn, its checkpoint, its 4 test images
at their original sizes) at input 200 and 384; Swin-L ``configs/swinL_correct.yaml`` with random
weights at 384 on random 480 x 640 images (``--full`` adds 800, which is very slow on a CPU).
Batch 1 runs the images one per call, batch 4 in one call. Modes alternate within each
repetition; times are medians. Peak memory is the largest rise of the resident set (VmHWM after
a reset) during a forward. Every setting asserts that project and baseline agree within the
parity tolerances (same number of objects, mask IoU >= 0.99, scores / saliency within 1e-3,
boxes within 0.5 px).

Usage: ``python -m benchmarks.bench_inference [--full] [--only tiny|swinL] [--sizes 200 384 800]
[--reps 5] [--threads 1]``. The last line is ``ratio: <project images/s / baseline images/s>`` for
the tiny model at 200: the project path with batch 4 against the eager path one image at a time
(the issue's baseline); the batched eager loop is reported beside it. When ``--only`` /
``--sizes`` leave that setting out, the ratio is the first setting's, project vs baseline.
"""

import argparse
import contextlib
import ctypes
import functools
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from detectron2.modeling import build_model

import seqrank  # noqa: F401  (registers the model)
from seqrank.checkpoint import SeqRankCheckpointer
from seqrank.data.datasets import load_sor_json
from seqrank.data.mapper import SORDatasetMapper
from seqrank.engine import build_cfg
from tests.reference.ranking import run_reference

REPO = Path(__file__).resolve().parents[1]
PARITY = Path(os.environ.get("SEQRANK_SHARED", REPO.parent / "shared")) / "reference" / "parity_fpn"
HEADLINE = ("tiny", 200, 4)
MODES = {
    # name: (fast_inference, fused_attention, cache_tokens)
    "baseline": (False, False, False),
    "project": (True, True, True),
}
ABLATION = {
    "project, no SDPA": (True, False, True),
    "project, no token cache": (True, True, False),
}


# ---------------------------------------------------------------------------- models and inputs


def tiny_model(size, device="cpu"):
    assets = PARITY
    cfg = build_cfg(
        str(assets / "config.yaml"),
        ["MODEL.DEVICE", device, "INPUT.FT_SIZE_TEST", str(size)],
    )
    model = build_model(cfg).eval()
    SeqRankCheckpointer(model).load(str(assets / "checkpoint.pth"))
    records = load_sor_json(
        str(assets / "datasets" / "assr" / "assr_test.json"),
        str(assets / "datasets" / "assr" / "images" / "test"),
    )
    mapper = SORDatasetMapper(cfg, is_train=False)
    return model, [mapper(r) for r in records]


def swin_model(size, count, device="cpu"):
    cfg = build_cfg(
        str(REPO / "configs" / "swinL_correct.yaml"),
        ["MODEL.DEVICE", device, "MODEL.WEIGHTS", "", "INPUT.FT_SIZE_TEST", str(size)],
    )
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    gen = torch.Generator().manual_seed(1)
    images = [
        {
            "image": torch.rand(3, size, size, generator=gen) * 255,
            "height": 480,
            "width": 640,
            "image_name": f"random_{i}",
        }
        for i in range(count)
    ]
    return model, images


# ---------------------------------------------------------------------------- measurement


def _status_kib(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def _release_free_memory():
    """Return the C heap's free pages to the OS, so that a later run's peak is its own."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


@contextlib.contextmanager
def peak_rss(record):
    """Append to ``record`` the peak rise of the resident set (MiB) inside the block."""
    _release_free_memory()
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        before = _status_kib("VmRSS")
    except OSError:
        before = None
    yield
    if before is not None:
        record.append((_status_kib("VmHWM") - before) / 1024)


def set_mode(model, mode):
    fast, fused, cache = mode
    model.set_fast_inference(fast, fused_attention=fused, cache_tokens=cache)


def run_once(model, images, batch):
    # The baseline (every switch off) runs the original's ranking loop, a test oracle.
    call = model if model.fast_inference else functools.partial(run_reference, model)
    with torch.no_grad():
        if batch == 1:
            return [call([x])[0] for x in images]
        return call(images)


def measure(model, images, batch, modes, reps, warmup):
    """Median seconds, peak MiB and last outputs per mode (modes alternate every repetition)."""
    times = {m: [] for m in modes}
    memory = {m: [] for m in modes}
    outputs = {}
    names = list(modes)
    if warmup:
        for name in names:
            set_mode(model, modes[name][0])
            run_once(model, images, modes[name][1])
    for rep in range(reps):
        for name in names if rep % 2 == 0 else names[::-1]:
            mode, mode_batch = modes[name]
            set_mode(model, mode)
            with peak_rss(memory[name]):
                start = time.perf_counter()
                outputs[name] = run_once(model, images, mode_batch)
                times[name].append(time.perf_counter() - start)
    set_mode(model, MODES["project"])
    return (
        {m: statistics.median(t) for m, t in times.items()},
        {m: max(v) if v else float("nan") for m, v in memory.items()},
        outputs,
    )


def compare(reference, candidate):
    """Max deviations of ``candidate`` from ``reference``; asserts the parity tolerances."""
    worst = {"mask_iou": 1.0, "score": 0.0, "box": 0.0}
    for ref, got in zip(reference, candidate):
        assert ref["num"] == got["num"], (ref["num"], got["num"])
        for a, b in zip(ref["masks"], got["masks"]):
            a, b = a > 0.5, b > 0.5
            union = np.logical_or(a, b).sum()
            iou = 1.0 if union == 0 else np.logical_and(a, b).sum() / union
            worst["mask_iou"] = min(worst["mask_iou"], float(iou))
        if ref["num"]:
            diffs = np.abs(
                np.subtract(ref["scores"] + ref["saliency"], got["scores"] + got["saliency"])
            )
            boxes = np.abs(np.subtract(ref["bboxes"], got["bboxes"]))
            worst["score"] = max(worst["score"], float(diffs.max()))
            worst["box"] = max(worst["box"], float(boxes.max()))
    assert worst["mask_iou"] >= 0.99 and worst["score"] <= 1e-3 and worst["box"] <= 0.5, worst
    return worst


# ---------------------------------------------------------------------------- driver


def settings(full):
    out = [("tiny", 200, 1), ("tiny", 200, 4), ("tiny", 384, 1), ("tiny", 384, 4)]
    out += [("swinL", 384, 1), ("swinL", 384, 4)]
    if full:
        out += [("swinL", 800, 1), ("swinL", 800, 4)]
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--full", action="store_true", help="also Swin-L at 800 (very slow)")
    parser.add_argument("--reps", type=int, default=5, help="repetitions (tiny model)")
    parser.add_argument("--swin-reps", type=int, default=1, help="repetitions (Swin-L)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--ablation", action="store_true", help="also time each switch off")
    parser.add_argument("--only", choices=["tiny", "swinL"], help="run one model only")
    parser.add_argument(
        "--sizes", type=int, nargs="+", metavar="PX", help="run these input sizes only"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} intra-op thread(s), CPU")

    rows, headline, cache = [], None, {}
    for name, size, batch in settings(args.full):
        if (args.only and name != args.only) or (args.sizes and size not in args.sizes):
            continue
        if (name, size) not in cache:
            cache.clear()
            cache[(name, size)] = tiny_model(size) if name == "tiny" else swin_model(size, 4)
        model, images = cache[(name, size)]
        tiny = name == "tiny"
        if not tiny and batch == 1:
            images = images[:2]
        modes = {m: (v, batch) for m, v in MODES.items()}
        if batch > 1 and tiny:
            modes["one-by-one"] = (MODES["baseline"], 1)
        if args.ablation:
            modes.update({m: (v, batch) for m, v in ABLATION.items()})
        reps = args.reps if tiny else args.swin_reps
        seconds, memory, outputs = measure(model, images, batch, modes, reps, warmup=tiny)
        worst = compare(outputs["baseline"], outputs["project"])
        nums = [o["num"] for o in outputs["project"]]
        ratio = seconds["baseline"] / seconds["project"]
        label = f"{name}@{size} b{batch}"
        print(f"\n{label}: {len(images)} images, objects per image {nums}, {reps} rep(s)")
        for mode in modes:
            ips = len(images) / seconds[mode]
            print(
                f"  {mode:<24} {seconds[mode]:8.3f} s  {ips:8.2f} images/s  "
                f"peak +{memory[mode]:7.1f} MiB"
            )
        print(
            f"  project vs baseline: x{ratio:.2f}; parity: min mask IoU {worst['mask_iou']:.4f}, "
            f"max |d score| {worst['score']:.1e}, max |d box| {worst['box']:.1e} px"
        )
        if "one-by-one" in seconds:
            print(f"  project vs one-by-one: x{seconds['one-by-one'] / seconds['project']:.2f}")
        rows.append((label, ratio))
        if (name, size, batch) == HEADLINE:
            # The baseline: plain attention maths, one image at a time.
            headline = seconds["one-by-one"] / seconds["project"]

    print("\nsummary (project images/s / baseline images/s):")
    for label, ratio in rows:
        print(f"  {label:<16} x{ratio:.2f}")
    if headline is not None:
        print(
            "headline setting: tiny@200, 4 images; project (batch 4) vs the straightforward eager "
            "path fed one image at a time (plain attention maths, original ranking loop)"
        )
        print(f"ratio: {headline:.2f}")
    elif rows:
        print(f"headline setting not run; the ratio is for {rows[0][0]}, project vs baseline")
        print(f"ratio: {rows[0][1]:.2f}")


if __name__ == "__main__":
    main()
