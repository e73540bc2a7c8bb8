import subprocess
import sys

import cv2
import numpy as np
import pytest

from scripts.visualize2colormap import colormap_path, main, parse_args
from seqrank.evaluation.results_file import ResultsFileError, decode_masks, load_results


def _run(repo_root, *args):
    return subprocess.run(
        [sys.executable, "-m", "scripts.visualize2colormap", *map(str, args)],
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_help(capsys):
    with pytest.raises(SystemExit) as exc:
        parse_args(["--help"])
    assert exc.value.code == 0
    assert "-p" in capsys.readouterr().out


@pytest.mark.e2e
def test_cli_writes_one_colormap_per_image(repo_root, parity_dir, tmp_path):
    results_path = parity_dir / "results_handmade.pth"
    out_dir = tmp_path / "nested" / "colormaps"
    proc = _run(repo_root, "-p", results_path, "-o", out_dir)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = load_results(results_path)
    assert sorted(p.name for p in out_dir.iterdir()) == sorted(f"{n}_colormap.png" for n in results)
    for name, record in results.items():
        image = cv2.imread(str(out_dir / f"{name}_colormap.png"), cv2.IMREAD_UNCHANGED)
        masks = decode_masks(record)
        assert image.shape == masks[0].shape + (3,)  # each image's own size, not 480 x 640
        ys, xs = np.nonzero(masks[0] > 0.5)
        # Rank 1 is painted last, so all its pixels carry colour 0.
        assert (image[ys, xs] == [61, 87, 234]).all()
        background = np.logical_not(np.any(np.stack(masks) > 0.5, axis=0))
        assert not image[background].any()


def test_bad_results_file_is_a_one_line_error(tmp_path):
    bad = tmp_path / "bad.pth"
    bad.write_text("not a results file")
    with pytest.raises(SystemExit) as exc:
        main(["-p", str(bad), "-o", str(tmp_path / "out")])
    message = str(exc.value.code)
    assert message.startswith("visualize2colormap: error:") and "bad.pth" in message
    assert "\n" not in message


def test_image_names_cannot_escape_the_output_dir(tmp_path):
    with pytest.raises(ResultsFileError):
        colormap_path(str(tmp_path), "../outside")
    assert colormap_path(str(tmp_path), 0).endswith("0_colormap.png")


def test_original_long_options(parity_dir, tmp_path, capsys):
    """The original's spelling: ``--pth-file`` (our ``--path``) and ``--output``."""
    results_path = parity_dir / "results_handmade.pth"
    assert parse_args(["--pth-file", "r.pth", "-o", "x"]).path == "r.pth"
    main(["--pth-file", str(results_path), "--output", str(tmp_path / "a")])
    main(["--path", str(results_path), "-o", str(tmp_path / "b")])
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "b").iterdir()) and names
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    with pytest.raises(SystemExit):
        parse_args(["--help"])
    assert "--pth-file" in capsys.readouterr().out
