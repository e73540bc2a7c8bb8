#!/usr/bin/env python
"""SeqRank terminal demo: rank the salient objects of images and write visualisations.

    cd demo
    python demo.py --config-file ../configs/swinL.yaml --input examples/*.jpg --output output \\
        --opts MODEL.WEIGHTS seqrank_irsr_swinL_ckp.pth

``--input`` takes files, quoted glob patterns (expanded here, e.g. ``"examples/*.jpg"``) and
directories (their image files), in any mix. For an input ``{stem}.{ext}`` it writes to
``--output``:

* ``{stem}_overlay.png``: the image with the ranked masks, each labelled ``"<rank> <score>%"``;
* ``{stem}_colormap.png``: the rank colour map (rank 1 = RGB (234, 87, 61) on top);
* ``{stem}_rank{k}_obj{score}_sal{saliency}.png``: per ranked object, its mask (white) with its box;
* ``{stem}.json``: ranks, boxes, objectness scores, saliency and RLE masks (``counts`` as str).

Two inputs with the same stem get ``{stem}_2``, ``{stem}_3``, ... for the later ones. Missing or
unreadable inputs are reported and skipped. An input inside ``--output`` is a command-line error
(the next run would rank this run's outputs). Exit status: 0 if at least one image was processed,
1 otherwise (2 for command-line errors); ``--debug`` shows the traceback of a model that cannot
be built. Runs on the CPU when there is no GPU.

``--video-input clip.mp4`` writes ``{output}/clip_ranked.mp4`` (each frame drawn as an overlay)
and ``{output}/clip.jsonl`` (one JSON line per frame: ranks, boxes, scores, saliency, RLE masks);
``--webcam`` ranks the default camera live in a window and says so in one line when there is no
camera. A video that cannot be read is one error line and exit status 1.
"""

import argparse
import glob
import io
import logging
import math
import os
import re
import sys
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# `python demo.py` from inside demo/ must find the seqrank package without an install.
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

import cv2  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402
from tqdm import tqdm  # noqa: E402
from tqdm.contrib.logging import logging_redirect_tqdm  # noqa: E402

import seqrank  # noqa: E402,F401  (registers the SeqRank model components)
from seqrank.cli import (  # noqa: E402
    SeqRankUserError,
    add_debug_argument,
    add_predictor_arguments,
    debug_requested,
    setup_cli_logging,
)
from seqrank.data.image_io import IMAGE_EXTENSIONS, read_rgb  # noqa: E402
from seqrank.predictor import build_predictor_from_args  # noqa: E402
from seqrank.utils.atomic_io import atomic_write_bytes, atomic_write_json  # noqa: E402
from seqrank.utils.masks import mask_uint8  # noqa: E402
from seqrank.utils.visualize import (  # noqa: E402
    encode_png,
    ranked_objects,
    render_overlay,
    render_rank_colormap,
)
from seqrank.video import check_video, rank_video, rank_webcam  # noqa: E402

logger = logging.getLogger("seqrank.demo")

_GLOB_CHARS = "*?["


def get_parser():
    parser = argparse.ArgumentParser(
        description="SeqRank terminal demo: rank salient objects and save visualisations.",
        epilog="Example: python demo.py --config-file ../configs/swinL.yaml "
        "--input examples/*.jpg --output output --opts MODEL.WEIGHTS seqrank_irsr_swinL_ckp.pth",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--video-input",
        metavar="VIDEO",
        help="rank every frame of a video: writes OUTPUT/<name>_ranked.mp4 (overlays) and "
        "OUTPUT/<name>.jsonl (one line per frame: ranks, scores, RLE masks)",
    )
    source.add_argument(
        "--webcam",
        action="store_true",
        help="rank the frames of the default camera live in a window (Esc quits); records go "
        "to OUTPUT/webcam.jsonl",
    )
    source.add_argument(
        "--input",
        nargs="+",
        metavar="PATH",
        help="image files, glob patterns (quote them to let the demo expand them) or directories",
    )
    parser.add_argument(
        "--output",
        default="output",
        help="output directory (created if needed; must not hold any input)",
    )
    add_debug_argument(parser)
    parser.add_argument(
        "--confidence-threshold",
        type=float,
        default=0.5,
        metavar="T",
        help="accepted for compatibility with the original demo; it has no effect on SeqRank, "
        "which ranks objects until its objectness or saliency falls below 0.001",
    )
    add_predictor_arguments(parser)
    return parser


