"""ImageNet backbone files as users get them: converted by the original
``pretrained/convert_backbone.py`` (every key prefixed, classification leftovers kept) or raw from
Microsoft's Swin release. Both initialise the backbone; missing or misshapen weights still fail."""

import logging
from collections import OrderedDict

import pytest
import torch

import seqrank  # noqa: F401
from scripts.convert_backbone import main as convert_main
from seqrank.checkpoint import CheckpointMismatchError, SeqRankCheckpointer
from tests.helpers import parity_arch, parity_cfg

STAGE_NORMS = [f"backbone.norm{i}.{p}" for i in range(4) for p in ("weight", "bias")]
# The tiny parity Swin (window 7) pre-trained at 224: 56 / 2**s tokens a side at stage s.
WINDOWS_PER_STAGE = (64, 16, 4, 1)


@pytest.fixture(scope="module")
def parity_state():
    from tests.conftest import PARITY

    return torch.load(PARITY / "checkpoint.pth", weights_only=True)["model"]


def microsoft_swin(parity_state):
    """The parity backbone laid out like Microsoft's Swin checkpoints: no prefix, no stage norms
    norm0..3, plus the classifier, its final norm and the shifted blocks' ``attn_mask``."""
    dim = parity_cfg().MODEL.SWIN.EMBED_DIM * 8
    model = OrderedDict()
    for key, value in parity_state.items():
        bare = key[len("backbone.") :]
        if key.startswith("backbone.") and key not in STAGE_NORMS:
            model[bare] = value.clone()
        if bare.endswith("blocks.1.attn.relative_position_index"):
            stage = int(bare.split(".")[1])
            n = WINDOWS_PER_STAGE[stage]
            model[bare.replace("attn.relative_position_index", "attn_mask")] = torch.zeros(
                n, 49, 49
            )
    model["norm.weight"], model["norm.bias"] = torch.ones(dim), torch.zeros(dim)
    model["head.weight"], model["head.bias"] = torch.randn(1000, dim), torch.randn(1000)
    return {"model": model}


def original_converter(source):
    """What the original ``pretrained/convert_backbone.py`` writes: every key of ``model``
    prefixed with ``backbone.`` (nothing dropped), the other top-level entries copied."""
    converted = {"model": OrderedDict(("backbone." + k, v) for k, v in source["model"].items())}
    converted.update({k: v for k, v in source.items() if k != "model"})
    return converted


def _load(path, caplog):
    model = parity_arch()
    with caplog.at_level(logging.INFO, logger="seqrank.checkpoint"):
        SeqRankCheckpointer(model).load(str(path))
    return model


def _assert_backbone_loaded(model, parity_state):
    state = model.state_dict()
    for key, value in parity_state.items():
        if key.startswith("backbone.") and key not in STAGE_NORMS:
            assert torch.equal(state[key], value), key
    for key in STAGE_NORMS:  # detection-only: LayerNorm defaults, as in the original
        expected = 1.0 if key.endswith("weight") else 0.0
        assert torch.all(state[key] == expected), key
    assert not torch.equal(state["instance_seg.qpe"], parity_state["instance_seg.qpe"])


@pytest.mark.parametrize("layout", ["original_converter", "microsoft_raw"])
def test_classification_backbone_files_initialise_the_backbone(
    layout, tmp_path, caplog, parity_state
):
    source = microsoft_swin(parity_state)
    payload = original_converter(source) if layout == "original_converter" else source
    path = tmp_path / f"{layout}.pth"
    torch.save(payload, path)
    model = _load(path, caplog)
    _assert_backbone_loaded(model, parity_state)
    ignored = [r.getMessage() for r in caplog.records if "ignored" in r.getMessage()]
    assert ignored == [
        f"{path}: ignored 8 key(s) of the classification model: norm.weight, norm.bias, "
        "head.weight, head.bias, 4 attn_mask buffers"
    ]


def test_our_converter_output_loads(tmp_path, caplog, parity_state):
    """Our converter (``pretrained/convert_backbone.py``) drops the leftovers instead."""
    src = tmp_path / "swin_microsoft.pth"
    torch.save(microsoft_swin(parity_state), src)
    out = tmp_path / "converted.pth"
    assert convert_main([str(src), str(out)]) == 0
    _assert_backbone_loaded(_load(out, caplog), parity_state)


def _converted(parity_state, edit):
    payload = original_converter(microsoft_swin(parity_state))
    edit(payload["model"])
    return payload


@pytest.mark.parametrize(
    "edit,message",
    [
        (lambda sd: sd.pop("backbone.layers.1.blocks.0.mlp.fc1.weight"), r"missing 1: .*fc1"),
        (lambda sd: sd.pop("backbone.patch_embed.proj.bias"), r"missing 1: .*patch_embed"),
        (
            lambda sd: sd.update({"backbone.layers.0.blocks.0.attn.qkv.weight": torch.zeros(3, 3)}),
            r"shapes that do not fit.*qkv\.weight",
        ),
        (lambda sd: sd.update({"backbone.extra.weight": torch.zeros(1)}), "unexpected 1: .*extra"),
        (
            lambda sd: sd.update({"backbone.norm0.weight": torch.zeros(7)}),
            r"shapes that do not fit.*norm0",
        ),
    ],
)
def test_incomplete_or_misshapen_backbone_still_fails(edit, message, tmp_path, parity_state):
    path = tmp_path / "bad_backbone.pth"
    torch.save(_converted(parity_state, edit), path)
    model = parity_arch()
    before = model.state_dict()["backbone.patch_embed.proj.weight"].clone()
    with pytest.raises(CheckpointMismatchError, match=message):
        SeqRankCheckpointer(model).load(str(path))
    # Nothing was loaded before the error.
    assert torch.equal(model.state_dict()["backbone.patch_embed.proj.weight"], before)


def test_full_model_checkpoint_with_leftovers_stays_strict(tmp_path, parity_state):
    state = dict(parity_state)
    state["backbone.head.weight"] = torch.zeros(1000, 256)
    path = tmp_path / "full_with_head.pth"
    torch.save({"model": state}, path)
    with pytest.raises(CheckpointMismatchError, match=r"unexpected 1 keys: backbone\.head\.weight"):
        SeqRankCheckpointer(parity_arch()).load(str(path))
