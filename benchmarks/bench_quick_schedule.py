"""Reproduce the quick schedule's learning result (docs/QUICK_SCHEDULE.md).

Generates the synthetic benchmark (cached when it is already there), trains
``configs/quick_schedules/synsor_tiny.yaml`` with ``train_net.py`` in a subprocess, then evaluates
on the synthetic test split, under protocol ``seqrank``, both the trained model and a randomly
initialised model with the same config and seed (the baseline). Prints::

    train_wall_s: <float>     (only when it trained)
    s_per_iter: <float>       (detectron2's "Overall training speed" of the last run in the log)
    sa_sor: <float>
    sor: <float>
    untrained_sa_sor: <float>
    untrained_sor: <float>
    ratio: <float>            (trained sor / untrained sor; the divisor is floored at 0.01)

Usage (from the repository root)::

    python -m benchmarks.bench_quick_schedule [--skip-train] [--threads N] [--config-file CFG] \
        [KEY VALUE ...]

``--skip-train`` evaluates ``OUTPUT_DIR/model_final.pth`` of an earlier run. ``--threads`` (default
1) sets OMP_NUM_THREADS for the training subprocess: with two threads this tiny model slows down
about tenfold as soon as another process competes for the 2 cores (docs/QUICK_SCHEDULE.md), while
on an idle machine one thread is about as fast. Trailing ``KEY VALUE``
pairs override the config for training and both evaluations, as with ``train_net.py``.
"""

import argparse
import logging
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import torch
from detectron2.utils.logger import setup_logger

import seqrank  # noqa: F401  (registers the model components)
from seqrank.data import register_sor_datasets
from seqrank.data.synthetic import make_synthetic_sor
from seqrank.engine import Trainer, build_cfg, fit_to_machine

logger = logging.getLogger("seqrank.bench")

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = "configs/quick_schedules/synsor_tiny.yaml"
# Same as: python -m scripts.make_synthetic_sor --root <DATASETS.ROOT> --name synsor --seed 0
#              --num-train 600 --num-test 100 --size 128
DATASET = {"name": "synsor", "seed": 0, "num_train": 600, "num_test": 100, "height": 128}
SPEED_LINE = re.compile(r"Overall training speed: .*\(([0-9.]+) s / it\)")
MIN_DIVISOR = 0.01


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config-file", default=DEFAULT_CONFIG, help="quick-schedule config")
    parser.add_argument(
        "--skip-train", action="store_true", help="evaluate OUTPUT_DIR/model_final.pth only"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="OMP_NUM_THREADS for training and torch threads for evaluation (0 = leave as is)",
    )
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides KEY VALUE ...")
    return parser.parse_args(argv)


def load_cfg(config_file, opts):
    cfg = build_cfg(config_file, opts, num_gpus=1)
    for note in fit_to_machine(cfg):
        logger.warning(note)
    return cfg


def make_dataset(cfg):
    spec = dict(DATASET)
    size = spec.pop("height")
    return make_synthetic_sor(cfg.DATASETS.ROOT, height=size, width=size, progress=False, **spec)


def train(config_file, opts, threads):
    """Run train_net.py as the quick schedule documents it; returns the wall time in seconds."""
    env = dict(os.environ)
    if threads > 0:
        env["OMP_NUM_THREADS"] = str(threads)
    command = [sys.executable, str(REPO / "train_net.py"), "--num-gpus", "1"]
    command += ["--config-file", config_file, *opts]
    logger.info("Training: %s", " ".join(command))
    start = time.perf_counter()
    subprocess.run(command, cwd=REPO, env=env, check=True)
    return time.perf_counter() - start


def seconds_per_iter(output_dir):
    """Last "Overall training speed" that detectron2 wrote to OUTPUT_DIR/log.txt, or NaN."""
    log_file = Path(output_dir) / "log.txt"
    if not log_file.is_file():
        return float("nan")
    speeds = SPEED_LINE.findall(log_file.read_text(errors="replace"))
    return float(speeds[-1]) if speeds else float("nan")


def evaluate(cfg, weights, output_dir):
    """SOR metrics of the model with ``weights`` ("" = random init, seeded by cfg.SEED)."""
    cfg = cfg.clone()
    cfg.defrost()
    cfg.MODEL.WEIGHTS = weights
    cfg.OUTPUT_DIR = output_dir
    cfg.freeze()
    torch.manual_seed(max(cfg.SEED, 0))
    model = Trainer.load_for_eval(cfg)
    # DefaultTrainer.test unwraps the result dict when there is a single test set.
    results = Trainer.test(cfg, model)
    return results.get(cfg.DATASETS.TEST[0], results)


def main(argv=None):
    setup_logger(name="seqrank")
    setup_logger(name="detectron2")
    args = parse_args(argv)
    config_file = os.path.abspath(args.config_file)
    # Relative paths of the config (DATASETS.ROOT, OUTPUT_DIR) are relative to the repository.
    os.chdir(REPO)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    cfg = load_cfg(config_file, args.opts)
    make_dataset(cfg)
    register_sor_datasets(cfg.DATASETS.ROOT, tuple(cfg.DATASETS.TRAIN) + tuple(cfg.DATASETS.TEST))

    lines = {}
    if not args.skip_train:
        lines["train_wall_s"] = train(config_file, args.opts, args.threads)
    lines["s_per_iter"] = seconds_per_iter(cfg.OUTPUT_DIR)
    final = os.path.join(cfg.OUTPUT_DIR, "model_final.pth")
    if not os.path.isfile(final):
        sys.exit(f"error: {final} not found: train first (without --skip-train)")
    trained = evaluate(cfg, final, cfg.OUTPUT_DIR)
    untrained = evaluate(cfg, "", os.path.join(cfg.OUTPUT_DIR, "untrained"))
    lines["sa_sor"] = trained["sa_sor"]
    lines["sor"] = trained["sor"]
    lines["untrained_sa_sor"] = untrained["sa_sor"]
    lines["untrained_sor"] = untrained["sor"]
    lines["ratio"] = trained["sor"] / max(_finite(untrained["sor"]), MIN_DIVISOR)
    sys.stdout.write("".join(f"{key}: {value:.4f}\n" for key, value in lines.items()))


def _finite(value):
    return 0.0 if value is None or math.isnan(value) else float(value)


if __name__ == "__main__":
    main()
