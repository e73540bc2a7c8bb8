"""Running a method comparison and writing its report (``scripts.sor_compare``).

Outputs, all written in one atomic step once everything is computed (an error leaves nothing
behind): ``comparison.json`` (``{method: {protocol: {metric: value, ...} or null}}``),
``comparison.csv``, ``comparison.md`` (the paper table, best per column in bold),
``per_image.csv``, ``comparison.png`` (per-image SA-SOR distribution and top-k curve) and
``inputs.json`` (per method: kind, path and the images missing, extra files, resized maps).
"""

import csv
import io
import logging
import math
import os
from typing import Dict, List, Optional, Sequence

from detectron2.data import DatasetCatalog
from tabulate import tabulate

from ..data.annotations import check_record_size
from ..data.datasets import SOR_SPLITS, register_sor_datasets
from ..utils.atomic_io import atomic_write_files, json_bytes
from .compare import (
    HEADLINE,
    LOWER_IS_BETTER,
    CompareInputError,
    Comparison,
    check_method_specs,
    compare_methods,
    open_source,
    parse_method_spec,
)
from .compare_stats import add_bootstrap, per_image_columns, per_image_values
from .metrics import TOPK
from .prediction_maps import MAX_RANK_VALUES
from .protocols import PROTOCOLS
from .results_file import MaskLimits

__all__ = [
    "OUTPUT_FILES",
    "build_comparison",
    "load_dataset",
    "markdown_table",
    "render_outputs",
    "run_comparison",
]

logger = logging.getLogger(__name__)

OUTPUT_FILES = (
    "comparison.json",
    "comparison.csv",
    "comparison.md",
    "per_image.csv",
    "comparison.png",
    "inputs.json",
)
COLUMN_LABELS = {
    ("seqrank", "sa_sor"): "seqrank SA-SOR",
    ("seqrank", "sor"): "seqrank SOR",
    ("seqrank", "mae"): "seqrank MAE",
    ("irsr", "sa_sor"): "irsr SA-SOR",
    ("assr", "sor"): "assr SOR",
    ("assr", "mae"): "assr MAE",
    ("sod", "mae"): "SOD MAE",
    ("sod", "s_measure"): "S-measure",
    ("sod", "e_measure"): "E-measure",
    ("sod", "weighted_f"): "wF",
    ("sod", "max_f"): "max F",
}
PROTOCOL_NOTES = {
    "seqrank": "seqrank: SeqRank's evaluator (the paper's numbers)",
    "irsr": "irsr: official IRSR SA-SOR (Liu et al., TPAMI 2021)",
    "assr": "assr: ASSR SOR / MAE at 640 x 480 (Siris et al., CVPR 2020)",
    "sod": "SOD: pysodmetrics on the grey map vs the binary GT saliency map",
}


# --------------------------------------------------------------------------- running


def load_dataset(dataset: str, root: str, limits: Optional[MaskLimits] = None) -> List[dict]:
    """The records of a registered SOR dataset under ``root``, or a one-line error. Each
    record's GT masks are checked against ``limits`` before any is rasterised."""
    limits = limits or MaskLimits()
    register_sor_datasets(root, [dataset])
    if dataset not in DatasetCatalog:
        raise CompareInputError(
            f"--dataset {dataset}: unknown dataset; use one of {', '.join(SOR_SPLITS)} or "
            "<id>_<split> with <root>/<id>/<id>_<split>.json"
        )
    try:
        records = DatasetCatalog.get(dataset)
        for record in records:
            check_record_size(record, limits.max_mask_pixels, limits.max_record_pixels)
    except (FileNotFoundError, ValueError) as exc:
        raise CompareInputError(f"--dataset {dataset} (root {root}): {exc}") from exc
    if not records:
        raise CompareInputError(f"--dataset {dataset} (root {root}): the dataset has no image")
    return records


def build_comparison(
    dataset: str,
    preds: Sequence[str],
    dataset_root: str,
    protocols: Sequence[str] = PROTOCOLS,
    bootstrap: int = 0,
    seed: int = 0,
    sod_metrics: bool = False,
    threshold: float = 0.5,
    progress: bool = True,
    workers: int = 1,
    limits: Optional[MaskLimits] = None,
) -> Comparison:
    """Compare the methods ``preds`` (``NAME=[KIND:]PATH`` strings) on ``dataset``. Every input
    is opened and checked before any image is scored; nothing is written. ``limits`` bound the
    GT masks of a record and the masks of a results file (defaults: LIMITS.*)."""
    specs = [parse_method_spec(p) for p in preds]
    check_method_specs(specs)
    records = load_dataset(dataset, dataset_root, limits)
    names = [r["image_name"] for r in records]
    sources = {spec.name: open_source(spec, names, limits) for spec in specs}
    comparison = compare_methods(
        dataset, records, sources, protocols, threshold, sod_metrics, progress, workers
    )
    _log_inputs(comparison)
    if bootstrap:
        add_bootstrap(comparison, bootstrap, seed)
    return comparison


