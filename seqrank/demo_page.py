"""The page ``make demo`` ends with: one self-contained HTML file (images embedded as data URLs)
showing, for a sample of test images, the input, the GT order and the predicted order side by
side (colour maps and labelled overlays in the rank palette), the per-image SA-SOR, the metrics
table of the whole test split and which model produced it.

Shapes: H x W image, N GT masks (most salient first), M predicted masks (rank order).
"""

import base64
import html
import math
import os

import cv2
import numpy as np

from .evaluation.metrics import image_metrics
from .rank_render import rank_color_hex, render_labelled_overlay
from .utils.atomic_io import atomic_write_bytes
from .utils.masks import binary_mask, mask_uint8
from .utils.visualize import encode_png, overlay_label, render_rank_colormap

__all__ = ["MIN_SHOWN_SIDE", "build_panel", "is_synthetic", "render_page", "write_page"]

# Small benchmark images (128 px) are drawn larger so that the rank labels stay legible.
MIN_SHOWN_SIDE = 384


def is_synthetic(dataset_names):
    """True when every dataset is the project's synthetic benchmark (``synsor*``)."""
    names = list(dataset_names)
    return bool(names) and all(n.startswith("synsor") for n in names)


def _upscaled(image_rgb, masks):
    height, width = image_rgb.shape[:2]
    factor = max(1, math.ceil(MIN_SHOWN_SIDE / max(height, width)))
    if factor == 1:
        return image_rgb, [binary_mask(m) for m in masks]
    size = (width * factor, height * factor)
    image = cv2.resize(image_rgb, size, interpolation=cv2.INTER_NEAREST)
    masks = [cv2.resize(mask_uint8(m), size, interpolation=cv2.INTER_NEAREST) for m in masks]
    return image, masks


def _data_url(image_bgr):
    return "data:image/png;base64," + base64.b64encode(encode_png(image_bgr)).decode("ascii")


def _jpeg_url(image_bgr):
    """Photos and overlays on photos: JPEG is a fraction of PNG's size for noisy pixels."""
    ok, buffer = cv2.imencode(
        ".jpg", np.ascontiguousarray(image_bgr), [cv2.IMWRITE_JPEG_QUALITY, 92]
    )
    if not ok:
        raise ValueError(f"JPEG encoding failed for an image of shape {np.shape(image_bgr)}")
    return "data:image/jpeg;base64," + base64.b64encode(buffer.tobytes()).decode("ascii")


def _views(image_rgb, masks, texts):
    """(colour map, overlay) data URLs of ranked ``masks`` drawn over ``image_rgb``, labelled
    with ``texts``."""
    image, shown = _upscaled(image_rgb, masks)
    height, width = image_rgb.shape[:2]
    colormap = render_rank_colormap({"masks": list(masks)}, height, width)
    overlay, _ = render_labelled_overlay(image, shown, texts)
    return _data_url(colormap), _jpeg_url(cv2.cvtColor(overlay, cv2.COLOR_RGB2BGR))


