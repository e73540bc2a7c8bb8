"""SeqRankPredictor honours INPUT.FORMAT as detectron2's DefaultPredictor (and the original demo's
predictor) do: the model receives the image in that channel order."""

import os

import numpy as np
import pytest
import torch

from seqrank.engine.setup import build_cfg
from seqrank.predictor import SeqRankPredictor, preprocess
from tests.conftest import PARITY


def _predictor(input_format):
    opts = ["MODEL.WEIGHTS", str(PARITY / "checkpoint.pth"), "MODEL.DEVICE", "cpu"]
    cfg = build_cfg(str(PARITY / "config.yaml"), opts + ["INPUT.FORMAT", input_format])
    predictor = SeqRankPredictor(cfg)
    seen = []
    predictor.model = lambda batch: seen.append(batch[0]) or [{"num": 0}]
    return predictor, seen


@pytest.mark.parametrize("input_format", ["RGB", "BGR"])
def test_model_input_follows_input_format(input_format):
    rgb = np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    predictor, seen = _predictor(input_format)
    predictor(rgb, "x")
    expected = rgb if input_format == "RGB" else rgb[:, :, ::-1]
    size = predictor.size
    assert torch.equal(seen[0]["image"], preprocess(np.ascontiguousarray(expected), size))
    assert (seen[0]["height"], seen[0]["width"]) == (30, 40)


def test_unknown_input_format_is_refused():
    opts = ["MODEL.WEIGHTS", str(PARITY / "checkpoint.pth"), "INPUT.FORMAT", "YUV-BT.601"]
    with pytest.raises(ValueError, match="INPUT.FORMAT must be 'RGB' or 'BGR'"):
        SeqRankPredictor(build_cfg(str(PARITY / "config.yaml"), opts))


def test_trust_is_a_parameter_not_the_environment(tmp_path, monkeypatch):
    """--trust-checkpoint reaches the checkpointer as ``trust``; the process environment is left
    alone (issue 10, item 5)."""
    import fractions

    from seqrank.checkpoint import TRUST_ENV, UntrustedCheckpointError
    from seqrank.predictor import build_predictor_from_args

    state = torch.load(PARITY / "checkpoint.pth", weights_only=True)
    path = tmp_path / "objects_ckp.pth"
    torch.save({**state, "extra": fractions.Fraction(1, 3)}, path)
    monkeypatch.delenv(TRUST_ENV, raising=False)
    config, opts = str(PARITY / "config.yaml"), ["MODEL.WEIGHTS", str(path), "MODEL.DEVICE", "cpu"]
    with pytest.raises(UntrustedCheckpointError):
        build_predictor_from_args(config, opts, trust_checkpoint=False)
    assert isinstance(build_predictor_from_args(config, opts, True), SeqRankPredictor)
    assert TRUST_ENV not in os.environ
    with pytest.raises(UntrustedCheckpointError):
        build_predictor_from_args(config, opts, trust_checkpoint=False)
