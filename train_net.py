#!/usr/bin/env python
"""Train or evaluate SeqRank.

Evaluate a released checkpoint (the seed README's command):
    python train_net.py --eval-only --num-gpu 1 --config-file configs/swinL.yaml \
        MODEL.WEIGHTS seqrank_assr_swinL_ckp.pth DATASETS.TEST "('assr_test',)" \
        OUTPUT_DIR output/assr_inference/

Train on N GPUs (or N CPU processes on a machine without GPUs):
    python train_net.py --num-gpus 4 --config-file configs/swinL.yaml SOLVER.IMS_PER_GPU 8 ...

Across machines (README "Across machines"): --num-machines M --machine-rank R --dist-url
tcp://HOST:PORT on every machine, or torchrun (--nproc-per-node N [--nnodes M ...]) starting
this script. The total batch is SOLVER.IMS_PER_GPU x all processes.
"""

import logging
import sys
import warnings

# detectron2 (pinned commit) calls torch.jit.script at import; not ours to fix, and not news.
warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.* is deprecated")

from detectron2.engine import default_argument_parser  # noqa: E402
from detectron2.evaluation import verify_results  # noqa: E402
from detectron2.utils import comm  # noqa: E402

import seqrank  # noqa: E402,F401  (registers the model components)
from seqrank.checkpoint import CheckpointMismatchError, UntrustedCheckpointError  # noqa: E402
from seqrank.engine import Trainer, setup  # noqa: E402
from seqrank.engine.launch import PeerLost, add_launch_arguments, launch_job  # noqa: E402

logger = logging.getLogger("seqrank")

# Errors caused by the user's inputs (paths, configs, checkpoints, diverging runs): one line, no
# traceback.
USER_ERRORS = (
    FileNotFoundError,
    ValueError,
    CheckpointMismatchError,
    UntrustedCheckpointError,
    FloatingPointError,
    PeerLost,
)


def build_parser():
    parser = default_argument_parser(epilog=__doc__)
    parser.add_argument(
        "--trust-checkpoint",
        action="store_true",
        help="allow checkpoints holding arbitrary pickled Python objects (only files you trust)",
    )
    return add_launch_arguments(parser)


def main(args):
    cfg = setup(args)
    if args.eval_only:
        model = Trainer.load_for_eval(cfg, resume=args.resume)
        results = Trainer.test(cfg, model)
        if comm.is_main_process():
            verify_results(cfg, results)
        return results
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()


def cli(argv=None):
    args = build_parser().parse_args(argv)
    try:
        launch_job(main, args)
    except USER_ERRORS as exc:
        # Errors raised in data-loader workers carry the worker's traceback; keep the last line.
        message = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        logger.error("%s", message)
        sys.exit(f"error: {message}")


if __name__ == "__main__":
    cli()
