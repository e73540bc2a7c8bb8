"""2 CPU processes (GLOO): buffers start equal on every rank, bf16 AMP trains, no FutureWarning."""

import subprocess
import sys

import pytest
import torch

from tests.conftest import PARITY, REPO, require_shared
from tests.engine.launchers import free_port

# Runs the command end to end (subprocesses): left out of `make test-fast`.
pytestmark = pytest.mark.e2e


def test_random_pe_buffer_is_synced_at_start_and_amp_trains_without_warnings(tmp_path):
    require_shared()
    out = tmp_path / "probe.pth"
    cmd = [
        sys.executable, "-m", "tests.engine.ddp_probe", str(out),
        "--num-gpus", "2", "--dist-url", f"tcp://127.0.0.1:{free_port()}",
        "--config-file", str(PARITY / "config.yaml"),
        "MODEL.DEVICE", "cpu", "MODEL.PE", "RANDOM",
        "DATASETS.ROOT", str(PARITY / "datasets"),
        "DATASETS.TRAIN", "('assr_train',)", "DATASETS.TEST", "()",
        "INPUT.FT_SIZE_TRAIN", "64", "INPUT.FT_SIZE_TEST", "64",
        "SOLVER.IMS_PER_GPU", "1", "SOLVER.MAX_ITER", "2", "SOLVER.WARMUP_ITERS", "0",
        "SOLVER.AMP.ENABLED", "True", "SOLVER.AMP.PRECISION", "bf16",
        "DATALOADER.NUM_WORKERS", "0", "TEST.EVAL_PERIOD", "0", "SEED", "5",
        "OUTPUT_DIR", str(tmp_path / "run"),
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    assert "FutureWarning" not in log and "DeprecationWarning" not in log
    rank0, rank1 = torch.load(out, weights_only=True)
    assert not torch.equal(rank0["built"], rank1["built"])  # different seeds per rank ...
    assert torch.equal(rank0["synced"], rank1["synced"])  # ... one buffer once wrapped
    assert torch.equal(rank0["synced"], rank0["built"])  # rank 0's, broadcast at start-up
    assert torch.equal(rank0["trained"], rank1["trained"])
