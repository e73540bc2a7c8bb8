"""The ranking loop reads the device once per step; bench_device_paths runs end to end."""

import subprocess
import sys

import pytest
import torch
from detectron2.modeling import build_model

from benchmarks.bench_device_paths import TINY, HostReadCounter, count_ranking_reads
from seqrank.engine import build_cfg
from tests.conftest import REPO


def test_counter_counts_host_reads_once():
    x = torch.arange(6.0)
    with HostReadCounter() as counter:
        x.tolist()
        bool((x > 2).any())
        torch.nonzero(x > 2)
        host = x[:3].cpu()
        host.tolist()  # a host copy: free
        (x + 1).sum()
    assert counter.count == 4


def test_project_ranking_loop_syncs_once_per_step():
    cfg = build_cfg(TINY, ["MODEL.DEVICE", "cpu", "INPUT.FT_SIZE_TEST", "64"])
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    gen = torch.Generator().manual_seed(1)
    images = [
        {"image": torch.rand(3, 64, 64, generator=gen) * 255, "height": 40, "width": 50}
        for _ in range(3)
    ]
    reads, steps = count_ranking_reads(model, images)
    assert steps >= 2 and reads == steps
    model.set_fast_inference(False)
    reads, steps = count_ranking_reads(model, images, reference=True)
    assert reads > steps  # the original loop, for contrast


@pytest.mark.e2e
def test_bench_device_paths_runs_and_checks_identity():
    done = subprocess.run(
        [
            sys.executable, "-m", "benchmarks.bench_device_paths", "--skip-swin", "--reps", "1",
            "--masks", "3", "--mask-size", "64", "80",
        ],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("parameters bit-identical") == 2
    assert "1.00 per step" in done.stdout and "masks identical" in done.stdout
