"""Pins for the documented differences from (and equalities with) the original that no parity
bundle exercises; docs/FIDELITY.md names each test."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import masks_to_boxes

import seqrank  # noqa: F401
from seqrank.engine import build_seqrank_optimizer
from seqrank.engine.setup import fit_to_machine
from seqrank.modeling import position_encoding
from seqrank.modeling.box_ops import masks_to_unit_boxes
from seqrank.modeling.point_sampling import draw_points, sample_logits
from seqrank.utils.visualize import overlay_label, render_overlay
from tests.conftest import PARITY
from tests.helpers import parity_model, seqrank_cfg


@pytest.fixture(scope="module", name="parity")
def parity_fixture():
    return parity_model()


def test_sample_logits_equals_upsample_then_index():
    """#11: the matcher's points take the values of the original's full-size upsampling."""
    torch.manual_seed(0)
    logits = torch.randn(3, 7, 9)
    rows, cols = draw_points(40, 50, 500, "cpu")
    full = F.interpolate(logits[None], size=(40, 50), mode="bilinear", align_corners=False)[0]
    torch.testing.assert_close(sample_logits(logits, rows, cols, (40, 50)), full[:, rows, cols])


def test_points_come_from_the_global_torch_rng():
    """#10: rows then columns, uniform with replacement, from the global RNG."""
    torch.manual_seed(5)
    rows, cols = draw_points(30, 20, 100, "cpu")
    torch.manual_seed(5)
    assert torch.equal(rows, torch.randint(30, (100,))) and torch.equal(
        cols, torch.randint(20, (100,))
    )
    rows, cols = draw_points(3, 4, 100, "cpu")  # few pixels: all of them, no RNG draw
    assert (
        rows.tolist() == [r for r in range(3) for _ in range(4)]
        and cols.tolist() == [0, 1, 2, 3] * 3
    )


def test_gt_boxes_equal_torchvision_including_empty_masks():
    """#8: masks_to_boxes / size, as the original; torchvision gives an empty mask a zero box."""
    masks = torch.zeros(3, 12, 16)
    masks[0, 2:5, 3:9] = 1
    masks[2, 11, 15] = 1
    expected = masks_to_boxes(masks) / torch.tensor([16.0, 12.0, 16.0, 12.0])
    torch.testing.assert_close(masks_to_unit_boxes(masks), expected.clamp(0, 1))
    assert masks_to_unit_boxes(masks)[1].tolist() == [0.0, 0.0, 0.0, 0.0]


def _tiny_optimizer(**clip):
    cfg = seqrank_cfg()
    for key, value in clip.items():
        setattr(cfg.SOLVER.CLIP_GRADIENTS, key, value)
    model = nn.Linear(3, 2)
    return build_seqrank_optimizer(cfg, model), model, cfg


def test_clip_norm_type_is_honoured():
    """SOLVER.CLIP_GRADIENTS.NORM_TYPE is passed to clip_grad_norm_ (the original always used L2;
    every shipped config says 2.0, where both agree)."""
    opt, model, _ = _tiny_optimizer(
        ENABLED=True, CLIP_TYPE="full_model", CLIP_VALUE=0.5, NORM_TYPE=float("inf")
    )
    for p in model.parameters():
        p.grad = torch.full_like(p, 3.0)
    opt.step()
    assert max(p.grad.abs().max() for p in model.parameters()) == pytest.approx(0.5, rel=1e-4)


def test_other_clip_types_fail_only_when_clipping():
    """#21: the original crashed for any CLIP_TYPE other than full_model, even with clipping off."""
    with pytest.raises(ValueError, match="CLIP_TYPE 'value' is not supported"):
        _tiny_optimizer(ENABLED=True, CLIP_TYPE="value")
    opt, model, _ = _tiny_optimizer(ENABLED=False, CLIP_TYPE="value")
    assert isinstance(opt, torch.optim.AdamW)
    assert opt.clip is None
    for p in model.parameters():
        p.grad = torch.full_like(p, 3.0)
    opt.step()
    assert min(p.grad.abs().min() for p in model.parameters()) == 3.0


def test_test_time_augmentation_is_ignored_with_a_note():
    """#21: TEST.AUG.ENABLED made the original call a missing method."""
    cfg = seqrank_cfg()
    cfg.MODEL.DEVICE = "cpu"
    cfg.TEST.AUG.ENABLED = True
    assert any("TEST.AUG.ENABLED" in note for note in fit_to_machine(cfg))


def test_mask_and_box_logits_are_fp32_before_point_sampling(parity):
    """Under AMP the losses sample fp32 copies of the half-precision logits (the original sampled
    the half-precision logits)."""
    _, model = parity
    torch.manual_seed(0)
    pred = {"masks": torch.randn(1, 4, 9, 9).bfloat16(), "bboxes": torch.randn(1, 4, 4).bfloat16()}
    gt = [(torch.rand(2, 40, 40) > 0.5).float()]
    boxes = [masks_to_unit_boxes(gt[0])]
    idx = (torch.tensor([0, 0]), torch.tensor([1, 3]), torch.tensor([0, 1]))
    as_fp32 = {k: v.float() for k, v in pred.items()}
    got = model.criterion.pair_losses(pred, gt, boxes, idx, (40, 40))
    ref = model.criterion.pair_losses(as_fp32, gt, boxes, idx, (40, 40))
    assert got[0].dtype == torch.float32
    assert [float(x) for x in got] == [float(x) for x in ref]
    rows, cols = draw_points(40, 40, 1600, "cpu")
    half = sample_logits(pred["masks"][0], rows, cols, (40, 40)).float()
    assert not torch.equal(half, sample_logits(as_fp32["masks"][0], rows, cols, (40, 40)))


def test_training_step_writes_no_debug_dump_and_keeps_numpy_rng(parity, tmp_path, monkeypatch):
    """#9: no OUTPUT_DIR/debug/latest.png and no NumPy RNG draw per training step."""
    _, model = parity
    monkeypatch.chdir(tmp_path)
    batch = torch.load(PARITY / "train_batch.pth", weights_only=True)[:1]
    np.random.seed(3)
    state = np.random.get_state()[1].copy()
    model.train()
    with torch.no_grad():
        model(batch)
    model.eval()
    assert np.array_equal(np.random.get_state()[1], state)
    assert list(tmp_path.iterdir()) == []


def test_only_the_selected_positional_encoding_is_constructed(monkeypatch):
    """#14: the original built all three encodings (consuming RNG); only MODEL.PE is built."""
    built = []
    for name in ("LearnablePE", "PositionEmbeddingSine", "PositionEmbeddingRandom"):
        cls = getattr(position_encoding, name)
        original_init = cls.__init__

        def recording_init(self, *args, _init=original_init, _name=name, **kwargs):
            built.append(_name)
            _init(self, *args, **kwargs)

        monkeypatch.setattr(cls, "__init__", recording_init)
    _, model = parity_model()
    assert built == ["LearnablePE"]


def test_overlay_labels_as_the_original_colours_deterministic():
    """Demo overlays: labels "<rank> <score>%" as the original's Visualizer; the original drew
    random instance colours, ours come from detectron2's fixed palette."""
    image = np.full((20, 30, 3), 90, np.uint8)
    mask = np.zeros((20, 30), np.float32)
    mask[4:15, 5:20] = 1
    result = {"masks": [mask], "scores": [0.904], "bboxes": [[5, 4, 20, 15]], "saliency": [0.5]}
    assert overlay_label(1, 0.904) == "1 90%"
    first = render_overlay(image, result)
    assert np.array_equal(first, render_overlay(image, result)) and not np.array_equal(first, image)
