"""`make demo` (scripts/run_demo.py): what it generates from the config's dataset names, and the
whole job end to end on a tiny benchmark and a two-iteration training."""

import os
import re
import subprocess
import sys

import pytest

from scripts.run_demo import DemoError, generation_commands, synthetic_spec


@pytest.mark.parametrize(
    "dataset, expected",
    [
        ("synsor_test", ("synsor", None, 1)),
        ("synsor_global_train", ("synsor_global", "global", 1)),
        ("synsor_chain_test", ("synsor_chain", "chain", 1)),
        ("synsor_global_min2_test", ("synsor_global_min2", "global", 2)),
        ("synsor_min3_train", ("synsor_min3", None, 3)),
    ],
)
def test_synthetic_spec_follows_the_dataset_name(dataset, expected):
    assert synthetic_spec(dataset) == expected


def test_real_datasets_are_refused():
    with pytest.raises(DemoError, match="'assr_test': .* not a synthetic dataset name"):
        synthetic_spec("assr_test")
    with pytest.raises(DemoError, match="min_objects must be between 1 and 6"):
        synthetic_spec("synsor_global_min9_test")


def test_one_generation_per_dataset_id():
    commands = generation_commands(["synsor_global_train", "synsor_global_test"], "data", 8, 4)
    assert len(commands) == 1
    cmd = commands[0]
    assert cmd[cmd.index("--name") + 1] == "synsor_global"
    assert cmd[cmd.index("--order") + 1] == "global"
    assert cmd[cmd.index("--num-train") + 1] == "8" and cmd[cmd.index("--root") + 1] == "data"
    plain = generation_commands(["synsor_train", "synsor_test"], "data")[0]
    assert "--order" not in plain and "--num-train" not in plain and "--min-objects" not in plain
    two = generation_commands(["synsor_global_min2_train"], "data")[0]
    assert two[two.index("--min-objects") + 1] == "2" and two[two.index("--order") + 1] == "global"


@pytest.mark.e2e
def test_make_demo_job_writes_the_page(repo_root, tmp_path):
    out = tmp_path / "out"
    command = [
        sys.executable,
        "-m",
        "scripts.run_demo",
        "--data-root",
        str(tmp_path / "data"),
        "--output-root",
        str(out),
        "--num-train",
        "4",
        "--num-test",
        "3",
        "--samples",
        "2",
        "SOLVER.MAX_ITER",
        "2",
        "SOLVER.IMS_PER_GPU",
        "2",
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("SEQRANK_CONFIG", None)
    result = subprocess.run(
        command, cwd=repo_root, capture_output=True, text=True, timeout=600, env=env
    )
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-3000:]
    page = out / "demo" / "index.html"
    assert f"Demo page: {page}" in result.stdout
    assert log.count("SOR metrics on synsor_global_test") == 1  # printed once (by training)
    assert (out / "synsor_tiny" / "synsor_global_test_metrics.json").is_file()
    assert not (out / "synsor_tiny" / "eval").exists()  # no second evaluation
    skipped = [line for line in log.splitlines() if "[examples] skipped" in line]
    assert len(skipped) == 1 and "synthetic shapes" in skipped[0]
    assert "FutureWarning" not in log

    text = page.read_text()
    assert "synsor_global_train" in text and "ranks on photos are not meaningful" in text
    assert len(re.findall(r'<section class="sample">', text)) == 2
    assert len(re.findall(r"SA-SOR (\d\.\d{3}|undefined)", text)) == 2
    assert "<td>sa_sor</td>" in text and 'src="http' not in text  # self-contained
    assert text.count("data:image/") == 2 * 5 + 1  # five views per sample, the favicon

    again = subprocess.run(
        command, cwd=repo_root, capture_output=True, text=True, timeout=600, env=env
    )
    assert again.returncode == 0 and "cached model" in again.stderr
    assert (again.stdout + again.stderr).count("SOR metrics on synsor_global_test") == 1
