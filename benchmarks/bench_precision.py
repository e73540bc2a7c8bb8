"""What reduced-precision inference costs: fp32 against bf16 (and fp16 where the device runs it).

The same model and the same inputs run under each ``TEST.PRECISION`` (``model.set_precision``),
alternating image by image (fp32 first on even images, last on odd ones) so that load from other
jobs hits every precision alike. Per precision: the time per image and images/s; against fp32:
the mask IoU of matched picks (each reduced-precision object matched to an fp32 one by the
Hungarian assignment on mask IoU), first-pick agreement (the first ranked objects are the same
object: mask IoU >= 0.5, or both images empty), full-order agreement (same number of objects and
every k-th pair the same object) and the largest objectness / saliency difference of the pairs.

Models: ``tiny``, the quick-schedule config (``configs/quick_schedules/synsor_tiny.yaml``; random
weights unless ``--weights``, e.g. a trained ``model_final.pth``), and ``swinL``
(``configs/swinL.yaml``, random weights, seed 0; nothing is downloaded). Inputs: the photos of
``--inputs`` (default ``demo/examples``, 4 photos; reused in turn for more images), resized to
``--size`` x ``--size`` as the demos do, masks at the photo's size. Precisions the device cannot
run (fp16 on a CPU, bf16 on a CPU without BF16 instructions) are reported and skipped.

Usage: ``python -m benchmarks.bench_precision --model {tiny,swinL} --size N --images N
[--threads 2] [--weights ckp.pth] [--precisions bf16 fp16] [--warmup 1]``. The last two lines are
``agreement: <first-pick agreement of bf16 vs fp32>`` and ``ratio: <bf16 images/s / fp32
images/s>`` (the first reduced precision that ran when bf16 did not).
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from detectron2.modeling import build_model
from scipy.optimize import linear_sum_assignment
from tqdm import tqdm

import seqrank  # noqa: F401  (registers the model)
from seqrank.checkpoint import SeqRankCheckpointer
from seqrank.engine import build_cfg
from seqrank.modeling.precision import resolve_precision
from seqrank.predictor import preprocess

REPO = Path(__file__).resolve().parents[1]
CONFIGS = {
    "tiny": REPO / "configs" / "quick_schedules" / "synsor_tiny.yaml",
    "swinL": REPO / "configs" / "swinL.yaml",
}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
SAME_OBJECT_IOU = 0.5


# ---------------------------------------------------------------------------- model and inputs


def load_model(name, size, device="cpu", weights=None):
    """The model in eval mode: ``weights`` loaded, else random weights drawn with seed 0."""
    cfg = build_cfg(
        str(CONFIGS[name]),
        ["MODEL.DEVICE", device, "MODEL.WEIGHTS", "", "INPUT.FT_SIZE_TEST", str(size)],
    )
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    if weights:
        SeqRankCheckpointer(model).load(str(weights))
    return model


def load_inputs(folder, count, size):
    """``count`` model inputs from the photos of ``folder`` (sorted by name, reused in turn)."""
    paths = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise SystemExit(f"bench_precision: error: no images in {folder}")
    inputs = []
    for i in range(count):
        path = paths[i % len(paths)]
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise SystemExit(f"bench_precision: error: {path}: not a readable image")
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        inputs.append(
            {
                "image": preprocess(rgb, size),
                "height": rgb.shape[0],
                "width": rgb.shape[1],
                "image_name": f"{path.stem}_{i}",
            }
        )
    return inputs


def runnable(precisions, device):
    """The precisions ``device`` runs (fp32 first) and a note per skipped one."""
    kept, notes = ["fp32"], []
    for precision in precisions:
        dtype, note = resolve_precision(precision, device)
        if dtype is None:
            notes.append(note)
        elif precision not in kept:
            kept.append(precision)
    return kept, notes


# ---------------------------------------------------------------------------- measurement


def _sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def run_alternating(model, inputs, precisions, warmup=1):
    """``(seconds, results)``: per precision, the time and result dict of every image (batch 1),
    the precisions alternating image by image; ``warmup`` untimed images per precision first."""
    device = model.device
    for precision in precisions:
        model.set_precision(precision)
        for x in inputs[:warmup]:
            model([x])
    seconds = {p: [] for p in precisions}
    results = {p: [] for p in precisions}
    for i, x in enumerate(tqdm(inputs, desc="images", unit="image", file=sys.stderr)):
        for precision in precisions if i % 2 == 0 else precisions[::-1]:
            model.set_precision(precision)
            _sync(device)
            start = time.perf_counter()
            with torch.inference_mode():
                out = model([x])[0]
            _sync(device)
            seconds[precision].append(time.perf_counter() - start)
            results[precision].append(out)
    model.set_precision("fp32")
    return seconds, results


def mask_iou(a, b):
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def compare_image(reference, candidate):
    """Agreement of one image's ranking with the reference (fp32) one."""
    ref, got = reference["masks"], candidate["masks"]
    ious = np.array([[mask_iou(a, b) for b in got] for a in ref]).reshape(len(ref), len(got))
    matched = []
    if ious.size:
        rows, cols = linear_sum_assignment(-ious)
        matched = ious[rows, cols].tolist()
    if not ref or not got:
        first = not ref and not got
    else:
        first = ious[0, 0] >= SAME_OBJECT_IOU
    order = len(ref) == len(got) and all(ious[k, k] >= SAME_OBJECT_IOU for k in range(len(ref)))
    k = min(len(ref), len(got))
    values = reference["scores"][:k] + reference["saliency"][:k]
    score = np.abs(np.subtract(values, candidate["scores"][:k] + candidate["saliency"][:k]))
    return {
        "matched": matched,
        "first": bool(first),
        "order": bool(order),
        "count": len(ref) == len(got),
        "score": float(score.max()) if k else 0.0,
    }


