"""SeqRank browser demo: upload an image, see its salient objects ranked.

    sh launch.sh PATH_TO_CHECKPOINT [--host H] [--port P]
    python -m online.app --config-file configs/swinL.yaml --output output \\
        --opts MODEL.WEIGHTS seqrank_irsr_swinL_ckp.pth

Serves http://127.0.0.1:10000 by default (Flask, threaded; one model call at a time).

Routes:

* ``GET /``: the upload page. ``POST /`` (multipart field ``file``) renders the same page with the
  results, so the page works without JavaScript; with JavaScript the page calls the JSON API.
* ``POST /api/rank`` (multipart field ``file``) returns::

    {"image": {"height", "width", "original_height", "original_width",
               "display_height", "display_width"},
     "objects": [{"rank", "bbox": [x1, y1, x2, y2], "objectness", "saliency",
                  "mask": {"size": [h, w], "counts": str}, "color": "#rrggbb",
                  "label_box": [x1, y1, x2, y2] or null}, ...],
     "colormap_png_base64": str, "overlay_png_base64": str}

  Objects are in rank order; ``mask`` is a COCO RLE at the uploaded image's full resolution
  (``height`` x ``width``, equal to ``original_*``), and boxes are in its pixels; ``color`` is the
  rank's colour in the colour map, the overlay and the table (one palette); ``label_box`` is where
  the overlay's label of that rank lies, in display pixels. The colour map and overlay PNGs are
  ``display_height`` x ``display_width``.

The page shows the checkpoint and config in use (and why that config) and the model's training
datasets; for a model trained on the synthetic benchmark it says that its ranks on photos are not
meaningful. ``GET /favicon.ico`` serves the icon.

Errors are JSON ``{"error": message}`` (an HTML page with the message for ``POST /``):

* 400: no multipart field ``file`` (e.g. a wrong field name), or an empty upload;
* 413: the request is larger than ``--max-upload-mb`` (default 20), or the image has more than
  ``--max-pixels`` pixels (default ``MAX_PIXELS``, 40 Mpx; read from the header, before decoding);
* 415: the upload is not a decodable JPEG/PNG/BMP/GIF/TIFF/WebP image (other file types,
  truncated or corrupt images);
* 503: the upload waited ``DECODE_WAIT_S`` seconds for one of the ``--max-concurrent-decodes``
  slots (too many uploads at once);
* 405: another method than POST on ``/api/rank``; 404: an unknown ``/api/`` path.

Uploads stay in memory (nothing is written to disk). The model ranks the full-resolution upload,
as the original web demo does. Only the images shown (input, colour map, overlay) are downscaled
when their longer side exceeds ``--max-side`` (default 1600 px). At most
``--max-concurrent-decodes`` (default 2) uploads are decoded and ranked at once, the others wait
(503 after ``DECODE_WAIT_S`` seconds): a 35 KB PNG can decode to 100 MB, and each upload in
progress holds its full-resolution image and masks. 16-bit images are scaled to 8 bits like the
data loader does.

EXIF orientation is applied, unlike the original web demo (which ranks the stored pixel order):
browsers show an upload upright, so masks in the stored order would not line up with the photo a
user sees, and the terminal demo (like the original's) applies it too, so both demos rank a phone
photo the same way.

This is werkzeug's development server: for more than a few trusted users put it behind a reverse
proxy (docs/SECURITY.md).
"""

import argparse
import base64
import ctypes
import io
import logging
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
from flask import Flask, current_app, jsonify, render_template, request
from flask.wrappers import Request
from PIL import Image, ImageOps, UnidentifiedImageError
from werkzeug.exceptions import HTTPException, InternalServerError, MethodNotAllowed
from werkzeug.serving import make_server

from seqrank.cli import (
    SeqRankUserError,
    add_debug_argument,
    add_predictor_arguments,
    debug_requested,
    positive_int,
    setup_cli_logging,
)
from seqrank.data.image_io import pil_to_rgb
from seqrank.demo_page import is_synthetic
from seqrank.log_hygiene import plain_werkzeug_log
from seqrank.predictor import build_predictor_from_args
from seqrank.utils.masks import mask_uint8
from seqrank.utils.visualize import encode_png, ranked_objects, render_overlay, render_rank_colormap

__all__ = ["MAX_PIXELS", "UploadError", "create_app", "decode_upload", "main"]

