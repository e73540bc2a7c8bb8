"""Config keys, shipped YAMLs, released config dumps and the official state-dict manifest."""

import json
import logging

import pytest
import torch
from detectron2.config import get_cfg
from detectron2.modeling import META_ARCH_REGISTRY

import seqrank  # noqa: F401
from seqrank.cli import ConfigError
from seqrank.config import LEGACY_KEYS, add_seqrank_config
from seqrank.engine import build_cfg, fit_to_machine
from tests.conftest import REPO, SHARED

OFFICIAL = SHARED / "reference" / "official_configs"
RELEASED_DUMPS = sorted(OFFICIAL.glob("*_config.yaml"))
ALL_CONFIGS = sorted(REPO.glob("configs/*.yaml")) + RELEASED_DUMPS


def build_on_meta(cfg):
    """The model without allocating weights (only shapes, dtypes and key order are checked)."""
    cfg = cfg.clone()
    cfg.defrost()
    cfg.MODEL.DEVICE = "meta"
    with torch.device("meta"):
        return META_ARCH_REGISTRY.get(cfg.MODEL.META_ARCHITECTURE)(cfg)


def test_defaults_match_original_and_keep_detectron2_keys():
    cfg = get_cfg()
    add_seqrank_config(cfg, num_gpus=3)
    assert cfg.MODEL.BACKBONE.FREEZE_AT == 2
    assert cfg.TEST.AUG.FLIP is True and cfg.TEST.AUG.ENABLED is False
    assert cfg.MODEL.BACKBONE.NAME == "ResNeXt50"
    assert cfg.MODEL.NECK.NAME == "FPN"
    assert cfg.MODEL.GAZE_SHIFT_HEAD.NUM_BLOCKS == 2
    assert cfg.MODEL.SWIN.DROP_PATH_RATE == 0.3 and cfg.MODEL.SWIN.QK_SCALE is None
    assert cfg.LOSS.AUX_WEIGHT == 0.4 and cfg.LOSS.NUM_POINTS == 12544
    assert cfg.DATASETS.ROOT == "assets" and cfg.SOLVER.BACKBONE_MULTIPLIER == 0.1
    assert cfg.SOLVER.IMS_PER_GPU == 32 and cfg.SOLVER.NUM_GPUS == 3
    assert cfg.TEST.METRICS_OF_INTEREST == ["mae"] and cfg.TEST.THRESHOLD == 0.5
    assert cfg.INPUT.FT_SIZE_TRAIN == cfg.INPUT.FT_SIZE_TEST == 800
    assert cfg.MODEL.SEQRANK.EXCLUDE_RANKED is False


def test_shipped_yaml_values():
    swin = build_cfg(str(REPO / "configs/swinL.yaml"))
    correct = build_cfg(str(REPO / "configs/swinL_correct.yaml"))
    r50 = build_cfg(str(REPO / "configs/R50.yaml"))
    assert r50.MODEL.NECK.NAME == "FrcPN" and r50.MODEL.BACKBONE.NAME == "ResNeXt50"
    assert swin.MODEL.NECK.NAME == "FrcPN" and swin.MODEL.GAZE_SHIFT_HEAD.NUM_BLOCKS == 6
    assert correct.MODEL.NECK.NAME == "FPN" and correct.MODEL.GAZE_SHIFT_HEAD.NUM_BLOCKS == 2
    assert swin.MODEL.SWIN.DEPTHS == [2, 2, 18, 2] and swin.MODEL.SWIN.WINDOW_SIZE == 12
    assert swin.MODEL.WEIGHTS.endswith("swin_large_patch4_window12_384_22k.pth")
    assert swin.DATASETS.ROOT == "assets/datasets"
    assert swin.SOLVER.IMS_PER_BATCH == 8  # IMS_PER_GPU x --num-gpus(1); the YAML's 32 is ignored


@pytest.mark.parametrize("name", ["R50.yaml", "swinL.yaml", "swinL_correct.yaml"])
def test_configs_equal_the_original_files(tmp_path, name):
    for orig in ("R50.yaml", "swinL.yaml", "swinL_correct.yaml"):
        (tmp_path / orig).write_text((OFFICIAL / f"original_configs_{orig}").read_text())
    ours = build_cfg(str(REPO / "configs" / name))
    original = build_cfg(str(tmp_path / name))
    assert ours.dump() == original.dump()


