"""bench_precision, profile_inference and gpu_bench's precision rows run on tiny inputs and report
what issue 13 asks for (their speed is measured in benchmarks/README.md, never tested)."""

import re

import pytest
import torch

from benchmarks import bench_precision, gpu_bench, profile_inference
from seqrank.modeling import precision as precision_module


@pytest.fixture
def bf16_cpu(monkeypatch):
    """bf16 runs (emulated, slower) on a CPU without BF16 instructions too: let it."""
    monkeypatch.setattr(precision_module, "cpu_supports_bf16", lambda: True)
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_bench_precision_compares_and_ends_with_agreement_and_ratio(bf16_cpu, capsys):
    argv = ["--model", "tiny", "--size", "64", "--images", "3", "--threads", "1"]
    assert bench_precision.main(argv) == 0
    out = capsys.readouterr().out
    assert "skipped: TEST.PRECISION fp16 needs a GPU" in out
    assert re.search(r"^fp32\s+[\d.]+\s+[\d.]+\s+[\d.]+\s+\[", out, re.M)
    row = re.search(r"^bf16\s+x\s*([\d.]+)\s+([\d.]+) / ([\d.]+) \(\s*(\d+)\)", out, re.M)
    assert row and 0.0 <= float(row.group(3)) <= float(row.group(2)) <= 1.0
    last = out.strip().splitlines()[-2:]
    assert re.fullmatch(r"agreement: [01]\.\d\d", last[0]), out
    assert re.fullmatch(r"ratio: \d+\.\d\d", last[1]), out


def test_bench_precision_agreement_of_identical_rankings():
    masks = [torch.zeros(4, 5, dtype=torch.bool).numpy() for _ in range(2)]
    masks[0][:2] = True
    masks[1][3:] = True
    result = {"masks": masks, "scores": [0.9, 0.5], "saliency": [0.8, 0.4], "num": 2}
    swapped = {**result, "masks": masks[::-1]}
    same = bench_precision.summarise([result], [result])
    assert same["first"] == same["order"] == 1.0 and same["iou_min"] == 1.0
    other = bench_precision.summarise([result], [swapped])
    # The same objects, picked in the other order: matched IoU 1, first pick and order differ.
    assert other["iou_min"] == 1.0 and other["first"] == other["order"] == 0.0


def test_profile_inference_prints_every_stage_in_both_precisions(bf16_cpu, capsys):
    argv = ["--model", "tiny", "--size", "64", "--threads", "1"]
    assert profile_inference.main(argv) == 0
    out = capsys.readouterr().out
    for precision in ("fp32", "bf16"):
        assert f"tiny @64, {precision} (ms per image; ranking steps per image: 8)" in out
    for row in profile_inference.ROWS:
        assert len(re.findall(rf"^{re.escape(row)}\s+[\d.]+", out, re.M)) == 2, row
    backbone = re.search(r"^backbone\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)$", out, re.M)
    assert backbone and float(backbone.group(3)) > 0  # FLOPs counted, GFLOP/s given
    assert re.search(r"^total\s+[\d.]+\s+100\.0\s", out, re.M)


def test_gpu_bench_without_cuda_says_so(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_bench.main([]) == 0
    assert "CUDA is not available" in capsys.readouterr().out


def test_gpu_bench_rows_cover_bf16_and_fp16(monkeypatch, capsys):
    monkeypatch.setattr(gpu_bench, "SETTINGS", [("tiny", 64)])
    monkeypatch.setattr(precision_module, "cpu_supports_bf16", lambda: True)
    argv = ["--device", "cpu", "--only", "tiny", "--skip-train", "--reps", "1"]
    assert gpu_bench.main(argv) == 0
    out = capsys.readouterr().out
    rows = re.findall(r"^tiny@64 b[14] .*$", out, re.M)
    assert len(rows) == 2
    for row in rows:
        assert re.search(r"[\d.]+ \(x[\d.]+\)\s+n/a", row)  # bf16 runs, fp16 is n/a on a CPU
        assert "bf16: num" in row and "fp16: n/a on this device" in row