def run_comparison(
    dataset: str, preds: Sequence[str], dataset_root: str, output_dir: str, **options
) -> Comparison:
    """:func:`build_comparison` (``options`` are its keywords), then the files of
    :data:`OUTPUT_FILES` written to ``output_dir`` in one atomic step."""
    comparison = build_comparison(dataset, preds, dataset_root, **options)
    files = render_outputs(comparison, options.get("bootstrap", 0), options.get("seed", 0))
    os.makedirs(output_dir, exist_ok=True)
    atomic_write_files({os.path.join(output_dir, k): v for k, v in files.items()})
    logger.info("Wrote %s to %s", ", ".join(files), output_dir)
    return comparison


def _some(names, limit=10):
    return ", ".join(names[:limit]) + (" ..." if len(names) > limit else "")


def _log_inputs(comparison):
    for m in comparison.methods.values():
        if m.missing:
            logger.warning(
                "%s: %d image(s) have no prediction and count as empty: %s",
                m.name,
                len(m.missing),
                _some(m.missing),
            )
        if m.extra:
            logger.warning(
                "%s: %d file(s)/record(s) match no image of %s and were ignored: %s",
                m.name,
                len(m.extra),
                comparison.dataset,
                _some(m.extra),
            )
        if m.resized:
            logger.warning(
                "%s: %d map(s) differ in size from the GT and were resized (%s): %s",
                m.name,
                len(m.resized),
                "nearest neighbour" if m.kind == "rankmap" else "bilinear",
                _some(m.resized),
            )
        if m.many_values:
            logger.warning(
                "%s: %d rank map(s) have %d or more objects (grey values), each taken as one "
                "object (saliency maps? force %s=saliency:PATH): %s",
                m.name,
                len(m.many_values),
                MAX_RANK_VALUES,
                m.name,
                _some(m.many_values),
            )


# --------------------------------------------------------------------------- rendering


def table_columns(comparison: Comparison):
    return [(p, m) for p, m in HEADLINE if p in comparison.protocols]


def _value(method, protocol, metric) -> Optional[float]:
    summary = method.summary.get(protocol)
    value = None if summary is None else summary.get(metric)
    return None if value is None or math.isnan(value) else float(value)


def _best(comparison, column):
    values = [_value(m, *column) for m in comparison.methods.values()]
    values = [v for v in values if v is not None]
    if not values:
        return None
    return min(values) if column[1] in LOWER_IS_BETTER else max(values)


def _cell(method, protocol, metric, best, with_ci):
    value = _value(method, protocol, metric)
    if method.summary.get(protocol) is None:
        return "–"
    if value is None:
        return "n/a"
    text = f"{value:.4f}"
    if best is not None and value == best:
        text = f"**{text}**"
    ci = method.summary[protocol].get(f"{metric}_ci95")
    if with_ci and ci and not any(math.isnan(c) for c in ci):
        text += f" [{ci[0]:.4f}, {ci[1]:.4f}]"
    return text


def markdown_table(comparison: Comparison, bootstrap: int = 0, seed: int = 0) -> str:
    """The comparison table (methods x headline metrics), best per column in bold, then notes
    and a table of what was read for each method."""
    columns = table_columns(comparison)
    best = {c: _best(comparison, c) for c in columns}
    rows = [
        [m.name] + [_cell(m, p, k, best[(p, k)], bootstrap > 0) for p, k in columns]
        for m in comparison.methods.values()
    ]
    table = tabulate(
        rows, headers=["method"] + [COLUMN_LABELS[c] for c in columns], tablefmt="github"
    )
    notes = [
        f"{comparison.dataset}, {len(comparison.images)} images. Best per column in **bold**; "
        "– = protocol not applicable; n/a = no image counted.",
        "Protocols: "
        + "; ".join(PROTOCOL_NOTES[p] for p in comparison.protocols)
        + ". MAE as a fraction (papers print x100).",
    ]
    if bootstrap:
        notes.append(
            f"[low, high]: 95 % confidence interval from {bootstrap} bootstrap resamples of the "
            f"images (seed {seed})."
        )
    inputs = tabulate(
        [
            [
                m.name,
                m.kind,
                m.path,
                len(comparison.images) - len(m.missing),
                len(m.missing),
                len(m.extra),
                len(m.resized),
            ]
            for m in comparison.methods.values()
        ],
        headers=["method", "kind", "path", "images", "missing", "extra", "resized"],
        tablefmt="github",
    )
    return table + "\n\n" + "\n".join(notes) + "\n\n" + inputs + "\n"


