"""SeqRank model components; importing this package registers them with detectron2."""

from . import backbone, fovea, neck, position_encoding, ranking  # noqa: F401
from .meta_arch import SeqRank
from .registry import (
    GAZE_SHIFT,
    NECK_HEAD,
    POSITION_ENCODING,
    SALIENCY_INSTANCE_SEG,
    build_gaze_shift,
    build_instance_seg,
    build_neck,
    build_position_encoding,
)

__all__ = [
    "GAZE_SHIFT",
    "NECK_HEAD",
    "POSITION_ENCODING",
    "SALIENCY_INSTANCE_SEG",
    "SeqRank",
    "build_gaze_shift",
    "build_instance_seg",
    "build_neck",
    "build_position_encoding",
]