def summarise(reference, candidate):
    images = [compare_image(a, b) for a, b in zip(reference, candidate)]
    matched = [iou for image in images for iou in image["matched"]]
    n = len(images)
    return {
        "iou_mean": float(np.mean(matched)) if matched else float("nan"),
        "iou_min": min(matched) if matched else float("nan"),
        "pairs": len(matched),
        "first": sum(i["first"] for i in images) / n,
        "order": sum(i["order"] for i in images) / n,
        "count": sum(i["count"] for i in images) / n,
        "score": max(i["score"] for i in images),
    }


# ---------------------------------------------------------------------------- report


def report(seconds, results, precisions):
    """Print the tables; returns ``(agreement, ratio)`` of the headline precision vs fp32."""
    print("\nprecision  s/image (median)  s/image (mean)  images/s  objects per image")
    speed = {}
    for p in precisions:
        speed[p] = len(seconds[p]) / sum(seconds[p])
        nums = [r["num"] for r in results[p]]
        print(
            f"{p:<9}  {statistics.median(seconds[p]):16.3f}  {statistics.mean(seconds[p]):14.3f}"
            f"  {speed[p]:8.3f}  {nums}"
        )
    print("\nvs fp32    ratio  matched mask IoU (mean / min, pairs)  first pick  full order  "
          "same count  max |d score|")  # fmt: skip
    headline = None
    for p in precisions[1:]:
        s = summarise(results["fp32"], results[p])
        ratio = speed[p] / speed["fp32"]
        print(
            f"{p:<9} x{ratio:5.2f}  {s['iou_mean']:.4f} / {s['iou_min']:.4f} ({s['pairs']:4d})"
            f"{'':15}{s['first']:10.2f}  {s['order']:10.2f}  {s['count']:10.2f}  "
            f"{s['score']:.1e}"
        )
        if headline is None or p == "bf16":
            headline = (s["first"], ratio)
    return headline


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", choices=sorted(CONFIGS), default="tiny")
    parser.add_argument("--size", type=int, default=384, help="input size S (S x S)")
    parser.add_argument("--images", type=int, default=4, help="images to rank per precision")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--weights", help="checkpoint to load (default: random weights)")
    parser.add_argument("--inputs", default=str(REPO / "demo" / "examples"), help="photo folder")
    parser.add_argument(
        "--precisions", nargs="+", choices=["bf16", "fp16"], default=["bf16", "fp16"]
    )
    parser.add_argument("--warmup", type=int, default=1, help="untimed images per precision")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    precisions, notes = runnable(args.precisions, args.device)
    load = os.getloadavg()
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), {args.device}; "
        f"{args.model} @{args.size}, {args.images} image(s), load average {load[0]:.2f}"
    )
    for note in notes:
        print(f"skipped: {note}")
    if len(precisions) < 2:
        print("bench_precision: no reduced precision runs on this device; nothing to compare")
        return 1
    model = load_model(args.model, args.size, args.device, args.weights)
    inputs = load_inputs(args.inputs, args.images, args.size)
    seconds, results = run_alternating(model, inputs, precisions, args.warmup)
    agreement, ratio = report(seconds, results, precisions)
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    print(f"agreement: {agreement:.2f}")
    print(f"ratio: {ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