def comparison_json(comparison: Comparison) -> bytes:
    payload = {
        name: {p: m.summary.get(p) for p in comparison.protocols}
        for name, m in comparison.methods.items()
    }
    return json_bytes(payload, indent=1)


def _csv_number(value):
    if value is None:
        return ""
    return "nan" if math.isnan(value) else repr(float(value))


def inputs_json(comparison: Comparison) -> bytes:
    """What was read for each method: kind, path and the full lists the log abbreviates."""
    payload = {
        name: {
            "kind": m.kind,
            "path": m.path,
            "images": len(comparison.images) - len(m.missing),
            "missing": m.missing,
            "extra": m.extra,
            "resized": m.resized,
            "many_values": m.many_values,
        }
        for name, m in comparison.methods.items()
    }
    return json_bytes(payload, indent=1)


def comparison_csv(comparison: Comparison) -> bytes:
    """Long format: one row per method, protocol and metric (empty value: not applicable)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(
        ["method", "kind", "protocol", "metric", "value", "ci95_low", "ci95_high", "images"]
    )
    for m in comparison.methods.values():
        for protocol in comparison.protocols:
            summary = m.summary.get(protocol)
            if summary is None:
                for p, metric in HEADLINE:
                    if p == protocol:
                        writer.writerow([m.name, m.kind, protocol, metric, "", "", "", 0])
                continue
            for metric, value in summary.items():
                if metric.endswith("_count") or metric.endswith("_ci95"):
                    continue
                ci = summary.get(f"{metric}_ci95") or [None, None]
                count = int(summary.get(f"{metric}_count", 0))
                row = [m.name, m.kind, protocol, metric, _csv_number(value)]
                writer.writerow(row + [_csv_number(ci[0]), _csv_number(ci[1]), count])
    return buffer.getvalue().encode("utf-8")


def per_image_csv(comparison: Comparison) -> bytes:
    """``method, image`` and every per-image metric; empty = not counted, nan = counted as 0."""
    columns = per_image_columns(comparison.protocols)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["method", "image"] + columns)
    for m in comparison.methods.values():
        for image, scores in zip(comparison.images, m.per_image):
            values = per_image_values(scores)
            writer.writerow([m.name, image] + [_csv_number(values.get(c)) for c in columns])
    return buffer.getvalue().encode("utf-8")


def comparison_png(comparison: Comparison) -> bytes:
    """Per method: the per-image SA-SOR (protocol seqrank; NaN counted as 0, as the protocol
    does) as a box plot, and the top-k curve, k = 1..5."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_dist, ax_topk) = plt.subplots(1, 2, figsize=(11, 4.2), dpi=100)
    names, data = [], []
    styles = [("o", "-"), ("s", "--"), ("^", "-."), ("D", ":"), ("v", "-")]
    for index, m in enumerate(comparison.methods.values()):
        if m.summary.get("seqrank") is None:
            continue
        values = [per_image_values(s).get("seqrank_sa_sor") for s in m.per_image]
        names.append(m.name)
        data.append([0.0 if math.isnan(v) else v for v in values if v is not None])
        topk = [_value(m, "seqrank", f"top{k}") for k in range(1, TOPK + 1)]
        ks = [k for k, v in zip(range(1, TOPK + 1), topk) if v is not None]
        marker, line = styles[index % len(styles)]
        ax_topk.plot(
            ks, [v for v in topk if v is not None], marker=marker, linestyle=line, label=m.name
        )
    if data:
        ax_dist.boxplot(data, showmeans=True)
        ax_dist.set_xticks(range(1, len(names) + 1), names, rotation=15)
    else:
        ax_dist.text(0.5, 0.5, "no method with protocol seqrank", ha="center", va="center")
    ax_dist.set_ylabel("per-image SA-SOR (seqrank)")
    ax_dist.set_title(f"SA-SOR per image, {comparison.dataset}")
    ax_topk.set_xlabel("k")
    ax_topk.set_ylabel("top-k accuracy (seqrank)")
    ax_topk.set_xticks(range(1, TOPK + 1))
    ax_topk.set_ylim(-0.02, 1.02)
    ax_topk.set_title("top-k: k-th prediction matches the k-th GT")
    if ax_topk.lines:
        ax_topk.legend()
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def render_outputs(comparison: Comparison, bootstrap: int = 0, seed: int = 0) -> Dict[str, bytes]:
    """The bytes of every file of :data:`OUTPUT_FILES`, by name."""
    return {
        "comparison.json": comparison_json(comparison),
        "comparison.csv": comparison_csv(comparison),
        "comparison.md": markdown_table(comparison, bootstrap, seed).encode("utf-8"),
        "per_image.csv": per_image_csv(comparison),
        "comparison.png": comparison_png(comparison),
        "inputs.json": inputs_json(comparison),
    }
