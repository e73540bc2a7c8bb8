"""`make demo`: the main job on bundled defaults, ending with one page to open in a browser.

1. generate the synthetic SOR benchmark(s) named by the config's DATASETS (cached under
   ``datasets/``): a dataset ``synsor_<split>`` is ``make_synthetic_sor --name synsor``,
   ``synsor_global_<split>`` is ``--name synsor_global --order global`` (same for ``chain``), and
   a ``_min<N>`` token adds ``--min-objects N`` (docs/SYNTHETIC.md);
2. train the quick schedule (cached: ``output/<config name>/model_final.pth``, ``--retrain`` to
   train again); training ends by evaluating the test split: the metrics table is printed once
   and written to ``<test dataset>_metrics.json`` beside the model;
3. write ``output/demo/index.html``: for a sample of test images, the input, the GT order and the
   predicted order side by side (colour maps and labelled overlays), the per-image SA-SOR, the
   metrics table and which model produced it; prints its path;
4. only with ``--weights`` (``make demo WEIGHTS=ckp.pth [CONFIG=configs/swinL.yaml]``): rank the
   photos of ``demo/examples`` with those weights (outputs in ``output/demo_examples``, shown on
   the page too). The quick-schedule model learned synthetic shapes: its ranks on photos would
   mean nothing, so without real weights this step is skipped (one log line says so).

Later runs reuse the cached data, model and metrics.
"""

import argparse
import glob
import json
import logging
import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_CONFIG = os.path.join("configs", "quick_schedules", "synsor_tiny.yaml")
EXAMPLES = os.path.join(REPO, "demo", "examples")

logger = logging.getLogger("seqrank.run_demo")


class DemoError(Exception):
    """A problem that ends the job with one line (a config this job cannot run, a failed step)."""


def _run(step, cmd, cwd=REPO):
    logger.info("[%s] %s", step, " ".join(cmd))
    start = time.time()
    # The tiny model's ops last microseconds: one OpenMP thread avoids barrier stalls on shared
    # CPUs (docs/QUICK_SCHEDULE.md measured 10x slow-downs with two threads beside another job).
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")
    try:
        subprocess.run(cmd, cwd=cwd, check=True, env=env)
    except subprocess.CalledProcessError as exc:
        raise DemoError(f"[{step}] failed with exit code {exc.returncode}") from None
    logger.info("[%s] done in %.0f s", step, time.time() - start)


def synthetic_spec(dataset_name):
    """``(name, order, min_objects)`` for ``make_synthetic_sor`` of a ``<id>_<split>`` dataset.

    ``synsor_test`` -> ``("synsor", None, 1)`` (the generator's default order);
    ``synsor_global_min2_test`` -> ``("synsor_global_min2", "global", 2)``. Raises
    :class:`DemoError` for a non-synthetic name.
    """
    from seqrank.data.synthetic import parse_synthetic_id

    dataset_id = dataset_name.rsplit("_", 1)[0] if "_" in dataset_name else dataset_name
    try:
        order, min_objects = parse_synthetic_id(dataset_id)
    except ValueError as exc:
        raise DemoError(
            f"dataset {dataset_name!r}: {exc}: make demo only generates synthetic data; "
            "evaluate real data with train_net.py"
        ) from None
    return dataset_id, order, min_objects


def generation_commands(dataset_names, root, num_train=None, num_test=None):
    """One ``make_synthetic_sor`` command per synthetic dataset id among ``dataset_names``."""
    commands, seen = [], set()
    for name in dataset_names:
        dataset_id, order, min_objects = synthetic_spec(name)
        if dataset_id in seen:
            continue
        seen.add(dataset_id)
        cmd = [sys.executable, "-m", "scripts.make_synthetic_sor", "--root", root]
        cmd += ["--name", dataset_id] + (["--order", order] if order else [])
        cmd += ["--min-objects", str(min_objects)] if min_objects != 1 else []
        cmd += ["--num-train", str(num_train)] if num_train else []
        cmd += ["--num-test", str(num_test)] if num_test else []
        commands.append(cmd)
    return commands


def load_config(config_file, data_root, output_dir, opts):
    from seqrank.engine.setup import build_cfg

    overrides = list(opts) + ["DATASETS.ROOT", data_root, "OUTPUT_DIR", output_dir]
    return build_cfg(config_file, overrides)


