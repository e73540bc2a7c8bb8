"""Where does a SeqRank model's ranking go wrong? Step-by-step diagnostics on a dataset.

Example (the quick-schedule model on the synthetic test split)::

    python -m scripts.rank_diagnostics \\
        --config-file configs/quick_schedules/synsor_tiny.yaml \\
        MODEL.WEIGHTS output/synsor_tiny/model_final.pth

Prints, for the first test set of the config (``--dataset`` picks another registered one):
top-k accuracy by step, the same conditioned on a correct prefix, teacher-forced next-pick
accuracy, mean saliency of the k-th pick, the confusion between predicted step and GT rank, and
the stop-step distribution. Writes ``rank_diagnostics.json``, ``confusion.csv`` and
``confusion.png`` (a heat map) to ``--output`` (default ``OUTPUT_DIR/rank_diagnostics/<dataset>``).
Definitions: ``seqrank/evaluation/diagnostics.py``.
"""

import argparse
import csv
import io
import logging
import os

import torch
from detectron2.utils.logger import setup_logger
from tabulate import tabulate
from tqdm import tqdm

import seqrank  # noqa: F401  (registers the model components)
from seqrank.cli import ConfigError, add_debug_argument, debug_requested, user_errors
from seqrank.data import register_sor_datasets
from seqrank.engine import Trainer, build_cfg, fit_to_machine
from seqrank.evaluation.diagnostics import aggregate_diagnostics, analyze_image, teacher_forced
from seqrank.utils.atomic_io import atomic_write_bytes, atomic_write_json

logger = logging.getLogger("seqrank.rank_diagnostics")


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m scripts.rank_diagnostics",
        description=__doc__.split("\n\n")[0],
        epilog="Trailing KEY VALUE pairs override the config (e.g. MODEL.WEIGHTS path.pth).",
    )
    parser.add_argument("--config-file", required=True, metavar="FILE", help="model config")
    parser.add_argument("--dataset", help="registered test set (default: DATASETS.TEST[0])")
    parser.add_argument("--output", metavar="DIR", help="output folder")
    parser.add_argument(
        "--max-k", type=int, default=6, help="longest sequence step reported (default 6)"
    )
    parser.add_argument(
        "--num-images", type=int, default=0, help="only the first N images (0 = all)"
    )
    add_debug_argument(parser)
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides KEY VALUE ...")
    return parser


def _fmt(entry):
    value = entry["value"]
    return "n/a" if value is None else f"{value:.3f}"


def step_table(diag):
    """Per-step table: accuracies and mean saliency, with image counts."""
    rows = []
    for k in range(1, diag["max_k"] + 1):
        row = [k, _fmt(diag["topk_by_step"][k]), diag["topk_by_step"][k]["count"]]
        row += [_fmt(diag["conditional_by_step"][k]), diag["conditional_by_step"][k]["count"]]
        if "teacher_forced_by_step" in diag:
            entry = diag["teacher_forced_by_step"][k]
            row += [_fmt(entry), entry["count"]]
        row += [_fmt(diag["saliency_by_step"][k])]
        rows.append(row)
    header = ["step", "top-k", "n", "given right prefix", "n"]
    if "teacher_forced_by_step" in diag:
        header += ["teacher-forced", "n"]
    return tabulate(rows, headers=header + ["mean saliency"])


def confusion_table(diag):
    max_k = diag["max_k"]
    header = ["pick \\ GT rank"] + [str(g) for g in range(1, max_k + 1)] + ["none"]
    rows = [[step + 1] + row for step, row in enumerate(diag["confusion"])]
    return tabulate(rows, headers=header)


def stop_table(diag):
    stop = diag["stop"]
    hist = ", ".join(f"{d:+d}: {c}" for d, c in stop["histogram"].items())
    text = (
        f"stopped too early: {stop['early']}   exactly: {stop['exact']}   "
        f"too late: {stop['late']}   (predicted - GT objects: {hist})"
    )
    if "teacher_forced_stop" in diag:
        text += "\nstops after the last GT object when teacher-forced: "
        text += _fmt(diag["teacher_forced_stop"])
    return text


def _confusion_csv(diag):
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    max_k = diag["max_k"]
    writer.writerow(["pick"] + [f"gt_rank_{g}" for g in range(1, max_k + 1)] + ["none"])
    for step, row in enumerate(diag["confusion"]):
        writer.writerow([step + 1] + row)
    return buffer.getvalue().encode()


