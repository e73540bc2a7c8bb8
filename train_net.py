#!/usr/bin/env python
"""Train or evaluate SeqRank.

Evaluate a released checkpoint (the seed README's command):
    python train_net.py --eval-only --num-gpu 1 --config-file configs/swinL.yaml \
        MODEL.WEIGHTS seqrank_assr_swinL_ckp.pth DATASETS.TEST "('assr_test',)" \
        OUTPUT_DIR output/assr_inference/

Train on N GPUs (or N CPU processes on a machine without GPUs):
    python train_net.py --num-gpus 4 --config-file configs/swinL.yaml SOLVER.IMS_PER_GPU 8 ...

An input error (a file, a config value) ends the run with one line and exit code 1; --debug (or
SEQRANK_DEBUG=1) shows its traceback.
"""

import logging
import os

from detectron2.engine import default_argument_parser, launch
from detectron2.evaluation import verify_results
from detectron2.utils import comm
from torch.multiprocessing import ProcessExitedException

import seqrank  # noqa: F401  (registers the model components)
from seqrank.cli import (
    DEBUG_ENV,
    ConfigError,
    add_debug_argument,
    debug_requested,
    exit_on_sigterm,
    user_errors,
)
from seqrank.engine import Trainer, setup

logger = logging.getLogger("seqrank")

PROG = "train_net.py"
# Library errors that are the user's doing: detectron2 raises FloatingPointError when the loss
# diverges (a too high learning rate, bad data).
TRANSLATED_ERRORS = (FloatingPointError,)


def build_parser():
    parser = default_argument_parser(epilog=__doc__)
    parser.add_argument(
        "--trust-checkpoint",
        action="store_true",
        help="allow checkpoints holding arbitrary pickled Python objects (only files you trust)",
    )
    return add_debug_argument(parser)


def main(args):
    exit_on_sigterm()
    with user_errors(PROG, debug_requested(args), also=TRANSLATED_ERRORS):
        cfg = setup(args)
        if args.eval_only:
            if not cfg.DATASETS.TEST:
                raise ConfigError("DATASETS.TEST is empty: nothing to evaluate")
            if not cfg.MODEL.WEIGHTS and not args.resume:
                raise ConfigError("--eval-only needs MODEL.WEIGHTS (a checkpoint to evaluate)")
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
    if args.debug:
        # Seen by the spawned training processes and the trainer's log filter too.
        os.environ[DEBUG_ENV] = "1"
    exit_on_sigterm(forward_to_children=args.num_gpus * args.num_machines > 1)
    try:
        launch(
            main,
            args.num_gpus,
            num_machines=args.num_machines,
            machine_rank=args.machine_rank,
            dist_url=args.dist_url,
            args=(args,),
        )
    except ProcessExitedException as exc:
        # A training process already printed its one-line error and exited with 1.
        if exc.exit_code != 1:
            raise
        raise SystemExit(1) from None


if __name__ == "__main__":
    cli()
