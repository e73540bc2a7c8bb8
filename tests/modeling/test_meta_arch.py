"""SeqRank meta-architecture: training losses against the original and inference behaviour."""

import json

import numpy as np
import pytest
import torch

import seqrank  # noqa: F401
from seqrank.data.datasets import load_sor_json
from seqrank.data.mapper import SORDatasetMapper
from seqrank.modeling.box_ops import xyhw_to_xyxy
from tests.conftest import PARITY
from tests.helpers import parity_model


@pytest.fixture(scope="module", name="parity_model")
def parity_model_fixture():
    return parity_model()


def test_train_losses_match_original(parity_model):
    _, model = parity_model
    batch = torch.load(PARITY / "train_batch.pth", weights_only=True)
    expected = json.loads((PARITY / "expected" / "train_losses.json").read_text())
    model.train()
    with torch.no_grad():
        losses = model(batch)
    assert set(losses) == set(expected)
    for key, value in expected.items():
        assert float(losses[key]) == pytest.approx(value, rel=1e-3, abs=1e-6), key


def test_training_without_salient_objects_does_not_crash(parity_model):
    _, model = parity_model
    batch = torch.load(PARITY / "train_batch.pth", weights_only=True)[:2]
    batch[0] = dict(batch[0], masks=torch.zeros(0, 192, 192), ranks=[])
    batch[1] = dict(batch[1], masks=torch.zeros(0, 192, 192), ranks=[])
    model.train()
    losses = model(batch)
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    model.zero_grad(set_to_none=True)


def test_inference_output_format(parity_model):
    _, model = parity_model
    model.eval()
    image = torch.rand(3, 200, 200, generator=torch.Generator().manual_seed(3)) * 255
    (res,) = model([{"image": image, "height": 90, "width": 120}])
    assert res["image_name"] == 0
    assert res["num"] == len(res["masks"]) == len(res["bboxes"]) == len(res["scores"])
    for mask in res["masks"]:
        assert mask.shape == (90, 120)
    assert all(0.001 <= s <= 1 for s in res["scores"] + res["saliency"])


def _parity_input(cfg, name):
    root = PARITY / "datasets" / "assr"
    records = load_sor_json(str(root / "assr_test.json"), str(root / "images" / "test"))
    (record,) = [r for r in records if r["image_name"] == name]
    return SORDatasetMapper(cfg, is_train=False)(record)


def _picked_queries(model, inputs, result):
    """Query index of each ranked object, found from its box (the queries' boxes all differ)."""
    with torch.no_grad():
        out = model.encode([inputs])[4]
    scale = torch.tensor([inputs["width"], inputs["height"]] * 2, dtype=torch.float32)
    boxes = (xyhw_to_xyxy(out["bboxes"][0].float().sigmoid()) * scale).numpy()
    assert len(np.unique(boxes.round(3), axis=0)) == len(boxes)
    picks = []
    for box in result["bboxes"]:
        distance = np.abs(boxes - np.asarray(box)).max(axis=1)
        assert distance.min() < 1e-3
        picks.append(int(distance.argmin()))
    return picks


def test_exclude_ranked_never_repeats_a_query_the_default_model_repeats():
    # On parity image 001 the original's loop (no exclusion) ranks 16 objects from 13 queries.
    cfg, model = parity_model()
    model.eval()
    inputs = _parity_input(cfg, "parity_fpn_001")
    (default,) = model([inputs])
    picks = _picked_queries(model, inputs, default)
    assert len(picks) == 16 and len(set(picks)) == 13

    model.exclude_ranked = True
    (excluded,) = model([inputs])
    picks = _picked_queries(model, inputs, excluded)
    assert sorted(picks) == list(range(16))
    # Up to the first repeat, both loops take the same queries.
    first_repeat = next(i for i, r in enumerate(default["bboxes"]) if r in default["bboxes"][:i])
    assert excluded["bboxes"][:first_repeat] == default["bboxes"][:first_repeat]