def confusion_png(diag):
    """PNG bytes of the confusion heat map, each row normalised to the picks at that step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    counts = np.asarray(diag["confusion"], dtype=np.float64)
    rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    max_k = diag["max_k"]
    fig, ax = plt.subplots(figsize=(1.0 + 0.8 * (max_k + 1), 1.0 + 0.7 * max_k), dpi=100)
    ax.imshow(rates, cmap="viridis", vmin=0, vmax=1)
    for (i, j), count in np.ndenumerate(counts):
        colour = "black" if rates[i, j] > 0.6 else "white"
        ax.text(j, i, f"{int(count)}", ha="center", va="center", color=colour, fontsize=8)
    ax.set_xticks(range(max_k + 1), [str(g) for g in range(1, max_k + 1)] + ["none"])
    ax.set_yticks(range(max_k), [str(k) for k in range(1, max_k + 1)])
    ax.set_xlabel("GT rank of the picked object")
    ax.set_ylabel("predicted step")
    ax.set_title("pick vs GT rank (row-normalised)")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def collect(cfg, dataset, num_images=0):
    """Run the model of ``cfg`` on ``dataset``; returns (image records, teacher records)."""
    # Without weights the model is a random initialisation: seed it as the benchmarks do, so the
    # untrained baseline is the same one every time.
    torch.manual_seed(max(cfg.SEED, 0))
    model = Trainer.load_for_eval(cfg)
    loader = Trainer.build_test_loader(cfg, dataset)
    records, teacher = [], []
    # Batches of TEST.IMS_PER_BATCH images; a last partial batch is cut to num_images.
    size = cfg.TEST.IMS_PER_BATCH
    total = min(len(loader), -(-num_images // size)) if num_images else len(loader)
    with torch.no_grad():
        for index, inputs in enumerate(tqdm(loader, total=total, desc=dataset, unit="batch")):
            if index >= total:
                break
            if num_images:
                inputs = inputs[: num_images - len(records)]
            encoded = model.encode(inputs)
            outputs = model.rank(inputs, *encoded[:5])
            for inp, out in zip(inputs, outputs):
                gts = inp["masks"].numpy()
                records.append(analyze_image(out["masks"], gts, out["saliency"]))
            teacher += teacher_forced(model, inputs, encoded)
    return records, teacher


def write_outputs(output_dir, diag):
    os.makedirs(output_dir, exist_ok=True)
    atomic_write_json(os.path.join(output_dir, "rank_diagnostics.json"), diag)
    atomic_write_bytes(os.path.join(output_dir, "confusion.csv"), _confusion_csv(diag))
    atomic_write_bytes(os.path.join(output_dir, "confusion.png"), confusion_png(diag))


def run(args):
    cfg = build_cfg(args.config_file, args.opts, num_gpus=1)
    for note in fit_to_machine(cfg):
        logger.warning(note)
    dataset = args.dataset or (cfg.DATASETS.TEST[0] if cfg.DATASETS.TEST else None)
    if not dataset:
        raise ConfigError("no dataset: give --dataset or DATASETS.TEST in the config")
    if args.max_k < 1:
        raise ConfigError(f"--max-k must be >= 1, got {args.max_k}")
    register_sor_datasets(cfg.DATASETS.ROOT, (dataset,))
    records, teacher = collect(cfg, dataset, args.num_images)
    diag = aggregate_diagnostics(records, args.max_k, teacher)
    output_dir = args.output or os.path.join(cfg.OUTPUT_DIR, "rank_diagnostics", dataset)
    write_outputs(output_dir, diag)
    weights = cfg.MODEL.WEIGHTS or "random initialisation"
    print(f"\nRanking diagnostics: {dataset}, {diag['images']} images, {weights}\n")
    print(step_table(diag) + "\n")
    print(confusion_table(diag) + "\n")
    print(stop_table(diag) + "\n")
    logger.info("Wrote rank_diagnostics.json, confusion.csv and confusion.png to %s", output_dir)
    return diag


def main(argv=None):
    args = build_parser().parse_args(argv)
    setup_logger(name="seqrank")
    with user_errors("rank_diagnostics", debug_requested(args)):
        return run(args)


if __name__ == "__main__":
    main()
