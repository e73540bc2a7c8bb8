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

--precision {fp32,bf16,fp16} sets TEST.PRECISION, the precision of evaluation (--eval-only and the
periodic evaluation; training keeps SOLVER.AMP). Options go before the KEY VALUE overrides.

An input error (a file, a config value), a diverging loss or a lost peer ends the run with one
line and exit code 1; --debug (or SEQRANK_DEBUG=1) shows its traceback.
"""

import logging
import os

# First: seqrank's import filters detectron2's torch.jit.script FutureWarnings (seqrank/__init__).
import seqrank  # noqa: F401  isort: skip  (also registers the model components)
from detectron2.engine import default_argument_parser  # noqa: E402
from detectron2.evaluation import verify_results  # noqa: E402
from detectron2.utils import comm  # noqa: E402

from seqrank.cli import (  # noqa: E402
    DEBUG_ENV,
    ConfigError,
    add_debug_argument,
    add_precision_argument,
    debug_requested,
    exit_on_sigterm,
    user_errors,
)
from seqrank.config_resolution import mismatch_explained  # noqa: E402
from seqrank.engine import Trainer, setup  # noqa: E402
from seqrank.engine.launch import PeerLost, add_launch_arguments, launch_job  # noqa: E402

logger = logging.getLogger("seqrank")

PROG = "train_net.py"
# Library errors that are not the program's fault: detectron2 raises FloatingPointError when the
# loss diverges (a too high learning rate, bad data); PeerLost when another process of the job
# died or hung.
TRANSLATED_ERRORS = (FloatingPointError, PeerLost)


def build_parser():
    parser = default_argument_parser(epilog=__doc__)
    parser.add_argument(
        "--trust-checkpoint",
        action="store_true",
        help="allow checkpoints holding arbitrary pickled Python objects (only files you trust)",
    )
    add_precision_argument(parser)
    return add_debug_argument(add_launch_arguments(parser))


def main(args):
    """One process of the job (spawned, started by torchrun, or the only one)."""
    exit_on_sigterm()
    with user_errors(PROG, debug_requested(args), also=TRANSLATED_ERRORS):
        cfg = setup(args)
        if args.eval_only:
            if not cfg.DATASETS.TEST:
                raise ConfigError("DATASETS.TEST is empty: nothing to evaluate")
            if not cfg.MODEL.WEIGHTS and not args.resume:
                raise ConfigError("--eval-only needs MODEL.WEIGHTS (a checkpoint to evaluate)")
            resolved = getattr(args, "resolved_config", None)
            with mismatch_explained(cfg.MODEL.WEIGHTS, resolved):
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
    # Errors of the launch itself (torchrun environment, batch split, lost peers); those of a
    # spawned process were printed as one line by this process (see launch_job).
    with user_errors(PROG, debug_requested(args), also=TRANSLATED_ERRORS):
        launch_job(main, args)


if __name__ == "__main__":
    cli()
