"""Hostile and careless inputs (issue 9): each is a tiny fixture, and each must end with one line
naming the file, key or record and the problem, exit code 1 (2 for command-line errors), and no
traceback.

Most cases call a tool's entry point in-process (``sor_compare`` documents exit code 2 for
bad input: its line is printed, not the ``SystemExit`` message). The memory bombs run together
in one subprocess under ``RLIMIT_AS`` (its address space after importing torch plus 1.5 GB), so
that a regression fails the test instead of taking the machine down; so do forged RLEs, which
pycocotools would decode without bounds checks. Web uploads are tested in tests/online/test_app.py.
"""

import _codecs
import json
import logging
import os
import pickle
import shutil
import subprocess
import sys

import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch
from detectron2.utils.logger import setup_logger

import train_net
from demo import demo
from scripts import evaluation_tool, sor_compare, visualize2colormap
from seqrank.cli import DEBUG_ENV
from tests.conftest import PARITY, REPO

BOMB_BYTES = 20_000_000_000


class _Call:
    """Pickles as ``func(*args)`` without running it (how attackers build bombs)."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _rle(height, width, counts=None):
    if counts is None:
        return mask_util.encode(np.asfortranarray(np.zeros((height, width), np.uint8)))
    return {"size": [height, width], "counts": counts}


def _record(name, masks):
    return {"image_name": name, "masks": masks, "bboxes": [], "scores": [], "saliency": []}


def _results(path, masks, name="parity_fpn_000"):
    torch.save({name: _record(name, masks)}, path)
    return path


@pytest.fixture(autouse=True)
def fresh_log_handlers():
    """detectron2's ``setup_logger`` is cached and binds its handlers to the ``sys.stdout`` of the
    first call, which capsys closes after that test; give each test its own and drop them."""
    loggers = [logging.getLogger()] + [
        logger
        for logger in logging.root.manager.loggerDict.values()
        if isinstance(logger, logging.Logger)
    ]
    saved = {logger: list(logger.handlers) for logger in loggers}
    setup_logger.cache_clear()
    yield
    setup_logger.cache_clear()
    for logger in list(logging.root.manager.loggerDict.values()) + [logging.getLogger()]:
        if isinstance(logger, logging.Logger):
            for handler in set(logger.handlers) - set(saved.get(logger, [])):
                logger.removeHandler(handler)
                handler.close()


def _one_line_exit(capsys, main, argv):
    """Run ``main(argv)``; return its one-line ``SystemExit`` message (exit code 1)."""
    with pytest.raises(SystemExit) as info:
        main(argv)
    message = info.value.code
    err = capsys.readouterr().err
    assert isinstance(message, str), f"exit code {message!r}, stderr: {err[-2000:]}"
    assert "\n" not in message and "Traceback" not in err, err[-3000:]
    return message


# ----------------------------------------------------------------------------- train_net.py


@pytest.fixture
def train_cli(monkeypatch, tmp_path, capsys):
    """``train_cli(*opts, eval_only=True)`` -> the one-line error of train_net.py."""
    monkeypatch.setattr(train_net, "exit_on_sigterm", lambda *args, **kwargs: None)
    monkeypatch.setenv(DEBUG_ENV, "0")

    def run(*opts, eval_only=True, flags=(), config=PARITY / "config.yaml"):
        argv = [*flags, "--config-file", str(config)]
        argv += ["--eval-only"] if eval_only else []
        argv += [
            "MODEL.DEVICE", "cpu",
            "DATASETS.ROOT", str(PARITY / "datasets"),
            "DATASETS.TRAIN", "('assr_train',)",
            "DATASETS.TEST", "('assr_test',)",
            "DATALOADER.NUM_WORKERS", "0",
            "MODEL.WEIGHTS", str(PARITY / "checkpoint.pth"),
            "INPUT.FT_SIZE_TRAIN", "64",
            "INPUT.FT_SIZE_TEST", "64",
            "OUTPUT_DIR", str(tmp_path / "out"),
            *opts,
        ]  # fmt: skip
        message = _one_line_exit(capsys, train_net.cli, argv)
        assert message.startswith("train_net.py: error: ")
        return message

    return run


def _weights(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
    return path


@pytest.mark.parametrize(
    "name,content,problem",
    [
        ("notes.pth", "hello world\n", "a text file, not a torch checkpoint (it starts with"),
        ("page.pth", "<!DOCTYPE html><html>login</html>", "an HTML/XML page"),
        (
            "lfs.pth",
            "version https://git-lfs.github.com/spec/v1\noid sha256:ab\nsize 1\n",
            "a Git LFS pointer",
        ),
        ("empty.pth", b"", "empty file"),
        ("cut.pth", b"PK\x03\x04broken", "not a valid zip archive"),
    ],
)
@pytest.mark.e2e
def test_checkpoint_that_is_no_checkpoint(train_cli, tmp_path, name, content, problem):
    path = _weights(tmp_path, name, content)
    message = train_cli("MODEL.WEIGHTS", str(path))
    assert str(path) in message and problem in message


@pytest.mark.e2e
def test_checkpoint_paths(train_cli, tmp_path):
    assert "is a directory, not a checkpoint" in train_cli("MODEL.WEIGHTS", str(tmp_path))
    missing = train_cli("MODEL.WEIGHTS", str(tmp_path / "nope.pth"))
    assert f"{tmp_path / 'nope.pth'}: checkpoint file not found" in missing
    url = train_cli("MODEL.WEIGHTS", "https://example.org/seqrank.pth")
    assert "https://example.org/seqrank.pth: checkpoints are not downloaded" in url


@pytest.mark.e2e
@pytest.mark.parametrize("content,problem", [("", "is empty"), ("model_0000099.pth", "names")])
def test_bad_last_checkpoint(train_cli, tmp_path, content, problem):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "last_checkpoint").write_text(content)
    message = train_cli(flags=["--resume"])
    assert "last_checkpoint" in message and problem in message and "delete it" in message


@pytest.mark.e2e
def test_nan_weights_fail_at_load_time(train_cli, tmp_path):
    checkpoint = torch.load(PARITY / "checkpoint.pth", weights_only=True)
    key = next(k for k, v in checkpoint["model"].items() if v.is_floating_point())
    checkpoint["model"][key] = checkpoint["model"][key].clone().fill_(float("nan"))
    torch.save(checkpoint, tmp_path / "nan.pth")
    message = train_cli("MODEL.WEIGHTS", str(tmp_path / "nan.pth"))
    assert f"tensor '{key}' holds" in message and "NaN/Inf" in message


@pytest.mark.e2e
def test_malicious_checkpoint_is_named_untrusted(train_cli, tmp_path):
    torch.save({"model": _Call(os.system, "echo pwned")}, tmp_path / "evil.pth")
    message = train_cli("MODEL.WEIGHTS", str(tmp_path / "evil.pth"))
    assert "refusing to unpickle objects outside the allow-list" in message
    assert "posix.system" in message and "--trust-checkpoint" in message


@pytest.mark.parametrize(
    "opts,problem",
    [
        (["INPUT.FT_SIZE_TRAIN", "0"], "INPUT.FT_SIZE_TRAIN must be an integer >= 1, got 0"),
        (["SOLVER.IMS_PER_GPU", "0"], "SOLVER.IMS_PER_GPU must be an integer >= 1, got 0"),
        (["SOLVER.IMS_PER_GPU", "two"], "invalid config (command line): Type mismatch"),
        (["DATASETS.TEST", "('nope',)"], "DATASETS.TEST: dataset 'nope' is not registered"),
        (["MODEL.WEIGHTS", ""], "--eval-only needs MODEL.WEIGHTS"),
    ],
)
@pytest.mark.e2e
def test_bad_config_values(train_cli, opts, problem):
    assert problem in train_cli(*opts)


@pytest.mark.e2e
def test_malformed_yaml(train_cli, tmp_path):
    config = tmp_path / "broken.yaml"
    config.write_text("MODEL:\n  DEVICE: cpu\n    WEIGHTS: x\n")
    message = train_cli(config=config)
    assert f"{config}: not valid YAML (line 3, column 12" in message


@pytest.mark.e2e
def test_output_dir_that_is_a_file_or_not_writable(train_cli, tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert f"OUTPUT_DIR {blocker} is a file" in train_cli("OUTPUT_DIR", str(blocker))
    nested = blocker / "out"
    assert f"OUTPUT_DIR {nested} cannot be created" in train_cli("OUTPUT_DIR", str(nested))
    # Root may write anywhere, so the permission check itself is what is exercised here.
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    assert "is not writable" in train_cli("OUTPUT_DIR", str(tmp_path / "ro"))


@pytest.fixture
def dataset(tmp_path):
    """``dataset(split, change, whole=False)``: a copy of the parity dataset whose first record of
    ``split`` is changed in place by ``change`` (``whole``: its record list is replaced by
    ``change(records)``)."""
    root = tmp_path / "datasets"
    shutil.copytree(PARITY / "datasets", root, copy_function=shutil.copy)

    def make(split, change, whole=False):
        path = root / "assr" / f"assr_{split}.json"
        os.chmod(path, 0o644)
        content = json.loads(path.read_text())
        if whole:
            content["data"] = change(content["data"])
        else:
            change(content["data"][0])
        path.write_text(json.dumps(content))
        return root

    return make


@pytest.mark.parametrize(
    "change,problem",
    [
        (lambda r: r.update(height=0, width=0), "height and width must be >= 1, got 0 x 0"),
        (lambda r: r.update(height=-5), "height and width must be >= 1, got -5 x 230"),
        (lambda r: r.update(image_name="../../secret"), "must name a file inside the image"),
        (lambda r: r.update(image_name="/etc/passwd"), "must name a file inside the image"),
        (
            lambda r: r["annotations"][0]["segmentation"][0].__setitem__(0, 1e12),
            "annotation 0 polygon 0: x = 1000000000000.0 is far outside the 150 x 230",
        ),
    ],
)
@pytest.mark.e2e
def test_bad_test_records_are_named(train_cli, dataset, change, problem):
    root = dataset("test", change)
    message = train_cli("DATASETS.ROOT", str(root))
    assert "assr_test.json: record 0" in message and problem in message


@pytest.mark.e2e
def test_record_larger_than_its_image_is_refused_before_decoding(train_cli, dataset):
    # 60000 x 60000 would take 26.8 GB of GT masks; the header says 150 x 230.
    root = dataset("test", lambda r: r.update(height=60000, width=60000))
    message = train_cli("DATASETS.ROOT", str(root))
    assert "parity_fpn_000.jpg: the record says 60000 x 60000" in message
    assert "but the image is 150 x 230" in message
    message = train_cli("LIMITS.MAX_MASK_PIXELS", "1000")
    assert "parity_fpn_000.jpg: the record's 150 x 230 image exceeds 1,000 pixels" in message


@pytest.mark.e2e
def test_empty_training_sets(train_cli, dataset):
    assert "DATASETS.TRAIN is empty" in train_cli("DATASETS.TRAIN", "()", eval_only=False)
    root = dataset("train", lambda records: [], whole=True)
    message = train_cli("DATASETS.ROOT", str(root), eval_only=False)
    assert "DATASETS.TRAIN ('assr_train',): Dataset 'assr_train' is empty!" in message


@pytest.mark.e2e
def test_debug_shows_the_traceback(train_cli, tmp_path, capsys):
    argv = ["--debug", "--eval-only", "--config-file", str(PARITY / "config.yaml")]
    with pytest.raises(SystemExit) as info:
        train_net.cli(argv + ["INPUT.FT_SIZE_TEST", "0"])
    assert "Traceback" in capsys.readouterr().err and "FT_SIZE_TEST" in info.value.code


# ----------------------------------------------------------------------------- results files


def _sor_compare_error(capsys, argv):
    """Run sor_compare; its one-line error (exit code 2, its documented code for bad input)."""
    with pytest.raises(SystemExit) as info:
        sor_compare.main(argv)
    err = capsys.readouterr().err
    # The other lines on stderr are the progress bar of the scoring that stopped.
    lines = [line for line in err.splitlines() if "error" in line]
    assert info.value.code == 2, f"exit code {info.value.code!r}, stderr: {err[-2000:]}"
    assert len(lines) == 1 and "Traceback" not in err, err[-3000:]
    return lines[0]


def _compare_argv(results, tmp_path, root=PARITY / "datasets"):
    return [
        "--dataset", "assr_test", "--dataset-root", str(root), "--pred", f"A={results}",
        "--output", str(tmp_path / "compare"), "--workers", "1",
    ]  # fmt: skip


def _tool_error(capsys, tool, results, tmp_path, *extra):
    if tool == "sor_compare":
        message = _sor_compare_error(capsys, _compare_argv(results, tmp_path) + list(extra))
        assert not (tmp_path / "compare").exists()
    elif tool == "evaluation_tool":
        argv = [
            "--config-file", str(PARITY / "config.yaml"),
            "DATASETS.ROOT", str(PARITY / "datasets"), "DATASETS.TEST", "('assr_test',)",
            "MODEL.WEIGHTS", str(results), "OUTPUT_DIR", str(tmp_path / "eval"), *extra,
        ]  # fmt: skip
        message = _one_line_exit(capsys, evaluation_tool.main, argv)
    else:
        argv = ["-p", str(results), "-o", str(tmp_path / "maps"), *extra]
        message = _one_line_exit(capsys, visualize2colormap.main, argv)
    assert message.startswith(f"{tool}: error: ")
    return message


TOOLS = ["evaluation_tool", "visualize2colormap", "sor_compare"]


@pytest.mark.parametrize("tool", TOOLS)
@pytest.mark.parametrize(
    "rle,problem",
    [
        (
            _rle(150, 230, [5, 6]),
            "'counts' must be a compressed RLE string (bytes or str), got list",
        ),
        (_rle(150, 230, 12345), "'counts' must be a compressed RLE string"),
        ({"size": [-150, 230], "counts": b"0"}, "'size' must be [height, width] > 0, got [-150"),
        ({"size": ["150", "230"], "counts": b"0"}, "'size' must be [height, width] > 0"),
        ({"size": [150, 230]}, "is not a COCO RLE dict with 'size' and 'counts'"),
        (_rle(150, 230, b"zz\x01garbage"), "invalid RLE counts for a 150 x 230 mask"),
        (_rle(150, 230, b"0000"), "its runs cover 0 pixels, not 34,500"),
    ],
)
def test_bad_rles_are_named(capsys, tmp_path, tool, rle, problem):
    results = _results(tmp_path / "results.pth", [_rle(150, 230), rle])
    message = _tool_error(capsys, tool, results, tmp_path)
    assert f"{results}: record 'parity_fpn_000' mask 1" in message and problem in message


@pytest.mark.parametrize("tool", TOOLS)
def test_model_checkpoint_given_as_results_file(capsys, tmp_path, tool):
    message = _tool_error(capsys, tool, PARITY / "checkpoint.pth", tmp_path)
    assert "checkpoint.pth: this is a model checkpoint" in message and "train_net.py" in message


@pytest.mark.parametrize("tool", TOOLS)
def test_malicious_results_file(capsys, tmp_path, tool):
    torch.save({"a": _Call(os.system, "echo pwned")}, tmp_path / "evil.pth")
    message = _tool_error(capsys, tool, tmp_path / "evil.pth", tmp_path)
    assert "it holds posix.system, but a results file holds only dicts" in message
    assert "weights_only" not in message


def test_masks_of_the_wrong_size(capsys, tmp_path):
    results = _results(tmp_path / "results.pth", [_rle(10, 20)])
    message = _tool_error(capsys, "evaluation_tool", results, tmp_path)
    assert "record 'parity_fpn_000': its masks are 10 x 20 but the image is 150 x 230" in message
    mixed = _results(tmp_path / "mixed.pth", [_rle(10, 20), _rle(20, 10)])
    message = _tool_error(capsys, "visualize2colormap", mixed, tmp_path)
    assert "its masks differ in size (10 x 20, 20 x 10)" in message


def test_limits_are_options(capsys, tmp_path):
    results = _results(tmp_path / "results.pth", [_rle(150, 230)] * 3)
    message = _tool_error(
        capsys, "visualize2colormap", results, tmp_path, "--max-mask-pixels", "1000"
    )
    assert "a 150 x 230 mask exceeds 1,000 pixels" in message
    message = _tool_error(
        capsys, "evaluation_tool", results, tmp_path, "LIMITS.MAX_RECORD_PIXELS", "50000"
    )
    assert "its 3 masks exceed 50,000 pixels together" in message
    # The GT of that image (3 objects, 103,500 pixels) fits; its 5 predicted masks do not.
    results = _results(tmp_path / "five.pth", [_rle(150, 230)] * 5)
    message = _tool_error(capsys, "sor_compare", results, tmp_path, "--max-record-pixels", "150000")
    assert "its 5 masks exceed 150,000 pixels together" in message
    with pytest.raises(SystemExit) as info:
        visualize2colormap.main(["-p", "x", "-o", "y", "--max-mask-pixels", "0"])
    assert info.value.code == 2 and "expected a positive integer" in capsys.readouterr().err


def test_compared_results_of_the_wrong_size_are_refused_before_decoding(capsys, tmp_path):
    results = _results(tmp_path / "results.pth", [_rle(10, 20)])
    message = _tool_error(capsys, "sor_compare", results, tmp_path)
    assert "image 'parity_fpn_000' mask 0 has size [10, 20] but the GT image is 150 x 230" in (
        message
    )


def test_compared_dataset_records_are_bounded(capsys, tmp_path, dataset):
    results = _results(tmp_path / "results.pth", [_rle(150, 230)])
    root = dataset("test", lambda r: r.update(height=60000, width=60000))
    message = _sor_compare_error(capsys, _compare_argv(results, tmp_path, root))
    assert "the record's 60000 x 60000 image exceeds 100,000,000 pixels" in message


# ----------------------------------------------------------------------------- demo


def test_demo_never_reads_its_output_folder(capsys, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(REPO / "demo" / "examples" / "chelsea.jpg", photos)
    with pytest.raises(SystemExit) as info:
        demo.main(["--input", str(photos), "--output", str(photos)])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"error: --output {photos} holds 1 of the inputs" in err


def test_demo_names_a_text_checkpoint(tmp_path, caplog):
    weights = _weights(tmp_path, "ckp.pth", "hello\n")
    argv = ["--input", str(REPO / "demo" / "examples" / "chelsea.jpg")]
    argv += ["--output", str(tmp_path / "out"), "--config-file", str(PARITY / "config.yaml")]
    assert demo.main(argv + ["--opts", "MODEL.WEIGHTS", str(weights)]) == 1
    assert f"cannot build the model: {weights}: a text file, not a torch checkpoint" in caplog.text
    assert "Traceback" not in caplog.text


# ----------------------------------------------------------------------------- memory bombs

BOMB_SCRIPT = r"""
import contextlib, io, json, resource, sys
import torch

