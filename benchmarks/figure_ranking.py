"""Figure: GT attention order vs the order a model predicts, on a few test images.

    python -m benchmarks.figure_ranking --config-file configs/quick_schedules/synsor_tiny.yaml \\
        --output docs/quick_schedule_orders.png --num-images 6 \\
        MODEL.WEIGHTS output/synsor_tiny/model_final.pth

One row per image: the input, the GT colour map and the predicted colour map (rank 1 red, then
yellow, teal, blue, ...: the colours of ``scripts.visualize2colormap``), each object labelled
with its rank; the title of a prediction gives its SA-SOR (protocol ``seqrank``) and how many
objects it returned. Images are taken in dataset order, skipping those with fewer than
``--min-objects`` GT objects (default 3, where the order after the first pick shows).
"""

import argparse
import io
import logging
import os
import sys

import cv2
import numpy as np
import torch
from detectron2.utils.logger import setup_logger

import seqrank  # noqa: F401  (registers the model components)
from seqrank.data import register_sor_datasets
from seqrank.engine import Trainer, build_cfg, fit_to_machine
from seqrank.evaluation.metrics import image_metrics
from seqrank.utils.atomic_io import atomic_write_bytes
from seqrank.utils.colormap import render_colormap

logger = logging.getLogger("seqrank.bench")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config-file", required=True, help="model config")
    parser.add_argument("--output", required=True, help="PNG file to write")
    parser.add_argument("--dataset", help="registered test set (default: DATASETS.TEST[0])")
    parser.add_argument("--num-images", type=int, default=6, help="rows of the figure")
    parser.add_argument("--min-objects", type=int, default=3, help="skip simpler images")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides KEY VALUE ...")
    return parser.parse_args(argv)


def _centres(masks):
    """(x, y) of the pixel deepest inside each mask, where its rank label goes."""
    centres = []
    for mask in masks:
        binary = (np.asarray(mask) > 0.5).astype(np.uint8)
        if not binary.any():
            centres.append(None)
            continue
        dist = cv2.distanceTransform(np.pad(binary, 1), cv2.DIST_L2, 3)[1:-1, 1:-1]
        y, x = np.unravel_index(int(dist.argmax()), dist.shape)
        centres.append((x, y))
    return centres


LABEL_BOX = {"facecolor": "black", "alpha": 0.6, "pad": 1, "linewidth": 0}


def _panel(ax, image, title, masks=()):
    ax.imshow(image)
    ax.set_title(title, fontsize=8)
    ax.axis("off")
    for rank, centre in enumerate(_centres(masks), start=1):
        if centre is not None:
            style = {"color": "white", "fontsize": 8, "ha": "center", "va": "center"}
            ax.text(*centre, str(rank), bbox=LABEL_BOX, **style)


def collect(cfg, dataset, count, min_objects):
    """Up to ``count`` (input RGB, GT masks, predicted result) triples."""
    model = Trainer.load_for_eval(cfg)
    rows = []
    with torch.no_grad():
        for inputs in Trainer.build_test_loader(cfg, dataset):
            for inp, out in zip(inputs, model(inputs)):
                gts = inp["masks"].numpy()
                if len(gts) < min_objects:
                    continue
                rgb = cv2.resize(
                    inp["image"].permute(1, 2, 0).numpy().astype(np.uint8),
                    (int(inp["width"]), int(inp["height"])),
                )
                rows.append((rgb, gts, out))
            if len(rows) >= count:
                return rows[:count]
    return rows


def draw(rows, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(rows), 3, figsize=(6.6, 2.3 * len(rows)), dpi=110, squeeze=False)
    for (rgb, gts, out), row in zip(rows, axes):
        height, width = rgb.shape[:2]
        preds = [np.asarray(m) for m in out["masks"]]
        sa_sor = image_metrics(preds, gts)["sa_sor"]
        shown = "n/a" if np.isnan(sa_sor) else f"{sa_sor:.2f}"
        gt_map = render_colormap(gts, height, width)[..., ::-1]
        pred_map = render_colormap(preds, height, width)[..., ::-1]
        _panel(row[0], rgb, "input")
        _panel(row[1], gt_map, f"GT order ({len(gts)} objects)", gts)
        _panel(row[2], pred_map, f"predicted ({len(preds)}), SA-SOR {shown}", preds)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def main(argv=None):
    setup_logger(name="seqrank")
    args = parse_args(argv)
    cfg = build_cfg(args.config_file, args.opts, num_gpus=1)
    for note in fit_to_machine(cfg):
        logger.warning(note)
    dataset = args.dataset or cfg.DATASETS.TEST[0]
    register_sor_datasets(cfg.DATASETS.ROOT, (dataset,))
    rows = collect(cfg, dataset, args.num_images, args.min_objects)
    if not rows:
        sys.exit(f"error: no image of {dataset} has >= {args.min_objects} GT objects")
    title = f"{dataset}: {os.path.basename(cfg.MODEL.WEIGHTS) or 'random initialisation'}"
    atomic_write_bytes(args.output, draw(rows, title))
    logger.info("Wrote %s (%d images)", args.output, len(rows))


if __name__ == "__main__":
    main()
