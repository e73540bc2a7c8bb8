"""Helpers shared by the tests: configs, official state-dict manifests, the parity checkpoint and
the dataset converters' outputs.

Everything that reads ../shared goes through ``require_shared`` so that missing reference data
fails the test instead of skipping it.
"""

import json
import re
import socket
import subprocess
import sys
from functools import lru_cache

import torch
from detectron2.config import get_cfg
from detectron2.modeling import build_model
from PIL import Image

from seqrank.checkpoint import SeqRankCheckpointer
from seqrank.config import add_seqrank_config, merge_config_file
from seqrank.data.datasets import load_sor_json
from seqrank.engine import build_cfg
from tests.conftest import PARITY, REPO, require_shared

__all__ = [
    "free_port",
    "load_converted",
    "load_parity_strictly",
    "manifest_entries",
    "manifest_entry",
    "module_entries",
    "official_cfg",
    "parity_arch",
    "parity_cfg",
    "run_converter_cli",
    "run_distributed",
    "parity_model",
    "seqrank_cfg",
    "write_jpeg",
    "write_tiny_checkpoint",
]


def seqrank_cfg():
    """Default detectron2 config with every SeqRank key added."""
    cfg = get_cfg()
    add_seqrank_config(cfg)
    return cfg


def official_cfg(name):
    """Config of the original release, ``reference/official_configs/<name>``."""
    path = require_shared() / "reference" / "official_configs" / name
    return merge_config_file(seqrank_cfg(), str(path))


def parity_cfg():
    """Config of the tiny parity model (``reference/parity_fpn``)."""
    require_shared()
    return merge_config_file(seqrank_cfg(), str(PARITY / "config.yaml"))


def parity_arch(*opts):
    """The parity config's model on CPU with ``opts``, randomly initialised (no checkpoint)."""
    require_shared()
    return build_model(build_cfg(str(PARITY / "config.yaml"), ["MODEL.DEVICE", "cpu", *opts]))


def parity_model(*opts):
    """``(cfg, model)``: the parity config on CPU with ``opts``, its checkpoint loaded."""
    require_shared()
    cfg = build_cfg(str(PARITY / "config.yaml"), ["MODEL.DEVICE", "cpu", *opts])
    model = build_model(cfg)
    SeqRankCheckpointer(model).load(str(PARITY / "checkpoint.pth"))
    return cfg, model


@lru_cache(maxsize=None)
def _manifest():
    path = require_shared() / "reference" / "official_state_dict_manifest.json"
    return json.loads(path.read_text())


def manifest_entry(config_name):
    """The official manifest's record of one config (``state_dict``, ``per_module_parameters``)."""
    return _manifest()[config_name]


def manifest_entries(config_name, prefix):
    """``(key, shape, dtype)`` of the official state dict under ``prefix``, prefix removed."""
    return [
        (key[len(prefix) :], tuple(shape), dtype)
        for key, shape, dtype in manifest_entry(config_name)["state_dict"]
        if key.startswith(prefix)
    ]


def module_entries(module):
    """``(key, shape, dtype)`` of ``module``'s state dict, in the manifest's format."""
    return [
        (key, tuple(v.shape), str(v.dtype).replace("torch.", ""))
        for key, v in module.state_dict().items()
    ]


@lru_cache(maxsize=1)
def _parity_model_state():
    require_shared()
    return torch.load(PARITY / "checkpoint.pth", map_location="cpu", weights_only=True)["model"]


def load_parity_strictly(module, prefix):
    """Load the parity checkpoint's ``prefix`` weights into ``module`` with ``strict=True``.

    Also checks that the checkpoint lists the keys in the module's order. Returns the loaded
    sub-state-dict (prefix removed).
    """
    state = _parity_model_state()
    sub = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    module.load_state_dict(sub, strict=True)
    assert list(sub) == list(module.state_dict())
    return sub


def load_converted(output, dataset, split="test"):
    """Records of a converted ``<output>/<dataset>/<dataset>_<split>.json``, by image name."""
    root = output / dataset
    records = load_sor_json(root / f"{dataset}_{split}.json", root / "images" / split)
    return {r["image_name"]: r for r in records}


def run_converter_cli(converter, release, output, *extra):
    """Run ``python -m scripts.<converter> --root release --output output *extra`` in the repo."""
    command = [sys.executable, "-m", f"scripts.{converter}", "--root", str(release)]
    return subprocess.run(
        command + ["--output", str(output), *extra],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


def write_jpeg(path, height, width, color):
    """Save a ``height`` x ``width`` JPEG of one RGB ``color`` at ``path`` (folders created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (width, height), color).save(path, "JPEG")


def free_port():
    """A TCP port of 127.0.0.1 that the OS handed out just now (bound to port 0, released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


_PORT_TAKEN = re.compile(r"EADDRINUSE|address already in use", re.I)


def run_distributed(command, attempts=3, **kwargs):
    """``subprocess.run(command)`` for a multi-process detectron2 CLI, on a free port.

    ``--dist-url tcp://127.0.0.1:<port>`` is inserted after the script (``command[1]``), with a
    port the OS has just reported free instead of detectron2's fixed per-user default (two suites
    at once would share it). Another process can still take the port before the rendezvous
    binds it: such a run (EADDRINUSE) is repeated on a fresh port, up to ``attempts`` times.
    """
    kwargs = {"capture_output": True, "text": True, **kwargs}
    for _ in range(attempts):
        url = f"tcp://127.0.0.1:{free_port()}"
        proc = subprocess.run([*command[:2], "--dist-url", url, *command[2:]], **kwargs)
        if proc.returncode == 0 or not _PORT_TAKEN.search(f"{proc.stdout}{proc.stderr}"):
            return proc
    return proc


TINY_CONFIG = REPO / "configs" / "quick_schedules" / "synsor_tiny.yaml"


def write_tiny_checkpoint(path, sidecar=False):
    """Save a randomly initialised quick-schedule model (``synsor_tiny.yaml``) at ``path`` like
    training does (``{"model": state_dict, "iteration"}``); ``sidecar`` also writes the config
    as ``config.yaml`` beside it, as training's OUTPUT_DIR has it. Returns ``path``."""
    cfg = build_cfg(str(TINY_CONFIG), ["MODEL.DEVICE", "cpu"])
    torch.manual_seed(0)
    model = build_model(cfg)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model.state_dict(), "iteration": 0}, path)
    if sidecar:
        (path.parent / "config.yaml").write_text(cfg.dump())
    return path
