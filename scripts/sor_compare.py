"""Compare salient-object-ranking methods side by side on one dataset, under every SOR protocol.

Example:
    python -m scripts.sor_compare --dataset assr_test \\
        --pred SeqRank=output/assr_inference/assr_test_coco_format.pth \\
        --pred ASSR=rankmap:/path/to/assr_rank_maps \\
        --pred BASNet=saliency:/path/to/basnet_maps \\
        --protocol all --output output/compare_assr

Each --pred is NAME=PATH where PATH is a SeqRank results file (*_coco_format.pth), a folder of
rank maps (<image_name>.png or TEST.EVAL_SAVE's <image_name>_count_<n>.png; 0 = background, one
grey value per object, larger = more salient) or a folder of saliency maps (continuous grey
PNGs). The kind of a folder is detected; NAME=rankmap:PATH or NAME=saliency:PATH forces it.

Writes comparison.json, comparison.csv, comparison.md, per_image.csv and comparison.png to
--output and prints the table. Bad input: a one-line error and exit code 2, nothing written
(--debug shows the traceback).

Results files are read like every results file (docs/SECURITY.md): the pickle is scanned and
every mask checked before anything is decoded; --max-mask-pixels (default 100 Mpx) bounds one mask
and --max-record-pixels (400 Mpx) the masks of one image, GT masks included.
"""

import argparse
import logging

from detectron2.utils.logger import setup_logger

from seqrank.cli import add_debug_argument, debug_requested, user_errors
from seqrank.config import add_seqrank_config
from seqrank.evaluation.compare import CompareInputError, default_workers
from seqrank.evaluation.compare_report import markdown_table, run_comparison
from seqrank.evaluation.protocols import PROTOCOLS
from seqrank.evaluation.results_file import MaskLimits, add_mask_limit_arguments

PROG = "sor_compare"
# Bad input ends with exit code 2 (as argparse's usage errors), the documented contract.
INPUT_ERROR_EXIT = 2

logger = logging.getLogger("seqrank.sor_compare")


def _default_root():
    from detectron2.config import get_cfg

    cfg = get_cfg()
    add_seqrank_config(cfg)
    return cfg.DATASETS.ROOT


def build_parser():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset", required=True, help="registered test set, e.g. assr_test")
    parser.add_argument(
        "--pred",
        action="append",
        required=True,
        metavar="NAME=[KIND:]PATH",
        help="a method (repeatable); KIND is rankmap or saliency to force a folder's kind",
    )
    parser.add_argument(
        "--protocol",
        choices=list(PROTOCOLS) + ["all"],
        default="all",
        help="SOR protocol(s) to report (default: all)",
    )
    parser.add_argument("--output", required=True, metavar="DIR", help="folder for the outputs")
    parser.add_argument(
        "--dataset-root", default=None, help="overrides DATASETS.ROOT (default assets/datasets)"
    )
    parser.add_argument(
        "--bootstrap",
        type=int,
        nargs="?",
        const=1000,
        default=0,
        metavar="N",
        help="95%% confidence intervals from N resamples of the images (N default 1000)",
    )
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    parser.add_argument(
        "--sod-metrics",
        action="store_true",
        help="add MAE, S-measure, E-measure, weighted F and max F (pysodmetrics)",
    )
    parser.add_argument(
        "--threshold", type=float, default=0.5, help="TEST.THRESHOLD of protocol seqrank (0.5)"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=default_workers(),
        help=f"processes scoring images in parallel (default {default_workers()}: the cores)",
    )
    add_mask_limit_arguments(parser, record_what="masks (predicted, or GT)")
    add_debug_argument(parser)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    setup_logger(name="seqrank")
    # ImportError: --sod-metrics without pysodmetrics; OSError: an output that cannot be written.
    with user_errors(PROG, debug_requested(args), (ImportError, OSError), INPUT_ERROR_EXIT):
        if args.bootstrap < 0:
            raise CompareInputError("--bootstrap: N must be >= 0")
        if args.workers < 1:
            raise CompareInputError("--workers: must be >= 1")
        protocols = PROTOCOLS if args.protocol == "all" else (args.protocol,)
        comparison = run_comparison(
            args.dataset,
            args.pred,
            dataset_root=args.dataset_root or _default_root(),
            output_dir=args.output,
            protocols=protocols,
            bootstrap=args.bootstrap,
            seed=args.seed,
            sod_metrics=args.sod_metrics,
            threshold=args.threshold,
            workers=args.workers,
            limits=MaskLimits.from_args(args),
        )
    print("\n" + markdown_table(comparison, args.bootstrap, args.seed))


if __name__ == "__main__":
    main()
