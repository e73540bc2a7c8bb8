"""Strict, safe checkpoint loading."""

import collections
import fractions

import numpy as np
import pytest
import torch

import seqrank  # noqa: F401
from seqrank.checkpoint import (
    TRUST_ENV,
    CheckpointMismatchError,
    SeqRankCheckpointer,
    UntrustedCheckpointError,
    safe_torch_load,
)
from tests.conftest import PARITY
from tests.helpers import parity_arch


@pytest.fixture(scope="module")
def parity_state():
    return torch.load(PARITY / "checkpoint.pth", weights_only=True)["model"]


def test_parity_checkpoint_loads_with_no_missing_or_unexpected_keys(parity_state):
    model = parity_arch()
    SeqRankCheckpointer(model).load(str(PARITY / "checkpoint.pth"))
    state = model.state_dict()
    assert list(state) == list(parity_state)  # nothing missing, nothing unexpected
    for key, value in state.items():
        assert torch.equal(value, parity_state[key]), key


def test_unexpected_and_missing_keys_fail_naming_them(tmp_path, parity_state):
    extra = dict(parity_state, **{"instance_seg.extra_layer.weight": torch.zeros(2)})
    del extra["gaze_shift.prev_emb"]
    path = tmp_path / "extra.pth"
    torch.save({"model": extra}, path)
    with pytest.raises(CheckpointMismatchError) as info:
        SeqRankCheckpointer(parity_arch()).load(str(path))
    message = str(info.value)
    assert "missing 1 keys: gaze_shift.prev_emb" in message
    assert "unexpected 1 keys: instance_seg.extra_layer.weight" in message


def test_wrong_neck_fails_with_key_list(parity_state):
    model = parity_arch("MODEL.NECK.NAME", "FrcPN")
    with pytest.raises(CheckpointMismatchError, match=r"neck\.(frcs|fpn_layers)"):
        SeqRankCheckpointer(model).load(str(PARITY / "checkpoint.pth"))


def test_wrong_shapes_fail(parity_state):
    model = parity_arch("MODEL.COMMON.NUM_QUERIES", "8")
    with pytest.raises(CheckpointMismatchError, match="instance_seg.q "):
        SeqRankCheckpointer(model).load(str(PARITY / "checkpoint.pth"))


def test_detectron2_trainer_state_loads_safely(tmp_path, parity_state):
    ckpt = {
        "model": parity_state,
        "optimizer": {"state": {}, "param_groups": [{"lr": 1e-4, "params": [0]}]},
        "scheduler": {"milestones": collections.Counter({20000: 1}), "last_epoch": np.int64(5)},
        "iteration": 5,
        "trainer": {"iteration": 5, "hooks": {}, "grad_scaler": {"scale": np.float64(2.0)}},
    }
    path = tmp_path / "ckp.pth"
    torch.save(ckpt, path)
    loaded = safe_torch_load(str(path))
    assert loaded["iteration"] == 5
    model = parity_arch()
    rest = SeqRankCheckpointer(model).load(str(path))
    assert rest["iteration"] == 5 and rest["scheduler"]["last_epoch"] == 5
    for key, value in model.state_dict().items():
        assert torch.equal(value, parity_state[key]), key


def test_arbitrary_objects_need_opt_in(tmp_path, parity_state, monkeypatch):
    path = tmp_path / "evil.pth"
    torch.save({"model": parity_state, "extra": fractions.Fraction(1, 3)}, path)
    monkeypatch.delenv(TRUST_ENV, raising=False)
    with pytest.raises(UntrustedCheckpointError, match="--trust-checkpoint"):
        safe_torch_load(str(path))
    assert safe_torch_load(str(path), trust=True)["extra"] == fractions.Fraction(1, 3)
    model = parity_arch()
    with pytest.raises(UntrustedCheckpointError):
        SeqRankCheckpointer(model).load(str(path))
    SeqRankCheckpointer(model, trust=True).load(str(path))
    monkeypatch.setenv(TRUST_ENV, "1")  # the default of ``trust``, read when made
    checkpointer = SeqRankCheckpointer(model)
    monkeypatch.delenv(TRUST_ENV)
    checkpointer.load(str(path))
    with pytest.raises(UntrustedCheckpointError):
        SeqRankCheckpointer(model, trust=False).load(str(path))


def test_missing_and_garbage_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        safe_torch_load(str(tmp_path / "nope.pth"))
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="bad.pth"):
        safe_torch_load(str(bad))


def test_backbone_only_weights_initialise_backbone(tmp_path, parity_state):
    path = tmp_path / "backbone.pth"
    backbone = {k: v for k, v in parity_state.items() if k.startswith("backbone.")}
    torch.save({"model": backbone}, path)
    model = parity_arch()
    SeqRankCheckpointer(model).load(str(path))
    state = model.state_dict()
    assert torch.equal(
        state["backbone.patch_embed.proj.weight"], parity_state["backbone.patch_embed.proj.weight"]
    )
    assert not torch.equal(state["instance_seg.qpe"], parity_state["instance_seg.qpe"])
