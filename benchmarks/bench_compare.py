"""Throughput of ``scripts.sor_compare``: three methods on a synthetic ASSR-test-sized benchmark.

Synthetic data (seeded, H x W = 480 x 640 by default, ASSR's 2418 test images): GT objects are
the ellipse / blob objects of ``benchmarks.bench_metrics`` written as polygons in the dataset
JSON, and three methods predict noisy copies of them in a perturbed order, one per kind:

* ``results``: a SeqRank results file (RLE masks);
* ``rankmaps``: grey rank maps as ``TEST.EVAL_SAVE`` writes them (``<image>_count_<n>.png``);
* ``saliency``: continuous saliency maps (blurred object maps of varying brightness, as an SOD
  method would output).

The timed part is what ``python -m scripts.sor_compare --protocol all`` does after argument
parsing: reading the dataset, opening the three methods, scoring every image under every
protocol, the bootstrap and writing the outputs. Generating the data is not timed.

Usage: ``python -m benchmarks.bench_compare [--images 2418] [--height 480] [--width 640]
[--bootstrap 1000] [--data-dir DIR]``. The last line is ``total: <seconds> s``.
"""

import argparse
import json
import os
import tempfile
import time

import cv2
import numpy as np

from benchmarks.bench_metrics import make_image
from seqrank.data.synthetic import mask_to_polygons
from seqrank.evaluation.compare import default_workers
from seqrank.evaluation.compare_report import run_comparison
from seqrank.evaluation.results_file import encode_mask, save_results
from seqrank.utils.colormap import render_rank_map

DATASET = "assr_test"


def _annotations(gts):
    """GT masks (N x H x W, most salient first) -> dataset annotations, rank N..1."""
    out = []
    for k, mask in enumerate(gts):
        polygons = mask_to_polygons(mask > 0.5)
        if polygons:
            out.append({"category_id": len(gts) - k, "segmentation": polygons})
    return out


def _saliency_map(rng, masks, height, width):
    """A smooth grey map: each predicted object at a brightness falling with its rank."""
    canvas = np.zeros((height, width), dtype=np.float32)
    for k, mask in enumerate(masks):
        canvas = np.maximum(canvas, mask * (1.0 - 0.15 * k) * rng.uniform(0.8, 1.0))
    canvas = cv2.GaussianBlur(canvas, (0, 0), sigmaX=4.0)
    noise = rng.normal(0, 0.02, canvas.shape).astype(np.float32)
    return np.clip((canvas + noise) * 255, 0, 255).astype(np.uint8)


def write_data(root, images, height, width, seed):
    """Dataset JSON and the three methods' predictions under ``root``; returns the --pred
    arguments."""
    rng = np.random.default_rng(seed)
    dirs = {k: os.path.join(root, k) for k in ("rankmaps", "saliency")}
    for d in dirs.values():
        os.makedirs(d, exist_ok=True)
    records, results = [], {}
    for i in range(images):
        inp, out = make_image(rng, height, width, i)
        name = out["image_name"]
        gts = inp["masks"].numpy()
        records.append(
            {"image_name": name, "height": height, "width": width, "annotations": _annotations(gts)}
        )
        results[name] = {
            "image_name": name,
            "masks": [encode_mask(m) for m in out["masks"]],
            "bboxes": out["bboxes"],
            "scores": out["scores"],
            "saliency": out["saliency"],
            "num": out["num"],
        }
        _, other = make_image(rng, height, width, i)  # a second method's predictions
        masks = other["masks"] if rng.random() < 0.5 else out["masks"][::-1]
        cv2.imwrite(
            os.path.join(dirs["rankmaps"], f"{name}_count_{len(masks)}.png"),
            render_rank_map(masks, height, width),
        )
        cv2.imwrite(
            os.path.join(dirs["saliency"], f"{name}.png"),
            _saliency_map(rng, list(gts[::-1]) if i % 3 == 0 else list(gts), height, width),
        )
    ds_dir = os.path.join(root, "datasets", "assr")
    os.makedirs(ds_dir, exist_ok=True)
    with open(os.path.join(ds_dir, f"{DATASET}.json"), "w") as f:
        json.dump({"__comment__": "bench_compare synthetic GT", "data": records}, f)
    save_results(os.path.join(root, "results.pth"), results)
    return [
        f"results={os.path.join(root, 'results.pth')}",
        f"rankmaps={dirs['rankmaps']}",
        f"saliency={dirs['saliency']}",
    ]


def _cached_data(root, params):
    """The --pred arguments of data already generated in ``root`` with ``params``, else None."""
    stamp = os.path.join(root, "bench_compare.json")
    if not os.path.isfile(stamp):
        return None
    with open(stamp) as f:
        saved = json.load(f)
    return saved["preds"] if saved["params"] == params else None


def _cpu_seconds():
    """User + system time of this process and of its finished children (the workers)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def run(args, root):
    params = [args.images, args.height, args.width, args.seed]
    preds = _cached_data(root, params)
    if preds is None:
        start = time.perf_counter()
        preds = write_data(root, args.images, args.height, args.width, args.seed)
        with open(os.path.join(root, "bench_compare.json"), "w") as f:
            json.dump({"params": params, "preds": preds}, f)
        made = f"generated in {time.perf_counter() - start:.1f} s (not timed)"
    else:
        made = f"reused from {root}"
    print(
        f"data: {args.images} images {args.height}x{args.width}, 3 methods "
        f"(results file, rank maps, saliency maps), {made}"
    )
    start, cpu_start = time.perf_counter(), _cpu_seconds()
    comparison = run_comparison(
        DATASET,
        preds,
        dataset_root=os.path.join(root, "datasets"),
        output_dir=os.path.join(root, "output"),
        protocols=("seqrank", "irsr", "assr"),
        bootstrap=args.bootstrap,
        progress=False,
        workers=args.workers,
    )
    total, cpu = time.perf_counter() - start, _cpu_seconds() - cpu_start
    scored = len(comparison.images) * len(comparison.methods)
    print(
        f"protocols: seqrank, irsr, assr; bootstrap {args.bootstrap} resamples; "
        f"{args.workers} worker process(es)"
    )
    print(
        f"{len(comparison.images)} images x {len(comparison.methods)} methods: "
        f"{len(comparison.images) / total:.1f} images/s, {scored / total:.1f} image-methods/s"
    )
    print(
        f"CPU time {cpu:.1f} s (this process and its workers; the load average was "
        f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)"
    )
    print(f"total: {total:.1f} s")
    return total


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=2418)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=default_workers())
    parser.add_argument(
        "--data-dir",
        help="keep the synthetic data here and reuse it on the next run (default: a temp dir)",
    )
    args = parser.parse_args(argv)
    if args.data_dir:
        return run(args, args.data_dir)
    with tempfile.TemporaryDirectory(prefix="bench_compare_") as root:
        return run(args, root)


if __name__ == "__main__":
    main()
