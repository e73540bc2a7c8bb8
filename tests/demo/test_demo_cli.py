"""Terminal demo (demo/demo.py) end to end with the tiny parity model, as a user runs it."""

import json
import shlex
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from seqrank.evaluation.results_file import decode_masks

EXAMPLES = ("chelsea", "coffee")


def _run_demo(repo_root, args, timeout=240):
    """Run ``python demo.py ARGS`` from inside demo/ through the shell (globs expand there)."""
    command = f"{shlex.quote(sys.executable)} demo.py {args}"
    return subprocess.run(
        command,
        shell=True,
        cwd=repo_root / "demo",
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _model_opts(parity_dir):
    config = shlex.quote(str(parity_dir / "config.yaml"))
    weights = shlex.quote(str(parity_dir / "checkpoint.pth"))
    return f"--config-file {config}", f"--opts MODEL.WEIGHTS {weights}"


@pytest.fixture(scope="module")
def demo_run(repo_root, parity_dir, tmp_path_factory):
    """One run: a shell-expanded glob, a quoted glob, a missing file and a non-image file."""
    tmp = tmp_path_factory.mktemp("demo")
    globbed = tmp / "globbed"
    globbed.mkdir()
    shutil.copy(repo_root / "demo" / "examples" / f"{EXAMPLES[1]}.jpg", globbed)
    (globbed / "broken.jpg").write_text("this is not a JPEG\n")
    output = tmp / "out"
    output.mkdir()
    (output / f"{EXAMPLES[0]}_rank99_obj0.5_sal0.5.png").write_bytes(b"stale")
    (output / "unrelated_rank1_obj0.5_sal0.5.png").write_bytes(b"keep")
    config, opts = _model_opts(parity_dir)
    quoted_glob = shlex.quote(str(globbed / "*.jpg"))
    args = (
        f"{config} --input examples/{EXAMPLES[0][:4]}*.jpg {quoted_glob} "
        f"{shlex.quote(str(tmp / 'missing.jpg'))} --output {shlex.quote(str(output))} "
        f"--confidence-threshold 0.9 {opts}"
    )
    return _run_demo(repo_root, args), output, tmp


def test_demo_processes_images_and_skips_bad_inputs(demo_run):
    result, output, tmp = demo_run
    assert result.returncode == 0, result.stderr[-3000:]
    log = result.stderr
    assert f"image file not found, skipped: {tmp / 'missing.jpg'}" in log
    assert "skipped: cannot read image" in log and "broken.jpg" in log
    assert "2 of 3 images processed" in log
    for stem in EXAMPLES:
        for suffix in ("_overlay.png", "_colormap.png", ".json"):
            assert (output / f"{stem}{suffix}").is_file(), f"{stem}{suffix} missing"
    assert not list(output.glob("broken*")) and not list(output.glob(".*.tmp"))
    assert not (output / f"{EXAMPLES[0]}_rank99_obj0.5_sal0.5.png").exists()
    assert (output / "unrelated_rank1_obj0.5_sal0.5.png").read_bytes() == b"keep"


def test_demo_outputs_are_consistent(demo_run, repo_root):
    _, output, _ = demo_run
    stem = EXAMPLES[0]
    height, width = np.array(Image.open(repo_root / "demo" / "examples" / f"{stem}.jpg")).shape[:2]
    record = json.loads((output / f"{stem}.json").read_text())
    num = record["num"]
    assert num > 0 and record["ranks"] == list(range(1, num + 1))
    assert len(record["bboxes"]) == len(record["scores"]) == len(record["saliency"]) == num
    masks = decode_masks(record)
    assert len(masks) == num and masks[0].shape == (height, width)

    overlay = np.array(Image.open(output / f"{stem}_overlay.png"))
    colormap = np.array(Image.open(output / f"{stem}_colormap.png"))
    assert overlay.shape == colormap.shape == (height, width, 3)
    # Rank 1 is drawn on top in the colour map, RGB (234, 87, 61); rank 2 (251, 192, 99) shows
    # where rank 1 does not cover it. (The parity model's first two masks on this photo cover
    # about 18 000 and 24 000 pixels.)
    rank1, rank2 = masks[0] > 0.5, masks[1] > 0.5
    assert rank1.sum() > 1000 and (rank2 & ~rank1).sum() > 1000
    assert (colormap[rank1] == [234, 87, 61]).all()
    assert (colormap[rank2 & ~rank1] == [251, 192, 99]).all()

    rank_files = sorted(output.glob(f"{stem}_rank*_obj*_sal*.png"))
    assert len(rank_files) == num
    first = (
        f"{stem}_rank1_obj{round(record['scores'][0], 5)}_sal{round(record['saliency'][0], 5)}.png"
    )
    rank_png = np.array(Image.open(output / first))
    assert rank_png.shape == (height, width, 3)
    assert set(np.unique(rank_png)) <= {0, 255}


def test_demo_exits_1_when_no_image_is_usable(repo_root, parity_dir, tmp_path):
    config, opts = _model_opts(parity_dir)
    missing = shlex.quote(str(tmp_path / "nothing-*.jpg"))
    args = f"{config} --input {missing} --output {shlex.quote(str(tmp_path / 'out'))} {opts}"
    result = _run_demo(repo_root, args, timeout=120)
    assert result.returncode == 1
    assert "no file matches this pattern" in result.stderr
    assert "no input image found" in result.stderr


def test_demo_help(repo_root):
    result = _run_demo(repo_root, "--help", timeout=120)
    assert result.returncode == 0
    assert "--input" in result.stdout and "--opts" in result.stdout
    help_text = " ".join(result.stdout.split())
    assert "--confidence-threshold T accepted for compatibility" in help_text
    assert "no effect on SeqRank" in help_text
