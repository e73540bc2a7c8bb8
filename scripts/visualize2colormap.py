"""Render every image of a SeqRank results file as a colour map.

Usage::

    python -m scripts.visualize2colormap -p output/assr/assr_test_coco_format.pth -o colormaps

writes ``<image_name>_colormap.png`` (BGR colour table of seqrank/utils/colormap.py, most salient
object on top) for each image. The canvas is each image's own mask size; a record without masks
gives an all-black 480 x 640 image because the results file does not store the image size.

Nothing is decoded before it is checked: ``--max-mask-pixels`` (default 100 Mpx) bounds one mask,
``--max-record-pixels`` (default 400 Mpx) all masks of one image. An input error ends with one
line and exit code 1 (``--debug`` shows the traceback).
"""

import argparse
import logging
import os

import cv2
from tqdm import tqdm

from seqrank.cli import (
    add_debug_argument,
    debug_requested,
    setup_cli_logging,
    user_errors,
)
from seqrank.evaluation.results_file import (
    MaskLimits,
    ResultsFileError,
    add_mask_limit_arguments,
    decode_masks,
    load_results,
)
from seqrank.utils.atomic_io import atomic_write_bytes
from seqrank.utils.colormap import render_colormap

logger = logging.getLogger(__name__)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m scripts.visualize2colormap",
        description="Write <image_name>_colormap.png for every image of a SeqRank results file.",
    )
    parser.add_argument(
        "-p",
        "--path",
        "--pth-file",
        dest="path",
        required=True,
        help="results file (<dataset>_coco_format.pth); --pth-file is the original's name",
    )
    parser.add_argument("-o", "--output", required=True, help="output folder (created if needed)")
    add_mask_limit_arguments(parser)
    add_debug_argument(parser)
    return parser.parse_args(argv)


def colormap_path(output_dir, image_name):
    """Output PNG path for ``image_name``; names that would leave ``output_dir`` are refused."""
    name = str(image_name)
    path = os.path.join(output_dir, f"{name}_colormap.png")
    inside = os.path.abspath(output_dir) + os.sep
    if os.path.isabs(name) or not os.path.abspath(path).startswith(inside):
        raise ResultsFileError(f"image name {name!r} would write outside {output_dir}")
    return path


def write_png(path, image):
    """Encode ``image`` as PNG and write it atomically."""
    ok, encoded = cv2.imencode(".png", image)
    if not ok:
        raise OSError(f"cv2 could not encode {path}")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    atomic_write_bytes(path, encoded.tobytes())


def visualize(results_path, output_dir, limits=None):
    """Write one colour map per image of ``results_path``; returns the number written."""
    results = load_results(results_path, limits)
    os.makedirs(output_dir, exist_ok=True)
    for image_name, record in tqdm(results.items(), desc="colormaps", unit="img"):
        where = f"{results_path}: record '{image_name}'"
        canvas = render_colormap(decode_masks(record, limits, where))
        write_png(colormap_path(output_dir, image_name), canvas)
    logger.info("Wrote %d colour maps to %s", len(results), output_dir)
    return len(results)


def main(argv=None):
    args = parse_args(argv)
    setup_cli_logging()
    limits = MaskLimits.from_args(args)
    # OSError: an output folder or file that cannot be written (its message names it).
    with user_errors("visualize2colormap", debug_requested(args), also=(OSError,)):
        visualize(args.path, args.output, limits)


if __name__ == "__main__":
    main()
