"""Evaluation speed against the test batch (``TEST.IMS_PER_BATCH``), on the tiny model.

    python -m benchmarks.bench_eval_batch [--images 64] [--size 128] [--batches 1 4] [--reps 3]

What ``train_net.py --eval-only`` runs after loading the model: ``Trainer.test`` (detectron2's
test loader with ``DATALOADER.NUM_WORKERS`` workers, the model, ``SOREvaluator`` and its results
files), on ``--images`` synthetic test images of ``--size`` x ``--size`` pixels
(``scripts.make_synthetic_sor``, made in a temporary folder), with the quick-schedule config
(``configs/quick_schedules/synsor_tiny.yaml``, input ``INPUT.FT_SIZE_TEST`` 128) and random
weights (seed 0), or ``--weights``. Batch sizes alternate within each repetition; times are
medians. Per batch size it prints the images/s of the whole evaluation and of the model's calls
alone, and checks that every batch size gives the same metrics. The load average before and after
is printed: the machine is shared. The last line is ``ratio: <images/s of the largest batch /
images/s of batch 1>`` (whole evaluation).
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

import seqrank  # noqa: F401  (registers the model)
from seqrank.checkpoint import SeqRankCheckpointer
from seqrank.data import register_sor_datasets
from seqrank.data.synthetic import make_synthetic_sor
from seqrank.engine import Trainer, build_cfg

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "quick_schedules" / "synsor_tiny.yaml"
NAME = "bench_eval"


class ForwardTimer:
    """Wall time spent inside ``model``'s forward calls (hooks)."""

    def __init__(self, model):
        self.seconds = 0.0
        self._start = None
        model.register_forward_pre_hook(self._pre)
        model.register_forward_hook(self._post)

    def _pre(self, module, args):
        self._start = time.perf_counter()

    def _post(self, module, args, output):
        self.seconds += time.perf_counter() - self._start


def build(args, root):
    opts = [
        "MODEL.DEVICE", "cpu", "DATASETS.ROOT", str(root), "DATASETS.TEST", f"('{NAME}_test',)",
        "OUTPUT_DIR", str(root / "out"),
    ]  # fmt: skip
    if args.workers is not None:
        opts += ["DATALOADER.NUM_WORKERS", str(args.workers)]
    cfg = build_cfg(str(CONFIG), opts)
    register_sor_datasets(cfg.DATASETS.ROOT, tuple(cfg.DATASETS.TEST))
    torch.manual_seed(0)
    model = Trainer.build_model(cfg)
    if args.weights:
        SeqRankCheckpointer(model).load(args.weights)
    return cfg, model.eval()


def evaluate(cfg, model, timer, batch):
    """(seconds of the whole evaluation, seconds inside the model, metrics)."""
    run_cfg = cfg.clone()
    run_cfg.TEST.IMS_PER_BATCH = batch
    timer.seconds = 0.0
    start = time.perf_counter()
    metrics = Trainer.test(run_cfg, model)
    return time.perf_counter() - start, timer.seconds, json.dumps(metrics, sort_keys=True)


def load_average():
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def run(args):
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        make_synthetic_sor(
            root, name=NAME, num_train=1, num_test=args.images, height=args.size,
            width=args.size, progress=False,
        )  # fmt: skip
        cfg, model = build(args, root)
        timer = ForwardTimer(model)
        evaluate(cfg, model, timer, args.batches[-1])  # warm-up, not counted
        print(f"load average before: {load_average()}", flush=True)
        times = {b: [] for b in args.batches}
        metrics = {}
        for rep in range(args.reps):
            order = args.batches if rep % 2 == 0 else args.batches[::-1]
            for batch in order:
                total, inside, metrics[batch] = evaluate(cfg, model, timer, batch)
                times[batch].append((total, inside))
                print(f"rep {rep + 1} batch {batch}: {total:.2f} s ({inside:.2f} s in the model)")
        print(f"load average after: {load_average()}")
        results = torch.load(root / "out" / f"{NAME}_test_coco_format.pth", weights_only=True)
        objects = sum(r["num"] for r in results.values()) / len(results)
    if len(set(metrics.values())) != 1:
        raise SystemExit(f"metrics differ between batch sizes: {metrics}")
    print(
        f"\n{args.images} images {args.size} x {args.size}, input {cfg.INPUT.FT_SIZE_TEST}, ",
        end="",
    )
    print(f"{cfg.DATALOADER.NUM_WORKERS} loader worker(s), {torch.get_num_threads()} thread(s)")
    print(f"metrics identical for every batch size; {objects:.1f} ranked objects per image")
    print(f"{'batch':>5}{'eval images/s':>15}{'model images/s':>16}")
    speed = {}
    for batch in args.batches:
        total = statistics.median(t for t, _ in times[batch])
        inside = statistics.median(m for _, m in times[batch])
        speed[batch] = args.images / total
        print(f"{batch:>5}{speed[batch]:>15.2f}{args.images / inside:>16.2f}")
    print(f"ratio: {speed[args.batches[-1]] / speed[args.batches[0]]:.2f}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=64, help="test images (64)")
    parser.add_argument("--size", type=int, default=128, help="image side in pixels (128)")
    parser.add_argument(
        "--batches", type=int, nargs="+", default=[1, 4], help="TEST.IMS_PER_BATCH values (1 4)"
    )
    parser.add_argument("--reps", type=int, default=3, help="repetitions (3)")
    parser.add_argument("--workers", type=int, help="DATALOADER.NUM_WORKERS (the config's: 1)")
    parser.add_argument("--weights", help="a checkpoint of the config (default: random weights)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1)")
    args = parser.parse_args(argv)
    if args.batches[0] != 1 or any(b < 1 for b in args.batches):
        parser.error("--batches must start with 1 (the baseline) and be >= 1")
    torch.set_num_threads(args.threads)
    run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