logger = logging.getLogger("seqrank.online")

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Pillow formats accepted for uploads; others (e.g. EPS, which would start Ghostscript) are refused.
UPLOAD_FORMATS = ("JPEG", "PNG", "BMP", "GIF", "TIFF", "WEBP")
# Refuse decompression bombs before decoding: 40 Mpx RGB is already 120 MB of pixels.
MAX_PIXELS = 40_000_000
DEFAULT_MAX_SIDE = 1600
# Uploads decoded and ranked at once; each holds up to MAX_PIXELS x 3 bytes of image (more while
# a 16-bit one is decoded) and, once ranked, its full-resolution masks.
MAX_CONCURRENT_DECODES = 2
DECODE_WAIT_S = 120
_ORIENTATION = 0x0112
# glibc's mallopt parameter: allocations above it are mmapped, so they go back to the OS on free.
_M_MMAP_THRESHOLD = -3


class UploadError(Exception):
    """A request that cannot be ranked; ``status`` is the HTTP status to answer with."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.message = message


class _InMemoryRequest(Request):
    """Keep uploaded files in memory (werkzeug spools large ones to temporary files)."""

    def _get_file_stream(
        self, total_content_length, content_type, filename=None, content_length=None
    ):
        return io.BytesIO()


def decode_upload(data, max_pixels=MAX_PIXELS):
    """Decode uploaded bytes into an H x W x 3 uint8 RGB array (EXIF orientation applied).

    Raises:
        UploadError: 400 for empty data, 413 for too many pixels (checked on the header, before
            decoding), 415 for undecodable data.
    """
    if not data:
        raise UploadError(400, "the uploaded file is empty: choose an image file")
    accepted = ", ".join(f.lower() for f in UPLOAD_FORMATS)
    try:
        with Image.open(io.BytesIO(data), formats=UPLOAD_FORMATS) as img:
            _check_pixels(*img.size, max_pixels)
            img.load()
            # exif_transpose copies even an image it leaves as it is.
            if img.getexif().get(_ORIENTATION, 1) != 1:
                img = ImageOps.exif_transpose(img)
            return pil_to_rgb(img)
    except Image.DecompressionBombError:
        # Pillow's own limit (beyond ours unless --max-pixels is raised) fires while opening.
        raise UploadError(
            413, f"the image has more pixels than the limit of {max_pixels}"
        ) from None
    except UnidentifiedImageError:
        raise UploadError(
            415, f"the upload is not an image in a supported format ({accepted})"
        ) from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise UploadError(415, f"the upload is not a readable image: {exc}") from None


def _check_pixels(width, height, max_pixels):
    if width * height > max_pixels:
        raise UploadError(
            413,
            f"the image is {width} x {height} = {width * height} pixels; the limit is {max_pixels}",
        )


def limit_side(image, max_side):
    """Downscale ``image`` (H x W x C) so that its longer side is at most ``max_side`` pixels
    (for display only)."""
    height, width = image.shape[:2]
    if not max_side or max(height, width) <= max_side:
        return image
    scale = max_side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def display_result(result, size):
    """``result`` with its masks (nearest) and boxes scaled to ``size`` = (height, width)."""
    if not result["masks"]:
        return result
    height, width = np.shape(result["masks"][0])
    if (height, width) == tuple(size):
        return result
    masks = [
        cv2.resize(mask_uint8(m), size[::-1], interpolation=cv2.INTER_NEAREST)
        for m in result["masks"]
    ]
    scale = np.array([size[1] / width, size[0] / height] * 2)
    boxes = [list(np.asarray(b, dtype=np.float64) * scale) for b in result["bboxes"]]
    return {**result, "masks": masks, "bboxes": boxes}


def _b64(data):
    return base64.b64encode(data).decode("ascii")


def _uploaded_bytes():
    """Bytes of the multipart field ``file`` of the current request."""
    upload = request.files.get("file")
    if upload is None:
        got = sorted(set(request.files) | set(request.form))
        hint = f" (got field(s): {', '.join(got)})" if got else ""
        raise UploadError(
            400, f"no image uploaded: send it as the multipart/form-data field 'file'{hint}"
        )
    return upload.read()


class _Ranker:
    """Runs the predictor on the full-resolution upload and renders its outputs at display size;
    one model call at a time (the model is shared).

    At most ``max_decodes`` uploads are in progress (decoding, waiting for the model, ranked,
    rendered) at once: each holds a full-resolution image and, once ranked, its full-resolution
    masks. An upload that waits ``DECODE_WAIT_S`` seconds for a slot gets a 503.
    """

    def __init__(self, predictor, max_side, max_pixels, max_decodes=MAX_CONCURRENT_DECODES):
        self.predictor = predictor
        self.max_side = max_side
        self.max_pixels = max_pixels
        self.lock = threading.Lock()
        self.slots = threading.BoundedSemaphore(max_decodes)
        # Decoding in a pool of max_decodes threads (not in the request threads) keeps the large
        # decode buffers in a few malloc arenas.
        self.decoder = ThreadPoolExecutor(max_decodes, thread_name_prefix="decode")

    def __call__(self, data):
        if not self.slots.acquire(timeout=DECODE_WAIT_S):
            raise UploadError(503, "the server is busy with other uploads; try again")
        try:
            image = self.decoder.submit(decode_upload, data, self.max_pixels).result()
            return self._rank(image)
        finally:
            self.slots.release()

    def _rank(self, image):
        height, width = image.shape[:2]
        display = limit_side(image, self.max_side)
        with self.lock:
            start = time.perf_counter()
            result = self.predictor(image, "upload")
            shown = display_result(result, display.shape[:2])
            colormap = render_rank_colormap(shown, *display.shape[:2])
            overlay, labels = render_overlay(display, shown, with_labels=True)
            overlay = cv2.cvtColor(overlay, cv2.COLOR_RGB2BGR)
            elapsed = time.perf_counter() - start
        logger.info(
            "ranked a %dx%d upload: %d objects in %.2fs", width, height, result["num"], elapsed
        )
        return {
            "image": {
                "height": height,
                "width": width,
                "original_height": height,
                "original_width": width,
                "display_height": display.shape[0],
                "display_width": display.shape[1],
            },
            "objects": _with_label_boxes(ranked_objects(result), labels),
            "colormap_png_base64": _b64(encode_png(colormap)),
            "overlay_png_base64": _b64(encode_png(overlay)),
        }, display


def _with_label_boxes(objects, labels):
    """Add each object's ``label_box`` (its label in the overlay, display pixels, or None)."""
    boxes = {label.rank: label.as_list() for label in labels}
    for obj in objects:
        obj["label_box"] = boxes.get(obj["rank"])
    return objects