def build_panel(name, image_rgb, gt_masks, result):
    """Everything the page shows of one image: its views and its metrics.

    ``gt_masks``: N x H x W {0, 1}, most salient first; ``result``: the predictor's result.
    GT labels read ``"<rank>"``; predicted ones ``"<rank> <objectness>%"``.
    """
    metrics = image_metrics(result["masks"], gt_masks) or {}
    gt_texts = [str(k + 1) for k in range(len(gt_masks))]
    gt_colormap, gt_overlay = _views(image_rgb, list(gt_masks), gt_texts)
    pred_texts = [overlay_label(k + 1, float(s)) for k, s in enumerate(result["scores"])]
    pred_colormap, pred_overlay = _views(image_rgb, result["masks"], pred_texts)
    return {
        "name": str(name),
        "num_gt": len(gt_masks),
        "num_pred": len(result["masks"]),
        "sa_sor": metrics.get("sa_sor"),
        "sor": metrics.get("sor"),
        "input": _data_url(cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR)),
        "gt_colormap": gt_colormap,
        "gt_overlay": gt_overlay,
        "pred_colormap": pred_colormap,
        "pred_overlay": pred_overlay,
    }


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5rem; color: #222; }
h1 { margin-bottom: 0.2rem; }
.warn { background: #fff4d6; border-left: 4px solid #e0a800; padding: 0.5rem 0.8rem; }
table { border-collapse: collapse; margin: 0.5rem 0 1.2rem; }
td, th { border: 1px solid #ccc; padding: 0.2rem 0.6rem; text-align: left; }
.sample { margin: 1.2rem 0; }
.views { display: flex; flex-wrap: wrap; gap: 0.6rem; }
figure { margin: 0; }
figure img { width: 320px; cursor: zoom-in; image-rendering: pixelated; border: 1px solid #ccc; }
figure img.zoomed { width: min(96vw, 1024px); cursor: zoom-out; }
figcaption { font-size: 0.85rem; color: #555; }
.swatch { display: inline-block; width: 1.1em; height: 1.1em; vertical-align: middle;
          border: 1px solid #555; margin-right: 0.3em; }
"""

_SCRIPT = """
document.querySelectorAll("figure img").forEach(function (img) {
  img.addEventListener("click", function () { img.classList.toggle("zoomed"); });
});
"""

_FAVICON = (
    "data:image/svg+xml,<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 16 16'>"
    "<circle cx='8' cy='8' r='7' fill='%23ea573d'/></svg>"
)


def _number(value, digits=4):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.{digits}f}"


def _per_image(value):
    shown = _number(value, 3)
    return "undefined (counts as 0 in the mean)" if shown == "n/a" else shown


def _metrics_rows(metrics):
    rows = []
    for key, value in metrics.items():
        if key.endswith("_count"):
            continue
        count = metrics.get(f"{key}_count")
        images = "" if count is None else str(int(count))
        rows.append(
            f"<tr><td>{html.escape(key)}</td><td>{_number(value)}</td><td>{images}</td></tr>"
        )
    return "\n".join(rows)


def _model_section(info):
    datasets = ", ".join(info.get("train_datasets", [])) or "unknown"
    lines = [
        f"<tr><th>checkpoint</th><td>{html.escape(str(info.get('checkpoint', '')))}</td></tr>",
        f"<tr><th>config</th><td>{html.escape(str(info.get('config', '')))}</td></tr>",
        f"<tr><th>trained on</th><td>{html.escape(datasets)}</td></tr>",
        f"<tr><th>evaluated on</th><td>{html.escape(str(info.get('test_dataset', '')))}</td></tr>",
    ]
    section = "<table>" + "\n".join(lines) + "</table>"
    if is_synthetic(info.get("train_datasets", [])):
        section += (
            '<p class="warn">This model was trained on synthetic shapes only: it shows that the '
            "method learns the synthetic benchmark's order; its ranks on photos are not "
            "meaningful.</p>"
        )
    return section


def _legend(count):
    swatches = "".join(
        f'<span class="swatch" style="background: {rank_color_hex(k)}"></span>{k}&nbsp; '
        for k in range(1, count + 1)
    )
    return f"<p>Rank colours: {swatches}</p>"


def _sample_section(panel):
    figures = [
        ("input", "Input"),
        ("gt_colormap", f"GT order ({panel['num_gt']} objects)"),
        ("gt_overlay", "GT order, labelled"),
        ("pred_colormap", f"Predicted order ({panel['num_pred']} objects)"),
        ("pred_overlay", "Predicted, labelled &ldquo;rank objectness%&rdquo;"),
    ]
    views = "".join(
        f'<figure><img src="{panel[key]}" alt="{html.escape(panel["name"])}: {caption}">'
        f"<figcaption>{caption}</figcaption></figure>"
        for key, caption in figures
    )
    title = (
        f"{html.escape(panel['name'])}: SA-SOR {_per_image(panel['sa_sor'])}, "
        f"SOR {_per_image(panel['sor'])}"
    )
    return f'<section class="sample"><h3>{title}</h3><div class="views">{views}</div></section>'


def render_page(panels, metrics, info, extra_sections=()):
    """The HTML text of the page (``extra_sections``: further HTML blocks, e.g. ranked photos)."""
    max_rank = max([p["num_gt"] for p in panels] + [p["num_pred"] for p in panels] + [1])
    samples = "\n".join(_sample_section(p) for p in panels)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>SeqRank: make demo results</title>
<link rel="icon" href="{_FAVICON}">
<style>{_STYLE}</style></head>
<body>
<h1>SeqRank: make demo results</h1>
<h2>Model</h2>
{_model_section(info)}
<h2>Metrics on the whole test split ({html.escape(str(info.get('test_dataset', '')))})</h2>
<table><tr><th>metric</th><th>value</th><th>images</th></tr>
{_metrics_rows(metrics)}
</table>
<h2>Sample of test images: GT order vs predicted order</h2>
<p>Click an image to enlarge it.</p>
{_legend(max_rank)}
{samples}
{"".join(extra_sections)}
<script>{_SCRIPT}</script>
</body></html>
"""


def write_page(path, panels, metrics, info, extra_sections=()):
    """Write the page atomically at ``path``; returns ``path``."""
    text = render_page(panels, metrics, info, extra_sections)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    atomic_write_bytes(path, text.encode("utf-8"))
    return path
