"""Score a SeqRank results file (``*_coco_format.pth``) on a registered test set.

Example (the original README's command; the results file is passed as MODEL.WEIGHTS):
    python -m scripts.evaluation_tool --eval-only --config-file configs/swinL.yaml \
        DATASETS.TEST "('assr_test',)" \
        MODEL.WEIGHTS assets/seqrank_results/assr_swinL/seqrank_assr_swinL_results.pth \
        OUTPUT_DIR output/seqrank_assr_swinL_results

``--protocol`` adds the official IRSR SA-SOR and the ASSR SOR/MAE protocols; ``all`` prints them
side by side. With the default protocol the metrics of ``TEST.METRICS_OF_INTEREST`` are reported,
in its order (as the original); the other protocols report every ``seqrank`` metric. Writes
``<dataset>_metrics.json``, ``<dataset>_metrics.csv`` and, as the original tool does,
``dataset_<dataset>_method_unknown.csv`` (the ``seqrank`` metrics dict as Python text) to
OUTPUT_DIR.

Results files are checked before anything is decoded: LIMITS.MAX_MASK_PIXELS (default 100 Mpx per
mask) and LIMITS.MAX_RECORD_PIXELS (400 Mpx per image) are config keys like any other. An input
error ends with one line and exit code 1 (--debug shows the traceback).
"""

import argparse
import csv
import io
import logging
import math
import os

from detectron2.data import DatasetCatalog
from detectron2.utils.logger import setup_logger
from tabulate import tabulate

from seqrank.cli import ConfigError, add_debug_argument, debug_requested, user_errors
from seqrank.data import register_sor_datasets
from seqrank.engine.setup import build_cfg, check_output_dir, check_registered
from seqrank.evaluation.metrics import select_metrics
from seqrank.evaluation.results_eval import PROTOCOLS, evaluate_results
from seqrank.evaluation.results_file import MaskLimits, load_results
from seqrank.utils.atomic_io import atomic_write_bytes, atomic_write_json

logger = logging.getLogger("seqrank.evaluation_tool")

PROTOCOL_LABELS = {
    "seqrank": "seqrank (SeqRank's evaluator; the paper's numbers)",
    "irsr": "irsr (official IRSR SA-SOR, Liu et al. TPAMI 2021)",
    "assr": "assr (ASSR SOR / MAE, Siris et al. CVPR 2020)",
}


def build_parser():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config-file", default="", metavar="FILE", help="path to config file")
    parser.add_argument(
        "--eval-only", action="store_true", help="accepted for compatibility (always evaluates)"
    )
    parser.add_argument(
        "--protocol",
        choices=list(PROTOCOLS) + ["all"],
        default="seqrank",
        help="metric protocol(s); default: seqrank",
    )
    add_debug_argument(parser)
    parser.epilog = "Any other arguments are config overrides given as KEY VALUE pairs."
    return parser


def parse_args(argv=None):
    """Options may appear before or after the KEY VALUE config overrides."""
    parser = build_parser()
    args, opts = parser.parse_known_args(argv)
    flags = [o for o in opts if o.startswith("--")]
    if flags:
        parser.error(f"unrecognized arguments: {' '.join(flags)}")
    args.opts = opts
    return args


def _fmt(value):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.4f}"


def _rows(metrics_by_protocol):
    rows = []
    for protocol, metrics in metrics_by_protocol.items():
        for key, value in metrics.items():
            if not key.endswith("_count"):
                rows.append([protocol, key, value, int(metrics.get(key + "_count", 0))])
    return rows


