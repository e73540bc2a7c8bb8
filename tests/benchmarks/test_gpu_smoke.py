"""benchmarks/gpu_smoke.sh without CUDA: one SKIP line and exit status 0 (no work done)."""

import os
import subprocess

import pytest

from tests.conftest import REPO

# Runs the command end to end (subprocesses): left out of `make test-fast`.
pytestmark = pytest.mark.e2e


def test_gpu_smoke_skips_without_cuda(tmp_path):
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", SEQRANK_SMOKE_DIR=str(tmp_path / "work"))
    env.pop("SEQRANK_SMOKE_DEVICE", None)
    done = subprocess.run(
        ["bash", str(REPO / "benchmarks" / "gpu_smoke.sh")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == "SKIP: no CUDA device"
    assert not (tmp_path / "work").exists()
