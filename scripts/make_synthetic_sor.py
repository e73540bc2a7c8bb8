"""Generate the synthetic salient-object-ranking benchmark in the SeqRank dataset layout.

Usage::

    python -m scripts.make_synthetic_sor --root datasets --name synsor --seed 0 \\
        --num-train 600 --num-test 100 --size 128

writes ``datasets/synsor/synsor_{train,test}.json`` and ``datasets/synsor/images/{train,test}/``.
An existing dataset generated with the same parameters is kept ("cached"); ``--force``
regenerates it. See docs/SYNTHETIC.md for the scenes and the ground-truth ranking rule.
"""

import argparse
import logging
import sys

from seqrank.cli import positive_int, setup_cli_logging
from seqrank.data.synthetic import MAX_OBJECTS, make_synthetic_sor

logger = logging.getLogger(__name__)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m scripts.make_synthetic_sor",
        description="Generate the synthetic SOR benchmark (SeqRank layout) under ROOT/NAME.",
    )
    parser.add_argument("--root", default="datasets", help="dataset root (cfg.DATASETS.ROOT)")
    parser.add_argument("--name", default="synsor", help="dataset name (folder and file prefix)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--num-train", type=positive_int, default=600, help="train images")
    parser.add_argument("--num-test", type=positive_int, default=100, help="test images")
    parser.add_argument(
        "--size", type=positive_int, default=128, help="image height and width (default 128)"
    )
    parser.add_argument("--height", type=positive_int, help="image height (overrides --size)")
    parser.add_argument("--width", type=positive_int, help="image width (overrides --size)")
    parser.add_argument(
        "--order",
        choices=("chain", "global"),
        default="chain",
        help="GT attention order after the most conspicuous object: chain = nearest unvisited "
        "object next (default), global = largest unvisited object next (docs/SYNTHETIC.md)",
    )
    parser.add_argument(
        "--min-objects",
        type=positive_int,
        default=1,
        metavar="N",
        help=f"fewest objects per image, 1-{MAX_OBJECTS} (default 1; SA-SOR scores a one-object "
        "image 0, so a dataset's mean SA-SOR is capped by its share of one-object images)",
    )
    parser.add_argument(
        "--force", action="store_true", help="regenerate even if the dataset already exists"
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    setup_cli_logging()
    try:
        target = make_synthetic_sor(
            args.root,
            name=args.name,
            seed=args.seed,
            num_train=args.num_train,
            num_test=args.num_test,
            height=args.height or args.size,
            width=args.width or args.size,
            force=args.force,
            order=args.order,
            min_objects=args.min_objects,
            progress=not args.no_progress,
        )
    except (ValueError, OSError) as exc:
        sys.exit(f"make_synthetic_sor: error: {exc}")
    logger.info("Dataset ready: %s", target)
    return target


if __name__ == "__main__":
    main()
