"""Evaluation throughput: the project's SOREvaluator against a plain per-pair-loop implementation.

Both sides score the same seeded synthetic images (H x W = 480 x 640 by default, 1-8 ellipse /
blob GT objects, 0-10 predictions: noisy copies of GT objects in a perturbed order plus spurious
blobs) under protocol ``seqrank`` (docs/METRICS.md) and build the same results-file
records (RLE masks). The baseline, :mod:`tests.reference.metrics`, computes every IoU with
its own pass over the full-resolution maps. Images are generated one at a time and each is
handed to both sides in alternating order, so load from other processes hits both alike. The
aggregated metrics must be identical.

Usage: ``python -m benchmarks.bench_metrics [--images 500] [--height 480] [--width 640]``.
The last line is ``ratio: <project throughput / baseline throughput>``.
"""

import argparse
import math
import time
import tracemalloc

import cv2
import numpy as np
import pycocotools.mask as mask_util
import torch

from seqrank.evaluation import SOREvaluator
from seqrank.evaluation.metrics import METRIC_NAMES
from tests.reference.metrics import reference_image_metrics

# ---------------------------------------------------------------------------- synthetic data


def _ellipse(shape, centre, axes, angle):
    """H x W uint8 {0, 1} filled ellipse."""
    out = np.zeros(shape, np.uint8)
    centre = tuple(int(round(v)) for v in centre)
    axes = tuple(max(2, int(round(v))) for v in axes)
    cv2.ellipse(out, centre, axes, float(angle), 0.0, 360.0, 1, thickness=-1)
    return out


def _random_blob(rng, shape):
    """One object: an ellipse, sometimes merged with a second overlapping one (a blob)."""
    h, w = shape
    params = [
        (
            (rng.uniform(0.1, 0.9) * w, rng.uniform(0.1, 0.9) * h),
            (rng.uniform(0.04, 0.25) * w, rng.uniform(0.04, 0.25) * h),
            rng.uniform(0, 180),
        )
    ]
    if rng.random() < 0.4:
        (cx, cy), (a, b), ang = params[0]
        params.append(
            (
                (cx + rng.normal(0, a * 0.6), cy + rng.normal(0, b * 0.6)),
                (a * rng.uniform(0.4, 0.9), b * rng.uniform(0.4, 0.9)),
                rng.uniform(0, 180),
            )
        )
    return params


def _draw(shape, params):
    mask = np.zeros(shape, np.uint8)
    for centre, axes, angle in params:
        mask |= _ellipse(shape, centre, axes, angle)
    return mask


def _perturb(rng, params, strength):
    out = []
    for (cx, cy), (a, b), ang in params:
        out.append(
            (
                (cx + rng.normal(0, strength * a), cy + rng.normal(0, strength * b)),
                (a * (1 + rng.normal(0, strength)), b * (1 + rng.normal(0, strength))),
                ang + rng.normal(0, 30 * strength),
            )
        )
    return out


def make_image(rng, height, width, index):
    """One synthetic image: the evaluator's ``(input, output)`` dicts.

    ``input["masks"]`` is an N x H x W float32 tensor (what the test mapper yields);
    ``output["masks"]`` a list of H x W float32 {0, 1} maps in predicted rank order.
    """
    shape = (height, width)
    objects = [_random_blob(rng, shape) for _ in range(int(rng.integers(1, 9)))]
    gts = np.stack([_draw(shape, p) for p in objects]).astype(np.float32)

    preds = []
    if rng.random() > 0.05:
        for rank, params in enumerate(objects):
            if rng.random() < 0.8:
                strength = rng.choice([0.05, 0.1, 0.3])
                preds.append(
                    (rank + rng.normal(0, 1.0), _draw(shape, _perturb(rng, params, strength)))
                )
        for _ in range(int(rng.integers(0, 4))):
            preds.append((rng.uniform(-1, len(objects)), _draw(shape, _random_blob(rng, shape))))
    preds.sort(key=lambda item: item[0])
    masks = [m.astype(np.float32) for _, m in preds[:10]]
    num = len(masks)
    boxes = [
        [float(v) for v in sorted(rng.uniform(0, width, 2)) + sorted(rng.uniform(0, height, 2))]
        for _ in range(num)
    ]
    output = {
        "image_name": f"bench_{index:05d}",
        "masks": masks,
        "bboxes": [[b[0], b[2], b[1], b[3]] for b in boxes],
        "scores": sorted(rng.uniform(0.01, 1.0, num).tolist(), reverse=True),
        "saliency": sorted(rng.uniform(0.01, 1.0, num).tolist(), reverse=True),
        "num": num,
    }
    inp = {
        "image_name": output["image_name"],
        "height": height,
        "width": width,
        "masks": torch.from_numpy(gts),
    }
    return inp, output


