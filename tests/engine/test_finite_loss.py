"""The trainer's non-finite-loss check and the matcher on the NaN logits of a diverged model."""

import pytest
import torch
from detectron2.utils.events import EventStorage

from seqrank.engine import SeqRankSimpleTrainer, check_losses_finite
from seqrank.modeling.matcher import match_image


def test_finite_losses_pass():
    check_losses_finite({"a": torch.tensor(1.5), "b": torch.tensor(0.0)}, 3)


def test_message_names_the_iteration_and_only_the_bad_terms():
    losses = {
        "mask_loss": torch.tensor(float("nan")),
        "bbox_loss": torch.tensor(2.0),
        "obj_loss": torch.tensor(float("inf")),
        "sal_loss": torch.tensor(-float("inf")),
    }
    with pytest.raises(FloatingPointError) as info:
        check_losses_finite(losses, 17)
    message = str(info.value)
    assert "\\n" not in message
    assert message.startswith(
        "the loss is not finite at iteration 17: mask_loss=nan, obj_loss=inf, sal_loss=-inf ("
    )
    assert "bbox_loss" not in message


class _NaNAfter(torch.nn.Module):
    """A model whose loss becomes NaN at iteration ``bad``."""

    def __init__(self, bad):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(1))
        self.bad = bad
        self.calls = 0

    def forward(self, batch):
        value = self.weight * (float("nan") if self.calls == self.bad else 1.0)
        self.calls += 1
        return {"good_loss": self.weight * 2.0, "bad_loss": value.sum()}


def test_training_loop_stops_before_the_optimizer_step():
    model = _NaNAfter(bad=2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    trainer = SeqRankSimpleTrainer(model, iter([None] * 10), optimizer)
    with EventStorage(0) as storage, pytest.raises(FloatingPointError, match="iteration 2: bad_l"):
        for trainer.iter in range(5):
            storage.iter = trainer.iter
            trainer.run_step()
    # Two steps of lr 0.1 on the gradient 3 happened; the third (NaN) one did not.
    assert model.weight.item() == pytest.approx(1.0 - 2 * 0.3)


def test_matcher_survives_nan_logits():
    pred_masks = torch.full((4, 6, 6), float("nan"))
    pred_masks[1] = 5.0
    scores = torch.tensor([[float("nan")], [0.0], [float("inf")], [-float("inf")]])
    gt = torch.zeros(2, 12, 12)
    gt[0, :6] = 1
    gt[1, 6:] = 1
    queries, targets = match_image(pred_masks, scores, gt, 1000, 5.0, 5.0)
    assert len(queries) == len(targets) == 2
    assert sorted(targets.tolist()) == [0, 1] and len(set(queries.tolist())) == 2
    assert 1 in queries.tolist()  # the one query with finite costs
