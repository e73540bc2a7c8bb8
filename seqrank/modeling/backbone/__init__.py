"""Backbones in detectron2's ``BACKBONE_REGISTRY`` (importing this package registers them)."""

from .resnet import (
    ResNet152,
    ResNeXt50,
    ResNeXt101,
    TorchvisionResNet,
    convert_torchvision_resnet_state_dict,
)
from .swin import D2SwinTransformer, SwinTransformer

__all__ = [
    "D2SwinTransformer",
    "SwinTransformer",
    "TorchvisionResNet",
    "ResNeXt50",
    "ResNeXt101",
    "ResNet152",
    "convert_torchvision_resnet_state_dict",
]
