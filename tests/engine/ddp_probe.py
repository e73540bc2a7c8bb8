"""Helper of tests/engine/test_ddp_buffers.py (not a test): build SeqRank's Trainer in every process
of a GLOO group, train a few iterations and save, from rank 0, every rank's RANDOM positional-
encoding buffer as built (before DDP) and as trained (inside the DDP-wrapped model).

    python -m tests.engine.ddp_probe OUT --num-gpus 2 --dist-url tcp://127.0.0.1:PORT \\
        --config-file CONFIG KEY VALUE ...
"""

import sys
import warnings

warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.* is deprecated")

import torch  # noqa: E402
from detectron2.engine import launch  # noqa: E402
from detectron2.utils import comm  # noqa: E402

from seqrank.engine import unwrap  # noqa: E402
from seqrank.engine import Trainer, setup  # noqa: E402
from seqrank.engine import trainer as trainer_module  # noqa: E402
from train_net import build_parser  # noqa: E402

BUFFER = "positional_encoding_gaussian_matrix"


def worker(out, args):
    cfg = setup(args)  # seeds every rank differently (SEED + rank)
    seen = {}
    wrap_ddp = trainer_module.wrap_ddp

    def recording_wrap(model):
        seen["built"] = getattr(model.pe_layer, BUFFER).clone()
        return wrap_ddp(model)

    trainer_module.wrap_ddp = recording_wrap
    trainer = Trainer(cfg)
    built = seen["built"]
    synced = getattr(unwrap(trainer.model).pe_layer, BUFFER).clone()
    trainer.train()
    trained = getattr(unwrap(trainer.model).pe_layer, BUFFER).clone()
    gathered = comm.gather({"built": built, "synced": synced, "trained": trained}, dst=0)
    if comm.is_main_process():
        torch.save(gathered, out)


def main(argv):
    out, rest = argv[0], argv[1:]
    args = build_parser().parse_args(rest)
    launch(worker, args.num_gpus, dist_url=args.dist_url, args=(out, args))


if __name__ == "__main__":
    main(sys.argv[1:])
