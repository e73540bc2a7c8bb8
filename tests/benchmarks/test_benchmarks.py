"""The benchmark scripts run end to end (tiny sizes) and end with their ``ratio:`` line.

Only that they run, check their results and report is tested here; the speed targets live in
the benchmarks themselves (benchmarks/README.md), never in timed tests.
"""

import re
import subprocess
import sys

import pytest

from tests.conftest import REPO, require_shared

# Runs the command end to end (subprocesses): left out of `make test-fast`.
pytestmark = pytest.mark.e2e


def _bench(module, *args, timeout=600):
    """Run ``benchmarks.<module>``; its stdout, after checking that it succeeded."""
    done = subprocess.run(
        [sys.executable, "-m", f"benchmarks.{module}", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def _run(module, *args):
    """:func:`_bench` for the scripts that end with a ``ratio:`` line."""
    out = _bench(module, *args)
    last = out.strip().splitlines()[-1]
    assert re.fullmatch(r"ratio: \d+\.\d\d", last), out[-2000:]
    return out


def test_bench_metrics_runs_and_checks_identical_results():
    out = _run("bench_metrics", "--images", "12", "--height", "48", "--width", "80")
    assert "aggregated metrics identical" in out
    assert re.search(r"^project\s+[\d.]+\s+[\d.]+\s+[\d.]+$", out, re.M)


def test_bench_inference_runs_the_headline_setting_with_parity():
    require_shared()
    out = _run("bench_inference", "--only", "tiny", "--sizes", "200", "--reps", "1")
    assert out.count("parity: min mask IoU") == 2  # batch 1 and batch 4
    assert "project vs one-by-one" in out and "headline setting: tiny@200" in out


def test_bench_inference_filtered_run_still_reports_a_ratio():
    require_shared()
    out = _run("bench_inference", "--only", "tiny", "--sizes", "384", "--reps", "1")
    assert "headline setting not run; the ratio is for tiny@384 b1" in out


def test_bench_upload_memory_runs():
    out = _bench("bench_upload_memory", "--uploads", "3", "--side", "300", timeout=300)
    assert "HTTP [200]" in out and "GB peak" in out


def test_bench_compare_runs_three_methods_and_reports_the_total():
    out = _bench(
        "bench_compare", "--images", "6", "--height", "48", "--width", "64", "--bootstrap", "20",
        "--workers", "1",
    )  # fmt: skip
    assert "6 images x 3 methods" in out and "images/s" in out
    assert re.fullmatch(r"total: \d+\.\d s", out.strip().splitlines()[-1])


def test_bench_quick_schedule_variants_seeds_and_spread():
    """The quick schedule's variant is read from its config; --order / --seeds parse; the last
    lines report the mean and spread over seeds (training itself is `make demo`'s job)."""
    from benchmarks import bench_quick_schedule as bench

    quick = bench.load_cfg(str(REPO / bench.DEFAULT_CONFIG), [])
    assert bench.config_variant(quick) == ("global", 1)
    chain = bench.load_cfg(str(REPO / bench.DEFAULT_CONFIG), bench.variant_opts("chain"))
    assert bench.config_variant(chain) == ("chain", 1)
    assert chain.DATASETS.TEST == ("synsor_test",)
    two = bench.load_cfg(str(REPO / bench.DEFAULT_CONFIG), bench.variant_opts("global", 2))
    assert two.DATASETS.TRAIN == ("synsor_global_min2_train",)
    assert bench.config_variant(two) == ("global", 2)
    g1, g2, c1 = ("global", 1), ("global", 2), ("chain", 1)
    assert bench.run_dir(quick, g1, 0, 0, g1) == quick.OUTPUT_DIR
    assert bench.run_dir(quick, c1, 0, 0, g1).endswith("chain_seed0")
    assert bench.run_dir(quick, g1, 2, 0, g1).endswith("global_seed2")
    assert bench.run_dir(quick, g2, 0, 0, g1).endswith("global_min2_seed0")
    args = bench.parse_args(["--order", "chain", "--seeds", "0,1,2", "SOLVER.MAX_ITER", "5"])
    assert (args.order, args.seeds, args.opts) == ("chain", [0, 1, 2], ["SOLVER.MAX_ITER", "5"])
    assert args.min_objects is None and bench.parse_args(["--min-objects", "2"]).min_objects == 2
    line = bench.spread_line("top2", [0.5, 0.75, 0.625])
    assert line == "top2: 0.6250  min 0.5000  max 0.7500  spread 0.2500  seeds 3\n"


def test_bench_memory_runs_every_stage_with_boolean_masks():
    out = _bench("bench_memory", "--height", "90", "--width", "120", "--objects", "12", timeout=300)
    assert "120 x 90 photo, 12 objects, masks ['bool']" in out
    for stage in ("predictor", "terminal demo", "web demo"):
        assert re.search(rf"^{stage}\s+\d+\s+\d+\s+[\d.]+$", out, re.M), out
    assert re.fullmatch(r"peak: \d+", out.strip().splitlines()[-1]), out


def test_bench_eval_batch_runs_and_checks_identical_metrics():
    out = _run(
        "bench_eval_batch", "--images", "5", "--size", "64", "--batches", "1", "4", "--reps", "1",
        "--workers", "0",
    )  # fmt: skip
    assert "metrics identical for every batch size" in out
    assert re.search(r"^\s+4\s+[\d.]+\s+[\d.]+$", out, re.M) and "load average after" in out
