"""Which config a checkpoint gets (seqrank/config_resolution.py), the mismatch message, the Python
API (SeqRankPredictor.from_checkpoint) and the README's example of it."""

import os
import re
import shlex
import shutil
import subprocess
import sys

import numpy as np
import pytest

from seqrank.checkpoint import CheckpointMismatchError
from seqrank.config_resolution import (
    CONFIG_ENV,
    fitting_configs,
    resolve_config,
    weights_from_opts,
)
from seqrank.predictor import SeqRankPredictor
from tests.helpers import TINY_CONFIG, write_tiny_checkpoint

SWINL = os.path.join("configs", "swinL.yaml")


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    """A training OUTPUT_DIR: model_final.pth with its config.yaml beside it."""
    return write_tiny_checkpoint(
        tmp_path_factory.mktemp("trained") / "model_final.pth", sidecar=True
    ).parent


@pytest.fixture(scope="module")
def lone_checkpoint(tiny_dir, tmp_path_factory):
    """The same weights alone in a folder, under a released checkpoint's kind of name."""
    path = tmp_path_factory.mktemp("lone") / "seqrank_synsor_ckp.pth"
    shutil.copy(tiny_dir / "model_final.pth", path)
    return path


def test_explicit_config_wins(tmp_path):
    (tmp_path / "config.yaml").write_text("")
    resolved = resolve_config(tmp_path / "x.pth", "mine.yaml", environ={CONFIG_ENV: "env.yaml"})
    assert resolved.path == "mine.yaml" and "--config-file" in resolved.reason


def test_environment_beats_sidecar(tmp_path):
    (tmp_path / "config.yaml").write_text("")
    resolved = resolve_config(tmp_path / "x.pth", environ={CONFIG_ENV: "env.yaml"})
    assert resolved.path == "env.yaml" and CONFIG_ENV in resolved.reason


def test_sidecar_beats_file_name(tmp_path):
    (tmp_path / "config.yaml").write_text("")
    resolved = resolve_config(tmp_path / "seqrank_correct_ckp.pth", environ={})
    assert resolved.path == str(tmp_path / "config.yaml")
    assert "beside the checkpoint" in resolved.reason


@pytest.mark.parametrize(
    "name, expected",
    [("seqrank_irsr_swinL_correct_ckp.pth", "swinL_correct.yaml"), ("ckp.pth", "swinL.yaml")],
)
def test_file_name_rule(tmp_path, name, expected):
    resolved = resolve_config(tmp_path / name, environ={})
    assert resolved.path.endswith(os.path.join("configs", expected))
    assert "file-name rule" in resolved.reason


def test_weights_from_opts():
    assert weights_from_opts(["MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", "a.pth"]) == "a.pth"
    assert weights_from_opts(["MODEL.DEVICE", "MODEL.WEIGHTS"]) == ""


def test_fitting_configs_finds_the_quick_schedule(tiny_dir):
    import torch

    state = torch.load(tiny_dir / "model_final.pth", weights_only=True)["model"]
    fitting = fitting_configs({k: tuple(v.shape) for k, v in state.items()})
    names = [os.path.basename(f) for f in fitting]
    assert "synsor_tiny.yaml" in names and "swinL.yaml" not in names


def test_from_checkpoint_uses_the_sidecar(tiny_dir, caplog):
    caplog.set_level("INFO", logger="seqrank")
    predictor = SeqRankPredictor.from_checkpoint(tiny_dir / "model_final.pth", device="cpu")
    assert predictor.cfg.MODEL.DEVICE == "cpu"
    assert "config.yaml beside the checkpoint" in caplog.text
    result = predictor(np.zeros((40, 50, 3), np.uint8))
    assert {"masks", "bboxes", "scores", "saliency", "num"} <= set(result)


def test_mismatch_names_config_and_suggests_the_fitting_one(lone_checkpoint):
    with pytest.raises(CheckpointMismatchError) as info:
        SeqRankPredictor.from_checkpoint(lone_checkpoint, device="cpu")
    message = str(info.value)
    assert "\n" not in message
    assert f"config {SWINL} (the original's file-name rule" in message
    assert "pass --config-file configs/quick_schedules/synsor_tiny.yaml" in message
    assert "e.g. backbone.patch_embed.proj.weight" in message