def model_info(predictor):
    """What the page says about the model: checkpoint, config (and why), training datasets."""
    cfg = getattr(predictor, "cfg", None)
    resolved = getattr(predictor, "resolved_config", None)
    datasets = list(cfg.DATASETS.TRAIN) if cfg is not None else []
    return {
        "checkpoint": cfg.MODEL.WEIGHTS if cfg is not None else "",
        "config": resolved.describe() if resolved is not None else "",
        "train_datasets": datasets,
        "synthetic": is_synthetic(datasets),
    }


def _input_jpeg_base64(image_rgb):
    ok, buffer = cv2.imencode(".jpg", cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR))
    return _b64(buffer.tobytes()) if ok else ""


def _page(status=200, **context):
    max_bytes = current_app.config["MAX_CONTENT_LENGTH"]
    model = current_app.config["SEQRANK_MODEL_INFO"]
    page = render_template("index.html", max_upload_bytes=max_bytes, model=model, **context)
    return page, status


def _json_error(status, message, headers=None):
    response = jsonify(error=message)
    response.status_code = status
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


def _wants_json():
    return request.path.startswith("/api/")


def _register_routes(app, ranker):
    @app.get("/")
    def index():
        return _page()

    @app.get("/favicon.ico")
    def favicon():
        return app.send_static_file("favicon.svg")

    @app.post("/")
    def rank_form():
        try:
            payload, image = ranker(_uploaded_bytes())
        except UploadError as exc:
            return _page(exc.status, error=exc.message)
        return _page(result=payload, input_base64=_input_jpeg_base64(image))

    @app.post("/api/rank")
    def rank_api():
        try:
            payload, _ = ranker(_uploaded_bytes())
        except UploadError as exc:
            return _json_error(exc.status, exc.message)
        return jsonify(payload)