def test_r101_is_r50_with_the_resnext101_backbone():
    """configs/R101.yaml as in the original: ``_BASE_: R50.yaml`` with backbone ResNeXt101."""
    r50 = build_cfg(str(REPO / "configs/R50.yaml"))
    r101 = build_cfg(str(REPO / "configs/R101.yaml"))
    assert r101.MODEL.BACKBONE.NAME == "ResNeXt101"
    r101.MODEL.BACKBONE.NAME = r50.MODEL.BACKBONE.NAME
    assert r101.dump() == r50.dump()


def test_fast_inference_is_a_config_key():
    assert build_cfg().MODEL.SEQRANK.FAST_INFERENCE is True
    cfg = build_cfg(None, ["MODEL.SEQRANK.FAST_INFERENCE", "False"])
    assert cfg.MODEL.SEQRANK.FAST_INFERENCE is False


def test_batch_size_is_ims_per_gpu_times_num_gpus():
    cfg = build_cfg(str(REPO / "configs/swinL.yaml"), ["SOLVER.IMS_PER_GPU", "4"], num_gpus=4)
    assert cfg.SOLVER.IMS_PER_BATCH == 16 and cfg.SOLVER.NUM_GPUS == 4


def test_released_dump_unknown_keys_warn_once(caplog):
    with caplog.at_level(logging.WARNING):
        cfg = build_cfg(str(OFFICIAL / "assr_swinL_correct_config.yaml"))
    warnings = [r for r in caplog.records if "unknown to SeqRank" in r.getMessage()]
    assert len(warnings) == 1 and "SOLVER.ITERS_PER_STEP" in warnings[0].getMessage()
    assert cfg.MODEL.NECK.NAME == "FPN"


@pytest.mark.parametrize("path", ALL_CONFIGS, ids=lambda p: p.name)
def test_every_config_loads_and_builds(path):
    cfg = build_cfg(str(path))
    model = build_on_meta(cfg)
    assert sum(p.numel() for p in model.parameters()) > 0


@pytest.mark.parametrize("name", ["swinL.yaml", "swinL_correct.yaml"])
def test_state_dict_matches_official_manifest(name):
    manifest = json.loads((SHARED / "reference/official_state_dict_manifest.json").read_text())[
        name
    ]
    model = build_on_meta(build_cfg(str(REPO / "configs" / name)))
    got = [
        [k, list(v.shape), str(v.dtype).replace("torch.", "")]
        for k, v in model.state_dict().items()
    ]
    assert got == manifest["state_dict"]
    assert sum(p.numel() for p in model.parameters()) == manifest["num_parameters"]
    for module, count in manifest["per_module_parameters"].items():
        assert sum(p.numel() for p in getattr(model, module).parameters()) == count, module


def test_unknown_key_in_a_config_file_is_a_one_line_error(tmp_path):
    path = tmp_path / "typo.yaml"
    path.write_text("MODEL:\n  SEQRANK:\n    FAST_INFERNCE: false\n")
    with pytest.raises(ConfigError) as info:
        build_cfg(str(path))
    message = str(info.value)
    assert str(path) in message and "MODEL.SEQRANK.FAST_INFERNCE" in message
    assert "\n" not in message


def test_legacy_keys_are_ignored_only_when_listed(tmp_path, caplog):
    assert set(LEGACY_KEYS) == {"GLOBAL.HACK", "SOLVER.ITERS_PER_STEP", "SOLVER.TIMEOUT"}
    path = tmp_path / "legacy.yaml"
    path.write_text("SOLVER:\n  ITERS_PER_STEP: 2\n  TIMEOUT: 5\n")
    with caplog.at_level(logging.WARNING):
        build_cfg(str(path))
    assert ["SOLVER.ITERS_PER_STEP, SOLVER.TIMEOUT" in r.getMessage() for r in caplog.records] == [
        True
    ]


def test_default_device_does_not_depend_on_the_machine(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    cfg = build_cfg()
    assert cfg.MODEL.DEVICE == "cuda"
    fit_to_machine(cfg)
    assert cfg.MODEL.DEVICE == "cpu"
