"""SeqRank meta-architecture: training losses against the original and inference behaviour."""

import json

import pytest
import torch

import seqrank  # noqa: F401
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
    image = torch.rand(3, 200, 200) * 255
    (res,) = model([{"image": image, "height": 90, "width": 120}])
    assert res["image_name"] == 0
    assert res["num"] == len(res["masks"]) == len(res["bboxes"]) == len(res["scores"])
    for mask in res["masks"]:
        assert mask.shape == (90, 120)
    assert all(0.001 <= s <= 1 for s in res["scores"] + res["saliency"])


def test_exclude_ranked_flag_never_repeats_queries():
    _, model = parity_model("MODEL.SEQRANK.EXCLUDE_RANKED", "True")
    model.eval()
    image = torch.rand(3, 200, 200) * 255
    (res,) = model([{"image": image, "height": 50, "width": 50}])
    boxes = [tuple(round(v, 4) for v in b) for b in res["bboxes"]]
    assert len(set(boxes)) == len(boxes)