# ---------------------------------------------------------------------------- baseline


def baseline_record(output):
    rles = []
    for mask in output["masks"]:
        rles.append(mask_util.encode(np.asfortranarray((mask > 0.5).astype(np.uint8))))
    return {
        "image_name": output["image_name"],
        "masks": rles,
        "bboxes": [list(map(float, b)) for b in output["bboxes"]],
        "scores": [float(s) for s in output["scores"]],
        "saliency": [float(s) for s in output["saliency"]],
        "num": len(rles),
    }


def baseline_aggregate(per_image):
    out = {}
    for name in METRIC_NAMES:
        values = [r[name] for r in per_image if r[name] is not None]
        total = sum(0.0 if math.isnan(v) else v for v in values)
        out[name] = round((total + 1e-12) / (len(values) + 1e-12), 4) if values else float("nan")
        out[f"{name}_count"] = float(len(values))
    return out


class Baseline:
    """Same job as SOREvaluator.process/evaluate, written as a plain loop."""

    def __init__(self):
        self.records, self.per_image = [], []

    def process(self, inputs, outputs):
        for inp, out in zip(inputs, outputs):
            self.records.append(baseline_record(out))
            gts = list(inp["masks"].numpy())
            self.per_image.append(reference_image_metrics(list(out["masks"]), gts))

    def evaluate(self):
        return baseline_aggregate(self.per_image)


# ---------------------------------------------------------------------------- driver


def _project():
    return SOREvaluator("bench", output_dir=None, distributed=False)


def _same(a, b):
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def _peak_memory(factory, images):
    """Peak traced allocation (MiB) of ``process`` over ``images`` plus ``evaluate``."""
    evaluator = factory()
    tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    for inp, out in images:
        evaluator.process([inp], [out])
    evaluator.evaluate()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return (peak - base) / 2**20


def run(num_images, height, width, seed, mem_images):
    rng = np.random.default_rng(seed)
    baseline, project = Baseline(), _project()
    times = {"baseline": 0.0, "project": 0.0}
    sides = {"baseline": baseline, "project": project}
    first = []
    objects = preds = 0
    for i in range(num_images):
        inp, out = make_image(rng, height, width, i)
        objects += len(inp["masks"])
        preds += out["num"]
        if i < mem_images:
            first.append((inp, out))
        order = ("baseline", "project") if i % 2 == 0 else ("project", "baseline")
        for name in order:
            start = time.perf_counter()
            sides[name].process([inp], [out])
            times[name] += time.perf_counter() - start
    for name in ("baseline", "project"):
        start = time.perf_counter()
        result = sides[name].evaluate()
        times[name] += time.perf_counter() - start
        sides[name] = result

    expected, got = sides["baseline"], dict(sides["project"])
    mismatched = [k for k in expected if not _same(expected[k], got.get(k))]
    assert not mismatched and list(expected) == list(got), (mismatched, expected, got)
    for rec_b, rec_p in zip(baseline.records, project._records):
        assert [r["counts"] for r in rec_b["masks"]] == [r["counts"] for r in rec_p["masks"]]

    memory = {
        "baseline": _peak_memory(Baseline, first),
        "project": _peak_memory(_project, first),
    }
    print(f"images: {num_images} of {height}x{width}, {objects} GT objects, {preds} predictions")
    print("aggregated metrics identical: " + ", ".join(f"{k}={expected[k]}" for k in METRIC_NAMES))
    print(f"{'path':<10} {'seconds':>9} {'images/s':>9} {'peak MiB':>9}")
    for name in ("baseline", "project"):
        print(
            f"{name:<10} {times[name]:>9.2f} {num_images / times[name]:>9.1f} "
            f"{memory[name]:>9.1f}"
        )
    print(f"peak memory measured with tracemalloc over the first {len(first)} images")
    ratio = times["baseline"] / times["project"]
    print(f"ratio: {ratio:.2f}")
    return ratio


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--mem-images", type=int, default=20)
    args = parser.parse_args(argv)
    run(args.images, args.height, args.width, args.seed, args.mem_images)


if __name__ == "__main__":
    main()
