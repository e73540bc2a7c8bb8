"""TEST.PRECISION: reduced-precision inference with float32 decisions, the fp32 fallback where the
device lacks the precision, and the config check (issue 13, item 1)."""

import logging

import pytest
import torch

from seqrank.cli import ConfigError
from seqrank.engine import build_cfg
from seqrank.modeling import precision as precision_module
from seqrank.modeling.precision import check_precision, float32_decision, resolve_precision
from tests.conftest import PARITY
from tests.helpers import parity_model

META_LOGGER = "seqrank.modeling.meta_arch"


@pytest.fixture(scope="module")
def tiny():
    """The parity model (trained tiny FPN) and two of its test-sized random inputs."""
    _, model = parity_model("INPUT.FT_SIZE_TEST", "96")
    model.eval()
    gen = torch.Generator().manual_seed(0)
    images = [
        {"image": torch.rand(3, 96, 96, generator=gen) * 255, "height": 60, "width": 80}
        for _ in range(2)
    ]
    return model, images


@pytest.fixture
def bf16_cpu(monkeypatch):
    """Pretend this CPU has BF16 instructions (bf16 is emulated, slower but correct, without)."""
    monkeypatch.setattr(precision_module, "cpu_supports_bf16", lambda: True)


def _run(model, images, precision):
    model.set_precision(precision)
    try:
        return model(images)
    finally:
        model.set_precision("fp32")


def _same(results_a, results_b):
    for a, b in zip(results_a, results_b):
        assert a["num"] == b["num"]
        assert a["scores"] == b["scores"] and a["saliency"] == b["saliency"]
        assert a["bboxes"] == b["bboxes"]
        assert all((x == y).all() for x, y in zip(a["masks"], b["masks"]))


def _trunk_and_logits(model, images, precision):
    """Results, the foveal head's outputs and the first ranking step's logits of one run, and
    whether autocast was on in the trunk."""
    seen = {}

    def trunk_hook(module, inputs, output):
        seen.update(trunk=output, autocast=torch.is_autocast_enabled("cpu"))

    hooks = [
        model.instance_seg.register_forward_hook(trunk_hook),
        model.gaze_shift.register_forward_hook(lambda m, i, o: seen.setdefault("logits", o)),
    ]
    try:
        results = _run(model, images, precision)
    finally:
        for hook in hooks:
            hook.remove()
    return results, seen


def test_fp32_is_the_default_and_runs_without_autocast(tiny):
    model, images = tiny
    assert build_cfg(str(PARITY / "config.yaml")).TEST.PRECISION == "fp32"
    assert model.precision == "fp32" and model.inference_dtype() is None
    _, seen = _trunk_and_logits(model, images, "fp32")
    q, _, out, _ = seen["trunk"]
    assert not seen["autocast"]
    assert q.dtype == out["masks"].dtype == seen["logits"].dtype == torch.float32


def test_bf16_runs_the_trunk_in_bf16_and_decides_in_float32(tiny, bf16_cpu):
    model, images = tiny
    fp32 = _run(model, images, "fp32")
    bf16, seen = _trunk_and_logits(model, images, "bf16")
    q, _, out, _ = seen["trunk"]
    # Autocast ran the trunk's matmuls in bfloat16 ...
    assert seen["autocast"] and q.dtype == out["masks"].dtype == torch.bfloat16
    # ... and the decisions stayed float32: objectness and ranking logits.
    assert out["scores"].dtype == torch.float32 and seen["logits"].dtype == torch.float32
    for a, b in zip(fp32, bf16):
        assert b["num"] == a["num"] and len(b["masks"]) == b["num"]
        assert all(m.dtype == bool and m.shape == (60, 80) for m in b["masks"])
        assert all(isinstance(s, float) for s in b["scores"] + b["saliency"])
        assert b["scores"] == pytest.approx(a["scores"], abs=0.05)


def test_fp16_on_cpu_falls_back_to_fp32_with_one_warning(tiny, caplog):
    model, images = tiny
    fp32 = _run(model, images, "fp32")
    model.set_precision("fp16")
    try:
        with caplog.at_level(logging.INFO, logger=META_LOGGER):
            first, second = model(images), model(images)
    finally:
        model.set_precision("fp32")
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "fp16 needs a GPU" in warnings[0].getMessage()
    _same(fp32, first)
    _same(fp32, second)


def test_bf16_without_cpu_support_falls_back_to_fp32_with_one_warning(tiny, monkeypatch, caplog):
    monkeypatch.setattr(precision_module, "cpu_supports_bf16", lambda: False)
    model, images = tiny
    fp32 = _run(model, images, "fp32")
    model.set_precision("bf16")
    try:
        with caplog.at_level(logging.INFO, logger=META_LOGGER):
            assert model.inference_dtype() is None
            bf16 = model(images)
    finally:
        model.set_precision("fp32")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "no BF16 instructions" in warnings[0]
    _same(fp32, bf16)


def test_resolve_precision_per_device(monkeypatch):
    monkeypatch.setattr(precision_module, "cpu_supports_bf16", lambda: True)
    assert resolve_precision("fp32", "cpu") == (None, None)
    assert resolve_precision("BF16", "cpu") == (torch.bfloat16, None)
    dtype, note = resolve_precision("fp16", "cpu")
    assert dtype is None and "needs a GPU" in note
    dtype, note = resolve_precision("bf16", "meta")
    assert dtype is None and "not supported on meta" in note


def test_cpu_bf16_check_reads_the_cpu_flags(monkeypatch):
    check = precision_module.cpu_supports_bf16.__wrapped__
    monkeypatch.setattr(precision_module, "_cpu_flags", lambda: {"avx2", "avx512f"})
    assert check() is False
    monkeypatch.setattr(precision_module, "_cpu_flags", lambda: {"avx512f", "avx512_bf16"})
    assert check() is True
    monkeypatch.setattr(precision_module, "_cpu_flags", lambda: {"amx_bf16"})
    assert check() is True


def test_float32_decision_is_the_identity_in_fp32_and_float32_under_autocast():
    torch.manual_seed(0)
    head = torch.nn.Linear(8, 1).eval()
    x = torch.randn(3, 8)
    assert torch.equal(float32_decision(head, x), head(x))
    expected = head(x.bfloat16().float())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert head(x).dtype == torch.bfloat16
        assert torch.equal(float32_decision(head, x.bfloat16()), expected)
        head.train()
        # Training keeps the AMP setting: the head runs under autocast as before.
        assert float32_decision(head, x).dtype == torch.bfloat16


@pytest.mark.parametrize("value", ["fp8", "float32", "", "half"])
def test_unknown_precision_is_a_one_line_config_error(value):
    with pytest.raises(ConfigError, match=r"^TEST.PRECISION must be one of fp32, bf16, fp16, got"):
        build_cfg(str(PARITY / "config.yaml"), ["TEST.PRECISION", value])
    with pytest.raises(ConfigError, match="TEST.PRECISION must be one of"):
        check_precision(value)


def test_set_precision_refuses_unknown_values(tiny):
    model, _ = tiny
    with pytest.raises(ConfigError, match="TEST.PRECISION must be one of"):
        model.set_precision("int8")
    assert model.precision == "fp32"