def train(config_file, cfg, opts, retrain):
    """Train unless cached; returns ``(checkpoint, trained_now)``."""
    final = os.path.join(cfg.OUTPUT_DIR, "model_final.pth")
    stale = _stale_cache_reason(cfg)
    if os.path.isfile(final) and not retrain and not stale:
        logger.info("[train] cached model: %s (use --retrain to train again)", final)
        return final, False
    if os.path.isfile(final) and stale:
        logger.info("[train] the cached model was trained with another config (%s)", stale)
    cmd = [sys.executable, "train_net.py", "--num-gpus", "1", "--config-file", config_file]
    cmd += list(opts) + ["DATASETS.ROOT", cfg.DATASETS.ROOT, "OUTPUT_DIR", cfg.OUTPUT_DIR]
    _run("train", cmd + ["TEST.EVAL_PERIOD", "0"])
    return final, True


# The config keys whose change makes a cached model another experiment.
_EXPERIMENT_KEYS = ("MODEL", "SOLVER", "DATASETS.TRAIN", "DATASETS.TEST", "INPUT", "SEED")


def _stale_cache_reason(cfg):
    """Why the model cached in OUTPUT_DIR does not belong to ``cfg`` (``""`` when it does or
    there is no record of its config)."""
    from seqrank.engine.setup import build_cfg

    sidecar = os.path.join(cfg.OUTPUT_DIR, "config.yaml")
    if not os.path.isfile(sidecar):
        return ""
    cached = build_cfg(sidecar, ["DATASETS.ROOT", cfg.DATASETS.ROOT])
    for key in _EXPERIMENT_KEYS:
        ours, theirs = cfg, cached
        for part in key.split("."):
            ours, theirs = ours[part], theirs[part]
        if key == "MODEL":
            ours, theirs = ours.clone(), theirs.clone()
            for node in (ours, theirs):
                node.WEIGHTS, node.DEVICE = "", "cpu"
        if _plain(ours) != _plain(theirs):
            return f"{key} differs"
    return ""


def _plain(value):
    """Config values with tuples as lists (a dumped and reloaded config has lists)."""
    if hasattr(value, "dump"):
        import yaml

        return yaml.safe_load(value.dump())
    return json.loads(json.dumps(value))


def test_metrics(config_file, cfg, weights, opts, trained_now):
    """The test split's metrics: those training wrote, else (a model cached by an older run) an
    evaluation now. The table is printed once per run either way."""
    test = cfg.DATASETS.TEST[0]
    path = os.path.join(cfg.OUTPUT_DIR, f"{test}_metrics.json")
    if not os.path.isfile(path):
        eval_dir = os.path.join(cfg.OUTPUT_DIR, "eval")
        cmd = [sys.executable, "train_net.py", "--eval-only", "--config-file", config_file]
        cmd += list(opts) + ["DATASETS.ROOT", cfg.DATASETS.ROOT, "MODEL.WEIGHTS", weights]
        _run("eval", cmd + ["OUTPUT_DIR", eval_dir])
        return _read_metrics(os.path.join(eval_dir, f"{test}_metrics.json"))
    metrics = _read_metrics(path)
    if not trained_now:
        from seqrank.evaluation.evaluator import metrics_table

        logger.info("[eval] %s (from %s)", metrics_table(metrics, f"SOR metrics on {test}"), path)
    return metrics


def _read_metrics(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError) as exc:
        raise DemoError(f"{path}: cannot read the metrics ({exc})") from None


def _test_records(cfg, count):
    from seqrank.data.datasets import load_sor_json

    test = cfg.DATASETS.TEST[0]
    dataset_id, split = test.rsplit("_", 1)
    folder = os.path.join(cfg.DATASETS.ROOT, dataset_id)
    records = load_sor_json(
        os.path.join(folder, f"{dataset_id}_{split}.json"), os.path.join(folder, "images", split)
    )
    return sorted(records, key=lambda r: r["image_name"])[:count]