def test_readme_predictor_example_runs(repo_root, tiny_dir, monkeypatch):
    """The README's five-line example, with the checkpoint `make demo` trains replaced by the
    fixture's (same layout: model_final.pth with config.yaml beside it)."""
    readme = (repo_root / "README.md").read_text()
    match = re.search(r"<!-- predictor-example[^>]*-->\s*```python\n(.*?)```", readme, re.S)
    assert match, "README has no predictor example"
    code = match.group(1)
    assert len(code.strip().splitlines()) == 5
    assert "output/synsor_tiny/model_final.pth" in code
    code = code.replace("output/synsor_tiny/model_final.pth", str(tiny_dir / "model_final.pth"))
    monkeypatch.chdir(repo_root)
    monkeypatch.delenv(CONFIG_ENV, raising=False)
    namespace = {}
    exec(compile(code, "README.md", "exec"), namespace)
    result = namespace["result"]
    assert result["num"] == len(result["masks"]) > 0
    assert result["masks"][0].shape == (300, 451)  # chelsea.jpg at its own size


def _demo(repo_root, tmp_path, checkpoint, extra="", env=None):
    image = repo_root / "demo" / "examples" / "coffee.jpg"
    command = (
        f"{shlex.quote(sys.executable)} demo.py --input {shlex.quote(str(image))} "
        f"--output {shlex.quote(str(tmp_path / 'out'))} {extra} "
        f"--opts MODEL.WEIGHTS {shlex.quote(str(checkpoint))} MODEL.DEVICE cpu"
    )
    environ = {k: v for k, v in os.environ.items() if k != CONFIG_ENV}
    environ.update(env or {})
    return subprocess.run(
        command,
        shell=True,
        cwd=repo_root / "demo",
        capture_output=True,
        text=True,
        timeout=240,
        env=environ,
    )


@pytest.mark.e2e
def test_demo_cli_config_resolution(repo_root, tiny_dir, lone_checkpoint, tmp_path):
    sidecar = _demo(repo_root, tmp_path, tiny_dir / "model_final.pth")
    assert sidecar.returncode == 0, sidecar.stderr[-2000:]
    assert "config.yaml beside the checkpoint, written by training" in sidecar.stderr

    explicit = _demo(repo_root, tmp_path, lone_checkpoint, f"--config-file {TINY_CONFIG}")
    assert explicit.returncode == 0, explicit.stderr[-2000:]
    assert "given with --config-file" in explicit.stderr

    env = _demo(repo_root, tmp_path, lone_checkpoint, env={CONFIG_ENV: str(TINY_CONFIG)})
    assert env.returncode == 0 and f"from {CONFIG_ENV}" in env.stderr

    named = _demo(repo_root, tmp_path, lone_checkpoint)
    assert named.returncode == 1
    errors = [line for line in named.stderr.splitlines() if "cannot build the model" in line]
    assert len(errors) == 1, named.stderr[-2000:]
    assert "configs/swinL.yaml (the original's file-name rule" in errors[0]
    assert "configs/quick_schedules/synsor_tiny.yaml fits it" in errors[0]
    assert "Traceback" not in named.stderr and "FutureWarning" not in named.stderr


@pytest.mark.e2e
def test_eval_only_resolves_the_config_from_the_checkpoint(repo_root, lone_checkpoint, tmp_path):
    command = [
        sys.executable,
        "train_net.py",
        "--eval-only",
        "MODEL.WEIGHTS",
        str(lone_checkpoint),
        "OUTPUT_DIR",
        str(tmp_path / "eval"),
    ]
    env = {k: v for k, v in os.environ.items() if k != CONFIG_ENV}
    result = subprocess.run(
        command, cwd=repo_root, capture_output=True, text=True, timeout=240, env=env
    )
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("train_net.py: error: ") and "synsor_tiny.yaml fits it" in last