def _table(dataset, metrics_by_protocol):
    if len(metrics_by_protocol) == 1:
        rows = [[m, _fmt(v), n] for _, m, v, n in _rows(metrics_by_protocol)]
        return tabulate(rows, headers=["metric", "value", "images"])
    names = ["sa_sor", "sor", "mae"]
    header = ["metric"] + [PROTOCOL_LABELS[p].split(" (")[0] for p in metrics_by_protocol]
    rows = [
        [n] + [_fmt(m.get(n)) if n in m else "-" for m in metrics_by_protocol.values()]
        for n in names
    ]
    notes = "\n".join(f"  {PROTOCOL_LABELS[p]}" for p in metrics_by_protocol)
    seqrank_only = tabulate(
        [[m, _fmt(v), n] for p, m, v, n in _rows(metrics_by_protocol) if p == "seqrank"],
        headers=["seqrank metric", "value", "images"],
    )
    return tabulate(rows, headers=header) + "\nprotocols:\n" + notes + "\n\n" + seqrank_only


def original_csv_name(dataset):
    """File name the original evaluation tool writes its metrics to."""
    return f"dataset_{dataset}_method_unknown.csv"


def _write_outputs(output_dir, dataset, metrics_by_protocol, nested):
    os.makedirs(output_dir, exist_ok=True)
    payload = metrics_by_protocol if nested else metrics_by_protocol["seqrank"]
    json_path = os.path.join(output_dir, f"{dataset}_metrics.json")
    atomic_write_json(json_path, payload)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["protocol", "metric", "value", "images"])
    for protocol, metric, value, count in _rows(metrics_by_protocol):
        writer.writerow([protocol, metric, "" if _fmt(value) == "n/a" else value, count])
    atomic_write_bytes(
        os.path.join(output_dir, f"{dataset}_metrics.csv"), buffer.getvalue().encode()
    )
    # The original writes str() of its metrics dict under this name (not actually CSV).
    original = str(dict(metrics_by_protocol["seqrank"])) if "seqrank" in metrics_by_protocol else ""
    atomic_write_bytes(os.path.join(output_dir, original_csv_name(dataset)), original.encode())
    return json_path


def evaluate(args):
    cfg = build_cfg(args.config_file or None, args.opts)
    if not cfg.MODEL.WEIGHTS:
        raise ConfigError("MODEL.WEIGHTS must name the results file (*_coco_format.pth)")
    if not cfg.DATASETS.TEST:
        raise ConfigError("DATASETS.TEST is empty: nothing to evaluate")
    register_sor_datasets(cfg.DATASETS.ROOT, cfg.DATASETS.TEST)
    check_registered(cfg, ("TEST",))
    check_output_dir(cfg.OUTPUT_DIR)
    limits = MaskLimits.from_cfg(cfg)
    results = load_results(cfg.MODEL.WEIGHTS, limits)
    protocols = (
        PROTOCOLS if args.protocol == "all" else tuple(dict.fromkeys(("seqrank", args.protocol)))
    )
    # TEST.METRICS_OF_INTEREST selects the reported metrics of the original's own protocol only.
    selected = select_metrics(cfg.TEST.METRICS_OF_INTEREST) if protocols == ("seqrank",) else None
    for dataset in cfg.DATASETS.TEST:
        metrics, missing = evaluate_results(
            results,
            DatasetCatalog.get(dataset),
            protocols,
            cfg.TEST.THRESHOLD,
            selected,
            limits=limits,
            source=cfg.MODEL.WEIGHTS,
        )
        if missing:
            logger.warning(
                "%d image(s) of %s are missing from %s and count as empty predictions: %s",
                len(missing),
                dataset,
                cfg.MODEL.WEIGHTS,
                ", ".join(missing[:20]) + (" ..." if len(missing) > 20 else ""),
            )
        path = _write_outputs(cfg.OUTPUT_DIR, dataset, metrics, nested=len(protocols) > 1)
        print(f"\n{dataset} — {cfg.MODEL.WEIGHTS}\n{_table(dataset, metrics)}\n")
        logger.info("Wrote %s", path)


def main(argv=None):
    args = parse_args(argv)
    setup_logger(name="seqrank")
    # OSError: an output file that cannot be written (its message names the file).
    with user_errors("evaluation_tool", debug_requested(args), also=(OSError,)):
        evaluate(args)


if __name__ == "__main__":
    main()