def build_page(cfg, weights, metrics, samples, page_path, examples=()):
    """Rank ``samples`` test images with the trained model and write the page."""
    from tqdm import tqdm

    from seqrank.data.image_io import read_rgb
    from seqrank.data.mapper import rasterize_annotations
    from seqrank.demo_page import build_panel, write_page
    from seqrank.predictor import SeqRankPredictor

    predictor = SeqRankPredictor.from_checkpoint(weights)
    panels = []
    for record in tqdm(_test_records(cfg, samples), desc="[page] ranking", unit="image"):
        image = read_rgb(record["file_name"])
        height, width = image.shape[:2]
        _, gt_masks = rasterize_annotations(record["annotations"], height, width)
        result = predictor(image, record["image_name"])
        panels.append(build_panel(record["image_name"], image, gt_masks, result))
    info = {
        "checkpoint": weights,
        "config": os.path.join(os.path.dirname(weights), "config.yaml"),
        "train_datasets": list(cfg.DATASETS.TRAIN),
        "test_dataset": cfg.DATASETS.TEST[0],
    }
    return write_page(page_path, panels, metrics, info, examples)


def rank_examples(weights, config, output_dir, page_dir):
    """Rank the photos of demo/examples with real weights; returns the page section."""
    images = sorted(glob.glob(os.path.join(EXAMPLES, "*.jpg")))
    cmd = (
        [sys.executable, "demo.py", "--input"] + images + ["--output", os.path.abspath(output_dir)]
    )
    cmd += ["--config-file", os.path.abspath(config)] if config else []
    _run("examples", cmd + ["--opts", "MODEL.WEIGHTS", os.path.abspath(weights)], cwd="demo")
    figures = []
    for image in images:
        stem = os.path.splitext(os.path.basename(image))[0]
        for suffix in ("overlay", "colormap"):
            rel = os.path.relpath(os.path.join(output_dir, f"{stem}_{suffix}.png"), page_dir)
            figures.append(
                f'<figure><img src="{rel}" alt="{stem} {suffix}"><figcaption>{stem} {suffix}'
                "</figcaption></figure>"
            )
    return (
        f"<h2>Photos of demo/examples ranked with {os.path.basename(weights)}</h2>"
        f'<div class="views">{"".join(figures)}</div>'
    )


def get_parser():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--retrain", action="store_true", help="train again even if cached")
    parser.add_argument(
        "--config-file", default=DEFAULT_CONFIG, help=f"quick schedule (default {DEFAULT_CONFIG})"
    )
    parser.add_argument("--data-root", default="datasets", help="synthetic data folder")
    parser.add_argument("--output-root", default="output", help="where models and pages go")
    parser.add_argument("--num-train", type=int, help="synthetic train images (generator default)")
    parser.add_argument("--num-test", type=int, help="synthetic test images (generator default)")
    parser.add_argument("--samples", type=int, default=8, help="test images shown on the page")
    parser.add_argument(
        "--weights", help="real SeqRank weights: also rank the photos of demo/examples"
    )
    parser.add_argument("--config", help="config of --weights (default: follows the checkpoint)")
    parser.add_argument(
        "opts", nargs=argparse.REMAINDER, help="config overrides for training (KEY VALUE ...)"
    )
    return parser


def run(args):
    config_name = os.path.splitext(os.path.basename(args.config_file))[0]
    output_dir = os.path.join(args.output_root, config_name)
    cfg = load_config(args.config_file, args.data_root, output_dir, args.opts)
    datasets = list(cfg.DATASETS.TRAIN) + list(cfg.DATASETS.TEST)
    for cmd in generation_commands(datasets, args.data_root, args.num_train, args.num_test):
        _run("data", cmd)
    weights, trained_now = train(args.config_file, cfg, args.opts, args.retrain)
    metrics = test_metrics(args.config_file, cfg, weights, args.opts, trained_now)
    page_dir = os.path.join(args.output_root, "demo")
    examples = []
    if args.weights:
        examples_dir = os.path.join(args.output_root, "demo_examples")
        examples.append(rank_examples(args.weights, args.config, examples_dir, page_dir))
    else:
        logger.info(
            "[examples] skipped: the quick-schedule model learned synthetic shapes, so its ranks "
            "on photos mean nothing; give real weights: make demo WEIGHTS=ckp.pth "
            "[CONFIG=configs/swinL.yaml]"
        )
    page = build_page(
        cfg, weights, metrics, args.samples, os.path.join(page_dir, "index.html"), examples
    )
    return page


def main(argv=None):
    args = get_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="[%(asctime)s %(name)s] %(message)s", datefmt="%H:%M:%S"
    )
    from seqrank.cli import SeqRankUserError

    try:
        page = run(args)
    except (DemoError, SeqRankUserError) as exc:
        sys.exit(f"run_demo: error: {exc}")
    print(f"Demo page: {page} (open it in a browser)")
    return page


if __name__ == "__main__":
    main()