def _expand_one(value):
    """Paths named by one --input value (a file, a directory or a glob pattern)."""
    path = os.path.expanduser(value)
    if os.path.isdir(path):
        found = [p for p in glob.glob(os.path.join(glob.escape(path), "*")) if _is_image_name(p)]
        if not found:
            logger.warning(
                "%s: directory contains no image files (%s)", value, "/".join(IMAGE_EXTENSIONS)
            )
        return sorted(found)
    if not os.path.exists(path) and any(c in path for c in _GLOB_CHARS):
        found = [p for p in glob.glob(path) if os.path.isfile(p)]
        if not found:
            logger.warning("%s: no file matches this pattern", value)
        return sorted(found)
    if not os.path.isfile(path):
        logger.warning("image file not found, skipped: %s", value)
        return []
    return [path]


def _is_image_name(path):
    return os.path.isfile(path) and path.lower().endswith(IMAGE_EXTENSIONS)


def expand_inputs(values):
    """Existing input files in command-line order, duplicates removed; missing ones are reported."""
    paths, seen = [], set()
    for value in values:
        for path in _expand_one(value):
            key = os.path.realpath(path)
            if key not in seen:
                seen.add(key)
                paths.append(path)
    return paths


def inputs_in_output(paths, output_dir):
    """The input ``paths`` that lie inside ``output_dir`` (symbolic links resolved)."""
    root = os.path.realpath(output_dir)
    return [p for p in paths if os.path.realpath(p).startswith(root + os.sep)]


def output_stem(path, used):
    """File stem for ``path``'s outputs, made unique among the ``used`` stems (updated in place)."""
    base = os.path.splitext(os.path.basename(path))[0] or "image"
    stem, n = base, 1
    while stem in used:
        n += 1
        stem = f"{base}_{n}"
    used.add(stem)
    return stem


def rank_png(mask, bbox):
    """PNG bytes of one ranked object: the mask in white on black, with its box (3 px outline)."""
    binary = mask_uint8(mask) * 255
    canvas = Image.fromarray(binary).convert("RGB")
    if all(math.isfinite(v) for v in bbox):
        x1, y1, x2, y2 = (float(v) for v in bbox)
        box = [min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)]
        ImageDraw.Draw(canvas).rectangle(box, outline=(255, 255, 255), width=3)
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG")
    return buffer.getvalue()


def rank_filename(stem, rank, score, saliency):
    return f"{stem}_rank{rank}_obj{round(score, 5)}_sal{round(saliency, 5)}.png"


def remove_stale_rank_files(stem, output_dir):
    """Delete per-rank PNGs of ``stem`` left by an earlier run (their names carry old scores)."""
    pattern = re.compile(re.escape(stem) + r"_rank\d+_obj[^_]*_sal[^_]*\.png")
    for name in os.listdir(output_dir):
        if pattern.fullmatch(name):
            os.remove(os.path.join(output_dir, name))


def result_json(result, stem, path, height, width):
    """JSON document of one image; column layout of a results-file record, masks as str RLE."""
    objects = ranked_objects(result)
    return {
        "image_name": stem,
        "input": path,
        "height": height,
        "width": width,
        "num": len(objects),
        "ranks": [o["rank"] for o in objects],
        "bboxes": [o["bbox"] for o in objects],
        "scores": [o["objectness"] for o in objects],
        "saliency": [o["saliency"] for o in objects],
        "masks": [o["mask"] for o in objects],
    }