def address_space():
    for line in open("/proc/self/status"):
        if line.startswith("VmSize"):
            return int(line.split()[1]) * 1024

limit = address_space() + int(1.5 * 2**30)
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
import train_net
from scripts import convert_irsr, evaluation_tool, sor_compare, visualize2colormap

train_net.exit_on_sigterm = lambda *args, **kwargs: None
tools = {"train_net": train_net.cli, "evaluation_tool": evaluation_tool.main,
         "visualize2colormap": visualize2colormap.main, "convert_irsr": convert_irsr.main,
         "sor_compare": sor_compare.main}
for name, tool, argv in json.loads(sys.argv[1]):
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            tools[tool](argv)
        code = 0
    except SystemExit as exc:
        code = exc.code
        # sor_compare prints its line itself and exits with 2.
        if code == 2 and err.getvalue().strip():
            code = err.getvalue().strip().splitlines()[-1]
    except BaseException as exc:
        code = f"UNCAUGHT {type(exc).__name__}: {exc}"
    sys.stderr.write(err.getvalue())
    print("RESULT", json.dumps([name, code]), flush=True)
"""


def _irsr_release(root, payload, protocol=2):
    (root / "Annotations").mkdir(parents=True)
    (root / "Images" / "test" / "rgb").mkdir(parents=True)
    with open(root / "Annotations" / "test.pkl", "wb") as f:
        pickle.dump(payload, f, protocol=protocol)
    return root


def _bomb_cases(tmp_path):
    """(name, tool, argv, expected message part) of every memory bomb."""
    bomb = _Call(bytearray, BOMB_BYTES)
    torch.save({"model": bomb}, tmp_path / "bomb.pth")
    torch.save({"parity_fpn_000": bomb}, tmp_path / "bomb_results.pth")
    zero = _rle(4000, 4000)
    _results(tmp_path / "repeated.pth", [zero] * 2000)
    _results(tmp_path / "huge.pth", [_rle(100_000, 100_000, b"0")])
    # Runs of 2^31 pixels: pycocotools would write them past its buffer.
    _results(tmp_path / "overrun.pth", [_rle(150, 230, b"0nnnnnb0")])
    text = "x" * 1_000_000
    copies = [_Call(_codecs.encode, text, "latin1") for _ in range(2000)]
    torch.save({"a": copies}, tmp_path / "memo.pth")
    irsr_bytearray = _irsr_release(tmp_path / "irsr1", [bomb])
    irsr_range = _irsr_release(tmp_path / "irsr2", [_Call(set, _Call(range, 10**12))], 4)
    records = json.loads((PARITY / "datasets" / "assr" / "assr_test.json").read_text())
    records["data"][0].update(height=60000, width=60000)
    root = tmp_path / "datasets"
    shutil.copytree(PARITY / "datasets", root, copy_function=shutil.copy)
    os.chmod(root / "assr" / "assr_test.json", 0o644)
    (root / "assr" / "assr_test.json").write_text(json.dumps(records))
    eval_opts = ["DATASETS.TEST", "('assr_test',)", "OUTPUT_DIR", str(tmp_path / "eval")]
    config = ["--config-file", str(PARITY / "config.yaml")]
    limit = "refusing to unpickle: calling builtins.bytearray would allocate 19,073 MB"

    def evaluation(results):
        return (
            config
            + ["DATASETS.ROOT", str(PARITY / "datasets")]
            + eval_opts
            + ["MODEL.WEIGHTS", str(results)]
        )

    def colormaps(results):
        return ["-p", str(results), "-o", str(tmp_path / "maps")]

    def compare(results, dataset_root=PARITY / "datasets"):
        return _compare_argv(results, tmp_path, dataset_root)

    train = ["--eval-only", *config, "MODEL.DEVICE", "cpu", "DATALOADER.NUM_WORKERS", "0"]
    return [
        ("checkpoint", "train_net", train + eval_opts + [
            "DATASETS.ROOT", str(PARITY / "datasets"), "MODEL.WEIGHTS", str(tmp_path / "bomb.pth")
        ], limit),
        ("record", "train_net", train + eval_opts + [
            "DATASETS.ROOT", str(root), "MODEL.WEIGHTS", str(PARITY / "checkpoint.pth"),
        ], "the record says 60000 x 60000 (height x width) but the image is 150 x 230"),
        ("results", "evaluation_tool", evaluation(tmp_path / "bomb_results.pth"), limit),
        ("colormaps", "visualize2colormap", colormaps(tmp_path / "bomb_results.pth"), limit),
        ("repeated", "visualize2colormap", colormaps(tmp_path / "repeated.pth"),
         "its 2000 masks exceed 400,000,000 pixels together"),
        ("repeated_eval", "evaluation_tool", evaluation(tmp_path / "repeated.pth"),
         "its 2000 masks exceed 400,000,000 pixels together"),
        ("huge", "visualize2colormap", colormaps(tmp_path / "huge.pth"),
         "a 100000 x 100000 mask exceeds 100,000,000 pixels"),
        ("overrun", "visualize2colormap", colormaps(tmp_path / "overrun.pth"),
         "invalid RLE counts for a 150 x 230 mask"),
        ("memo", "evaluation_tool", evaluation(tmp_path / "memo.pth"),
         "calling _codecs.encode takes its objects past"),
        ("compare", "sor_compare", compare(tmp_path / "bomb_results.pth"), limit),
        ("repeated_compare", "sor_compare", compare(tmp_path / "repeated.pth"),
         "its 2000 masks exceed 400,000,000 pixels together"),
        ("overrun_compare", "sor_compare", compare(tmp_path / "overrun.pth"),
         "invalid RLE counts for a 150 x 230 mask"),
        ("memo_compare", "sor_compare", compare(tmp_path / "memo.pth"),
         "calling _codecs.encode takes its objects past"),
        ("record_compare", "sor_compare", compare(tmp_path / "repeated.pth", root),
         "the record's 60000 x 60000 image exceeds 100,000,000 pixels"),
        ("irsr_bytearray", "convert_irsr", [
            "--root", str(irsr_bytearray), "--output", str(tmp_path / "conv"), "--splits", "test"
        ], limit),
        ("irsr_range", "convert_irsr", [
            "--root", str(irsr_range), "--output", str(tmp_path / "conv"), "--splits", "test"
        ], "calling builtins.range would allocate"),
    ]  # fmt: skip


@pytest.mark.e2e
def test_memory_bombs_are_refused_under_a_memory_limit(tmp_path):
    cases = _bomb_cases(tmp_path)
    argv = json.dumps([case[:3] for case in cases])
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", BOMB_SCRIPT, argv],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    results = dict(
        json.loads(line[len("RESULT ") :])
        for line in proc.stdout.splitlines()
        if line.startswith("RESULT ")
    )
    for name, tool, _, expected in cases:
        assert name in results, f"{name}: no result (rc {proc.returncode}): {proc.stderr[-3000:]}"
        message = results[name]
        prog = "train_net.py" if tool == "train_net" else tool
        assert isinstance(message, str) and message.startswith(f"{prog}: error: "), message
        assert expected in message and "\n" not in message, message
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
