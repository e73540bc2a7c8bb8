"""SeqRankCriterion: built from the config, injected into SeqRank, stateless."""

import torch

import seqrank  # noqa: F401
from seqrank.modeling.criterion import SeqRankCriterion
from tests.helpers import parity_arch, parity_cfg


def test_criterion_is_built_from_the_loss_config_and_injected():
    cfg = parity_cfg()
    criterion = SeqRankCriterion(cfg)
    assert criterion.weights == {
        "mask_ce": cfg.LOSS.MASK_CE_COST,
        "mask_dice": cfg.LOSS.MASK_DICE_COST,
        "bbox_l1": cfg.LOSS.BBOX_L1_COST,
        "bbox_giou": cfg.LOSS.BBOX_GIOU_COST,
        "obj_pos": cfg.LOSS.OBJ_POS,
        "obj_neg": cfg.LOSS.OBJ_NEG,
        "cls": cfg.LOSS.CLS_COST,
        "sal": cfg.LOSS.SAL_COST,
        "aux": cfg.LOSS.AUX_WEIGHT,
    }
    assert criterion.num_points == cfg.LOSS.NUM_POINTS
    assert criterion.aux_enabled == (cfg.LOSS.AUX != "disable")
    model = parity_arch()
    assert isinstance(model.criterion, SeqRankCriterion)
    # Stateless: the checkpoint keys stay those of the original model.
    assert not model.criterion.state_dict()
    assert not any(key.startswith("criterion.") for key in model.state_dict())


def test_sequence_loss_asks_for_each_object_then_for_the_stop():
    """Step i gives the first i objects as ranked and asks for object i + 1; step K asks for
    nothing (every query negative)."""
    seen = []

    def gaze_shift(q, z, qpe, zpe, q_vis):
        seen.append(q_vis[0, :, 0].tolist())
        return torch.zeros(q.shape[0], q.shape[1], 1), []

    q = torch.zeros(1, 4, 2)
    q_corr = torch.tensor([[[0.0], [2.0], [1.0], [0.0]]])
    loss = SeqRankCriterion.sequence_loss(gaze_shift, q, q, q, q, q_corr, n_max=2)
    assert seen == [[0, 0, 0, 0], [0, 0, 1, 0], [0, 2, 1, 0]]
    # logits 0: BCE is log(2) for every query and step
    assert torch.isclose(loss, torch.tensor(3 * torch.log(torch.tensor(2.0)).item()))
