"""The optimised inference path (``SeqRank.set_fast_inference``) against the original's loop
(tests/reference/ranking.py) without speed-ups."""

import numpy as np
import pytest
import torch
from detectron2.modeling import build_model

import seqrank  # noqa: F401
from seqrank.data.datasets import load_sor_json
from seqrank.data.mapper import SORDatasetMapper
from seqrank.engine import build_cfg
from seqrank.modeling.components import Attention
from seqrank.modeling.ranking import SequentialRankingModule
from tests.conftest import PARITY
from tests.helpers import parity_model
from tests.reference.ranking import run_reference


@pytest.fixture(scope="module")
def parity_setup():
    # One thread: these tiny ops gain nothing from two, and lose a lot on a shared machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    cfg, model = parity_model()
    model.eval()
    records = load_sor_json(
        str(PARITY / "datasets" / "assr" / "assr_test.json"),
        str(PARITY / "datasets" / "assr" / "images" / "test"),
    )
    mapper = SORDatasetMapper(cfg, is_train=False)
    # Image 003 stops after 8 objects, the others run all 16 steps.
    inputs = [mapper(r) for r in records]
    yield model, inputs
    torch.set_num_threads(threads)


def _run(model, batch, **switches):
    if not switches["enabled"]:
        return run_reference(model, batch)
    model.set_fast_inference(**switches)
    with torch.no_grad():
        return model(batch)


@pytest.mark.parametrize("indices", [(0, 3), (3, 1, 2)])
def test_active_ranking_is_identical_to_the_reference_loop(parity_setup, indices):
    model, inputs = parity_setup
    batch = [inputs[i] for i in indices]
    reference = _run(model, batch, enabled=False)
    # Same features (no SDPA): dropping stopped images and batching the upsampling change nothing.
    fast = _run(model, batch, enabled=True, fused_attention=False)
    assert [r["num"] for r in reference] == [r["num"] for r in fast]
    assert 8 in [r["num"] for r in fast]
    for ref, got in zip(reference, fast):
        assert ref["image_name"] == got["image_name"]
        assert ref["scores"] == got["scores"] and ref["saliency"] == got["saliency"]
        assert ref["bboxes"] == got["bboxes"]
        for a, b in zip(ref["masks"], got["masks"]):
            assert a.dtype == b.dtype == np.bool_ and a.shape == b.shape
            np.testing.assert_array_equal(a, b)


def test_full_fast_path_is_within_parity_tolerances(parity_setup):
    model, inputs = parity_setup
    reference = _run(model, inputs[2:], enabled=False)
    fast = _run(model, inputs[2:], enabled=True)
    for ref, got in zip(reference, fast):
        assert ref["num"] == got["num"]
        for a, b in zip(ref["masks"], got["masks"]):
            inter, union = np.sum((a > 0.5) & (b > 0.5)), np.sum((a > 0.5) | (b > 0.5))
            assert union == 0 or inter / union >= 0.99
        # Relative: the objectness values are about 0.001-0.01 (measured differences < 4e-6).
        np.testing.assert_allclose(ref["scores"], got["scores"], rtol=1e-4, atol=0)
        np.testing.assert_allclose(ref["saliency"], got["saliency"], rtol=1e-4, atol=0)
        np.testing.assert_allclose(ref["bboxes"], got["bboxes"], rtol=0, atol=0.01)


def test_switches_follow_mode_and_default(parity_setup):
    model, _ = parity_setup
    fused = [m for m in model.modules() if hasattr(m, "use_sdpa")]
    assert any(isinstance(m, Attention) for m in fused) and len(fused) > 20
    model.set_fast_inference(True)
    assert model.fast_inference and model.cache_tokens
    assert all(m.use_sdpa for m in fused)
    model.train()
    assert not any(m.use_sdpa for m in fused)  # training keeps the original maths
    model.eval()
    assert all(m.use_sdpa for m in fused)
    model.set_fast_inference(False)
    assert not any(m.use_sdpa for m in fused) and not model.cache_tokens
    model.set_fast_inference(True)

    cfg = build_cfg(str(PARITY / "config.yaml"), ["MODEL.DEVICE", "cpu"])
    built = build_model(cfg).eval()  # on by default, passed down to every attention module
    assert built.fast_inference and built.cache_tokens and built.fused_attention
    assert all(m.use_sdpa for m in built.modules() if hasattr(m, "use_sdpa"))
    cfg.MODEL.SEQRANK.FAST_INFERENCE = False
    built = build_model(cfg).eval()
    assert not (built.fast_inference or built.cache_tokens or built.fused_attention)
    assert not any(m.use_sdpa for m in built.modules() if hasattr(m, "use_sdpa"))


def test_sdpa_attention_matches_plain():
    torch.manual_seed(0)
    attn = Attention(32, 4).eval()
    q, k, v = torch.randn(3, 7, 32), torch.randn(3, 11, 32), torch.randn(3, 11, 32)
    plain = attn(q, k, v)
    fused_attn = Attention(32, 4, fused=True).eval()
    fused_attn.load_state_dict(attn.state_dict())
    assert fused_attn.use_sdpa and not fused_attn.train().use_sdpa
    fused = fused_attn.eval()(q, k, v)
    torch.testing.assert_close(fused, plain, rtol=0, atol=1e-5)


def test_token_cache_gives_the_same_logits():
    torch.manual_seed(0)
    module = SequentialRankingModule(embed_dim=32, num_heads=4, hidden_dim=64, num_blocks=2).eval()
    q, qpe = torch.randn(2, 6, 32), torch.randn(2, 6, 32)
    z, zpe = torch.randn(2, 9, 32), torch.randn(2, 9, 32)
    q_vis = torch.tensor([[0, 1, 0, 2, 0, 0], [0, 0, 0, 0, 1, 0]], dtype=torch.float32)[..., None]
    plain = module(q, z, qpe, zpe, q_vis)
    cached = module(q, z, qpe, zpe, q_vis, token_cache=module.token_cache(z, zpe))
    torch.testing.assert_close(cached, plain, rtol=0, atol=0)