def _register_error_handlers(app, max_upload_mb):
    @app.errorhandler(413)
    def too_large(exc):
        message = f"the upload is too large: the limit is {max_upload_mb:g} MB"
        if _wants_json():
            return _json_error(413, message)
        return _page(413, error=message)

    @app.errorhandler(MethodNotAllowed)
    def wrong_method(exc):
        allowed = ", ".join(sorted(exc.valid_methods or []))
        message = f"method {request.method} is not allowed on {request.path} (allowed: {allowed})"
        if _wants_json():
            return _json_error(405, message, {"Allow": allowed})
        return exc

    @app.errorhandler(HTTPException)
    def other_http_error(exc):
        if _wants_json():
            return _json_error(exc.code or 500, exc.description or exc.name)
        return exc

    @app.errorhandler(InternalServerError)
    def internal_error(exc):
        if _wants_json():
            return _json_error(500, "internal error while ranking the image (see the server log)")
        return exc


def create_app(
    predictor,
    max_upload_mb=20,
    max_side=DEFAULT_MAX_SIDE,
    max_pixels=MAX_PIXELS,
    max_decodes=MAX_CONCURRENT_DECODES,
):
    """Flask app serving ``predictor`` (callable ``(image_rgb, image_name) -> result dict``)."""
    app = Flask(__name__)
    app.request_class = _InMemoryRequest
    app.config["MAX_CONTENT_LENGTH"] = int(max_upload_mb * 1024 * 1024)
    app.config["SEQRANK_MODEL_INFO"] = model_info(predictor)
    _register_routes(app, _Ranker(predictor, max_side, max_pixels, max_decodes))
    _register_error_handlers(app, max_upload_mb)
    return app


def get_parser():
    parser = argparse.ArgumentParser(description="SeqRank browser demo (Flask).")
    parser.add_argument(
        "--output",
        default="output",
        help="accepted for compatibility with the original command line; nothing is written",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument(
        "--port", type=int, default=10000, help="port to listen on (0: a free one, logged)"
    )
    parser.add_argument(
        "--max-upload-mb", type=float, default=20, help="largest accepted upload in MB"
    )
    parser.add_argument(
        "--max-side",
        type=int,
        default=DEFAULT_MAX_SIDE,
        help="downscale the images shown (input, colour map, overlay) whose longer side exceeds "
        "this many pixels (0: never); the model always ranks the full-resolution upload",
    )
    parser.add_argument(
        "--max-pixels",
        type=positive_int,
        default=MAX_PIXELS,
        help=f"refuse (413) images with more pixels than this (default {MAX_PIXELS})",
    )
    parser.add_argument(
        "--max-concurrent-decodes",
        type=positive_int,
        default=MAX_CONCURRENT_DECODES,
        help="uploads decoded and ranked at the same time; others wait (default "
        f"{MAX_CONCURRENT_DECODES})",
    )
    add_debug_argument(parser)
    add_predictor_arguments(parser)
    return parser


def return_large_buffers_to_the_os():
    """Make glibc mmap every allocation above 1 MB, so that freed decode buffers leave the process.

    Its default threshold grows with the blocks freed (up to 32 MB), after which image buffers
    stay in malloc arenas: measured, 20 concurrent 6000 x 6000 uploads left 4.2 GB resident
    instead of 1.3 GB. Does nothing where the C library is not glibc.
    """
    try:
        ctypes.CDLL("libc.so.6").mallopt(_M_MMAP_THRESHOLD, 1 << 20)
    except (OSError, AttributeError):
        logger.debug("mallopt is not available; memory use after large uploads may stay high")


def main(argv=None):
    args = get_parser().parse_args(argv)
    setup_cli_logging(timestamps=True)
    plain_werkzeug_log()
    try:
        predictor = build_predictor_from_args(
            args.config_file, args.opts, args.trust_checkpoint, args.precision
        )
    except SeqRankUserError as exc:
        logger.error("cannot build the model: %s", exc, exc_info=debug_requested(args))
        return 1
    return_large_buffers_to_the_os()
    app = create_app(
        predictor,
        max_upload_mb=args.max_upload_mb,
        max_side=args.max_side,
        max_pixels=args.max_pixels,
        max_decodes=args.max_concurrent_decodes,
    )
    try:
        server = make_server(args.host, args.port, app, threaded=True)
    except OSError as exc:
        logger.error("cannot serve on %s:%d: %s", args.host, args.port, exc)
        return 1
    # Logged once the socket is bound, with the port it got (the OS picks one for --port 0).
    logger.info("SeqRank web demo: open http://%s:%d in a browser", args.host, server.port)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