def write_outputs(image_rgb, result, stem, path, output_dir):
    """Write every output file of one image; each appears atomically (tmp file + rename)."""
    height, width = image_rgb.shape[:2]
    out = os.path.join(output_dir, stem)
    overlay_bgr = cv2.cvtColor(render_overlay(image_rgb, result), cv2.COLOR_RGB2BGR)
    atomic_write_bytes(f"{out}_overlay.png", encode_png(overlay_bgr))
    colormap_bgr = render_rank_colormap(result, height, width)
    atomic_write_bytes(f"{out}_colormap.png", encode_png(colormap_bgr))
    remove_stale_rank_files(stem, output_dir)
    ranked = zip(result["masks"], result["bboxes"], result["scores"], result["saliency"])
    for k, (mask, bbox, score, saliency) in enumerate(ranked):
        name = rank_filename(stem, k + 1, float(score), float(saliency))
        atomic_write_bytes(os.path.join(output_dir, name), rank_png(mask, bbox))
    atomic_write_json(f"{out}.json", result_json(result, stem, path, height, width), indent=1)


def process_image(predictor, path, stem, output_dir):
    """Rank one image and write its outputs.

    Raises:
        FileNotFoundError, ValueError: the image cannot be read.
        OSError: an output file cannot be written.
    """
    image = read_rgb(path, apply_exif=True)  # like detectron2's read_image in the original
    start = time.perf_counter()
    result = predictor(image, stem)
    elapsed = time.perf_counter() - start
    write_outputs(image, result, stem, path, output_dir)
    scores = ", ".join(f"{s:.3f}" for s in result["scores"])
    logger.info(
        "%s: %d ranked objects in %.2fs, obj-scores [%s]",
        path,
        len(result["masks"]),
        elapsed,
        scores,
    )


def run(args, paths):
    """Process the input ``paths``; returns the number of images processed."""
    if not paths:
        logger.error("no input image found")
        return 0
    try:
        predictor = build_predictor_from_args(
            args.config_file, args.opts, args.trust_checkpoint, args.precision
        )
    except SeqRankUserError as exc:
        logger.error("cannot build the model: %s", exc, exc_info=debug_requested(args))
        return 0
    try:
        os.makedirs(args.output, exist_ok=True)
    except OSError as exc:
        logger.error("cannot create the output directory: %s", exc)
        return 0
    processed, used_stems = 0, set()
    for path in tqdm(paths, desc="SeqRank", unit="image"):
        stem = output_stem(path, used_stems)
        try:
            process_image(predictor, path, stem, args.output)
        except (OSError, ValueError) as exc:
            used_stems.discard(stem)
            logger.warning("skipped: %s", exc)
            continue
        processed += 1
    logger.info("%d of %d images processed; outputs in %s", processed, len(paths), args.output)
    return processed


def run_video(args):
    """``--video-input`` / ``--webcam``: exit status 0, or 1 with one error line."""
    try:
        if args.video_input:
            check_video(args.video_input)  # before the model is built: a bad file fails fast
        predictor = build_predictor_from_args(
            args.config_file, args.opts, args.trust_checkpoint, args.precision
        )
        if args.webcam:
            rank_webcam(predictor, args.output)
        else:
            video, jsonl, count = rank_video(predictor, args.video_input, args.output)
            logger.info("%d frames: %s and %s", count, video, jsonl)
    except SeqRankUserError as exc:
        logger.error("%s", exc, exc_info=debug_requested(args))
        return 1
    return 0


def main(argv=None):
    parser = get_parser()
    args = parser.parse_args(argv)
    setup_cli_logging(timestamps=True)
    if args.video_input or args.webcam:
        with logging_redirect_tqdm():
            return run_video(args)
    paths = expand_inputs(args.input)
    clash = inputs_in_output(paths, args.output)
    if clash:
        parser.error(
            f"--output {args.output} holds {len(clash)} of the inputs (e.g. {clash[0]}); a later "
            "run would rank this run's outputs: choose another output folder"
        )
    with logging_redirect_tqdm():
        processed = run(args, paths)
    return 0 if processed else 1


if __name__ == "__main__":
    sys.exit(main())
