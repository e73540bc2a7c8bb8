"""Registries of SeqRank's swappable components (names as in the original code).

Backbones use detectron2's ``BACKBONE_REGISTRY`` and the meta-architecture detectron2's
``META_ARCH_REGISTRY``; the heads, necks and positional encodings have their own registries here.
"""

from detectron2.utils.registry import Registry

NECK_HEAD = Registry("NECK_HEAD")
NECK_HEAD.__doc__ = """
Feature-pyramid necks. Called as ``NECK_HEAD.get(name)(cfg)``; the module maps the backbone's
``{"res2": B x C2 x H2 x W2, ..., "res5": ...}`` to the same keys and sizes with
``MODEL.COMMON.EMBED_DIM`` channels.
"""

SALIENCY_INSTANCE_SEG = Registry("SALIENCY_INSTANCE_SEG")
SALIENCY_INSTANCE_SEG.__doc__ = """
Foveal (salient instance segmentation) heads. Called as ``SALIENCY_INSTANCE_SEG.get(name)(cfg)``;
``forward(feats, feats_pe)`` returns ``(q, qpe, out, aux)`` with ``q, qpe: B x Q x C`` and
``out = {"masks": B x Q x H2 x W2, "scores": B x Q x 1, "bboxes": B x Q x 4}`` (logits).
"""

GAZE_SHIFT = Registry("GAZE_SHIFT")
GAZE_SHIFT.__doc__ = """
Peripheral (sequential ranking) modules. Called as ``GAZE_SHIFT.get(name)(cfg)``;
``forward(q, z, qpe, zpe, q_vis)`` returns saliency logits ``B x Q x 1`` (eval) or
``(logits, aux_list)`` (training), with ``z, zpe: B x HW x C`` and ``q_vis: B x Q x 1`` ranks.
"""

POSITION_ENCODING = Registry("POSITION_ENCODING")
POSITION_ENCODING.__doc__ = """
Positional encodings selected by ``MODEL.PE`` ("APE", "SINE", "RANDOM"). Called as
``POSITION_ENCODING.get(name)(cfg)``; ``forward(x: B x C x H x W)`` returns ``B x C x H x W``.
"""


def build_neck(cfg):
    return NECK_HEAD.get(cfg.MODEL.NECK.NAME)(cfg)


def build_instance_seg(cfg):
    return SALIENCY_INSTANCE_SEG.get(cfg.MODEL.SIS_HEAD.NAME)(cfg)


def build_gaze_shift(cfg):
    return GAZE_SHIFT.get(cfg.MODEL.GAZE_SHIFT_HEAD.NAME)(cfg)


def build_position_encoding(cfg):
    return POSITION_ENCODING.get(cfg.MODEL.PE)(cfg)
