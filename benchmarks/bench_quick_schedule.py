"""Reproduce the quick schedule's learning result (docs/QUICK_SCHEDULE.md).

Generates the synthetic benchmark (cached when it is already there), trains
``configs/quick_schedules/synsor_tiny.yaml`` (or ``--config-file``, e.g. the long schedule) with
``train_net.py`` in a subprocess, once per seed, then evaluates on the synthetic test split, under
protocol ``seqrank``, each trained model and a randomly initialised model with the same config
(the baseline). Prints one line per seed, then::

    train_wall_s: <float>     (mean over seeds; only when it trained)
    s_per_iter: <float>       (mean of detectron2's "Overall training speed" of each run)
    sor: <float>
    untrained_sa_sor: <float>
    untrained_sor: <float>
    ratio: <float>            (trained sor / untrained sor; the divisor is floored at 0.01)
    sa_sor: <mean>  min <float>  max <float>  spread <max - min>  seeds <n>
    top2: <mean>  min <float>  max <float>  spread <max - min>  seeds <n>

Usage (from the repository root)::

    python -m benchmarks.bench_quick_schedule [--order chain|global] [--min-objects N] \
        [--seeds 0,1,2] [--skip-train] [--threads N] [--config-file CFG] [KEY VALUE ...]

``--order`` picks the synthetic variant (``chain``: dataset ``synsor``; ``global``: dataset
``synsor_global``; docs/SYNTHETIC.md) and ``--min-objects N`` its fewest objects per image
(N > 1 adds ``_min<N>`` to the dataset name, e.g. ``synsor_global_min2``); the defaults are those
of the dataset the config trains on.
``--seeds`` (default: the config's SEED) trains one model per seed (``SEED`` and the data-loader
order change; the dataset stays the same); each run writes to ``OUTPUT_DIR`` when it is the
config's own seed and variant, else to ``OUTPUT_DIR/<variant>_seed<s>``. ``--skip-train``
evaluates the ``model_final.pth`` of earlier runs.
``--threads`` (default 1) sets OMP_NUM_THREADS for the training subprocesses: with two threads
this tiny model slows down about tenfold as soon as another process competes for the 2 cores
(docs/QUICK_SCHEDULE.md). Trailing ``KEY VALUE`` pairs override the config for training and
evaluation, as with ``train_net.py``.
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
from seqrank.data.synthetic import ORDERS, make_synthetic_sor, parse_synthetic_id, synthetic_id
from seqrank.engine import Trainer, build_cfg, fit_to_machine

logger = logging.getLogger("seqrank.bench")

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = "configs/quick_schedules/synsor_tiny.yaml"
# Same as: python -m scripts.make_synthetic_sor --root <DATASETS.ROOT> --name synsor --seed 0
#              --num-train 600 --num-test 100 --size 128 [--order global --name synsor_global]
#              [--min-objects 2 --name synsor_global_min2]
DATASET = {"seed": 0, "num_train": 600, "num_test": 100, "height": 128}
SPEED_LINE = re.compile(r"Overall training speed: .*\(([0-9.]+) s / it\)")
MIN_DIVISOR = 0.01


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config-file", default=DEFAULT_CONFIG, help="quick-schedule config")
    parser.add_argument(
        "--skip-train", action="store_true", help="evaluate OUTPUT_DIR/model_final.pth only"
    )
    parser.add_argument(
        "--order",
        choices=ORDERS,
        help="synthetic variant: chain (dataset synsor) or global (synsor_global); default: the "
        "variant the config trains on (the quick schedule: global)",
    )
    parser.add_argument(
        "--min-objects",
        type=int,
        metavar="N",
        help="fewest objects per image (N > 1: dataset synsor[_global]_min<N>); default: that "
        "of the config's dataset",
    )
    parser.add_argument(
        "--seeds",
        type=_seed_list,
        help="comma-separated training seeds, e.g. 0,1,2 (default: the config's SEED)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="OMP_NUM_THREADS for training and torch threads for evaluation (0 = leave as is)",
    )
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides KEY VALUE ...")
    return parser.parse_args(argv)


def _seed_list(text):
    try:
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers like 0,1,2, got {text!r}") from None
    if not seeds:
        raise argparse.ArgumentTypeError("expected at least one seed")
    return seeds


def load_cfg(config_file, opts):
    cfg = build_cfg(config_file, opts, num_gpus=1)
    for note in fit_to_machine(cfg):
        logger.warning(note)
    return cfg


def make_dataset(cfg, variant):
    spec = dict(DATASET)
    size = spec.pop("height")
    order, min_objects = variant
    return make_synthetic_sor(
        cfg.DATASETS.ROOT,
        name=synthetic_id(order, min_objects),
        order=order,
        min_objects=min_objects,
        height=size,
        width=size,
        progress=False,
        **spec,
    )


def variant_opts(order, min_objects=1):
    """Config overrides that train and test on the synthetic variant ``(order, min_objects)``."""
    name = synthetic_id(order, min_objects)
    return ["DATASETS.TRAIN", f"('{name}_train',)", "DATASETS.TEST", f"('{name}_test',)"]


def config_variant(cfg):
    """``(order, min_objects)`` of the synthetic dataset a config trains on, e.g. ``("global",
    2)`` for ``synsor_global_min2_train``; ``("chain", 1)`` for a name that is not synthetic."""
    train = cfg.DATASETS.TRAIN[0] if cfg.DATASETS.TRAIN else ""
    try:
        order, min_objects = parse_synthetic_id(train.rsplit("_", 1)[0])
    except ValueError:
        return "chain", 1
    return order or "chain", min_objects


def variant_label(variant):
    order, min_objects = variant
    return order if min_objects == 1 else f"{order}_min{min_objects}"


def run_dir(cfg, variant, seed, default_seed, default_variant):
    if variant == default_variant and seed == default_seed:
        return cfg.OUTPUT_DIR
    return os.path.join(cfg.OUTPUT_DIR, f"{variant_label(variant)}_seed{seed}")


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


def train_and_evaluate(args, config_file, base_opts, cfg, seed):
    """Train (unless ``--skip-train``) and evaluate one seed; returns its result line values."""
    out = run_dir(cfg, args.variant, seed, cfg.SEED, args.default_variant)
    opts = base_opts + ["SEED", str(seed), "OUTPUT_DIR", out]
    line = {"seed": seed}
    if not args.skip_train:
        line["train_wall_s"] = train(config_file, opts, args.threads)
    line["s_per_iter"] = seconds_per_iter(out)
    final = os.path.join(out, "model_final.pth")
    if not os.path.isfile(final):
        sys.exit(f"error: {final} not found: train first (without --skip-train)")
    seed_cfg = load_cfg(config_file, opts)
    metrics = evaluate(seed_cfg, final, out)
    line.update({key: metrics[key] for key in ("sa_sor", "sor", "mae", "top1", "top2")})
    return line


def spread_line(name, values):
    values = [_finite(v) for v in values]
    low, high = min(values), max(values)
    mean = sum(values) / len(values)
    return (
        f"{name}: {mean:.4f}  min {low:.4f}  max {high:.4f}  spread {high - low:.4f}"
        f"  seeds {len(values)}\n"
    )


def main(argv=None):
    setup_logger(name="seqrank")
    setup_logger(name="detectron2")
    args = parse_args(argv)
    config_file = os.path.abspath(args.config_file)
    # Relative paths of the config (DATASETS.ROOT, OUTPUT_DIR) are relative to the repository.
    os.chdir(REPO)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    args.default_variant = config_variant(load_cfg(config_file, list(args.opts)))
    order = args.order or args.default_variant[0]
    min_objects = args.default_variant[1] if args.min_objects is None else args.min_objects
    args.variant = (order, min_objects)
    try:
        base_opts = variant_opts(order, min_objects) + list(args.opts)
    except ValueError as exc:
        sys.exit(f"bench_quick_schedule: error: --min-objects: {exc}")
    cfg = load_cfg(config_file, base_opts)
    make_dataset(cfg, args.variant)
    register_sor_datasets(cfg.DATASETS.ROOT, tuple(cfg.DATASETS.TRAIN) + tuple(cfg.DATASETS.TEST))

    runs = [
        train_and_evaluate(args, config_file, base_opts, cfg, seed)
        for seed in (args.seeds or [cfg.SEED])
    ]
    untrained_dir = os.path.join(cfg.OUTPUT_DIR, f"untrained_{variant_label(args.variant)}")
    untrained = evaluate(cfg, "", untrained_dir)
    text = "".join(
        f"seed {r['seed']}: "
        + "  ".join(f"{k} {_finite(v):.4f}" for k, v in r.items() if k != "seed")
        + "\n"
        for r in runs
    )
    lines = {}
    if not args.skip_train:
        lines["train_wall_s"] = _mean(r["train_wall_s"] for r in runs)
    lines["s_per_iter"] = _mean(r["s_per_iter"] for r in runs)
    lines["sor"] = _mean(r["sor"] for r in runs)
    lines["untrained_sa_sor"] = untrained["sa_sor"]
    lines["untrained_sor"] = untrained["sor"]
    lines["ratio"] = lines["sor"] / max(_finite(untrained["sor"]), MIN_DIVISOR)
    text += "".join(f"{key}: {value:.4f}\n" for key, value in lines.items())
    text += spread_line("sa_sor", [r["sa_sor"] for r in runs])
    text += spread_line("top2", [r["top2"] for r in runs])
    sys.stdout.write(text)


def _mean(values):
    values = [_finite(v) for v in values]
    return sum(values) / len(values)


def _finite(value):
    return 0.0 if value is None or math.isnan(value) else float(value)


if __name__ == "__main__":
    main()
