"""torchvision ResNe(X)t backbones ("ResNeXt50", "ResNeXt101", "ResNet152"); see
docs/ARCHITECTURE.md, "Backbones".

The original downloads ImageNet weights while building the model. Here the torchvision model is
always built with ``weights=None``; ImageNet weights arrive through ``MODEL.WEIGHTS`` after
:func:`convert_torchvision_resnet_state_dict` (``python -m scripts.convert_backbone --arch
resnet``) has put them into this module's key layout.

Shapes: B = batch, H x W = input image size; res{i} has stride 2^i.
"""

from collections import OrderedDict

import torchvision
from detectron2.modeling import BACKBONE_REGISTRY, Backbone, ShapeSpec
from torch import nn

from ...cli import ConfigError

__all__ = [
    "TorchvisionResNet",
    "ResNeXt50",
    "ResNeXt101",
    "ResNet152",
    "convert_torchvision_resnet_state_dict",
]

_STAGES = ("res2", "res3", "res4", "res5")
_CHANNELS = (256, 512, 1024, 2048)
_STRIDES = (4, 8, 16, 32)


class TorchvisionResNet(Backbone):
    """``layer0`` = Sequential(conv1, bn1, relu, maxpool); ``layer1..4`` give res2..res5.

    BatchNorm is not frozen: it follows the module's train / eval mode.
    """

    arch = None

    def __init__(self, cfg, input_shape=None):
        super().__init__()
        net = getattr(torchvision.models, self.arch)(weights=None)
        self.layer0 = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        self.layer1 = net.layer1
        self.layer2 = net.layer2
        self.layer3 = net.layer3
        self.layer4 = net.layer4
        self._out_features = list(cfg.MODEL.BACKBONE.FEATURE_KEYS)
        unknown = set(self._out_features) - set(_STAGES)
        if unknown:
            raise ConfigError(f"Unknown MODEL.BACKBONE.FEATURE_KEYS {sorted(unknown)}")

    def forward(self, x):
        """x: B x 3 x H x W -> {"res{i}": B x C_i x H/2^i x W/2^i} for the configured keys."""
        x = self.layer0(x)
        outs = {}
        for name, layer in zip(_STAGES, (self.layer1, self.layer2, self.layer3, self.layer4)):
            x = layer(x)
            outs[name] = x
        return {k: v for k, v in outs.items() if k in self._out_features}

    def output_shape(self):
        specs = {
            n: ShapeSpec(channels=c, stride=s) for n, c, s in zip(_STAGES, _CHANNELS, _STRIDES)
        }
        return {name: specs[name] for name in self._out_features}

    @property
    def size_divisibility(self):
        return 32


@BACKBONE_REGISTRY.register()
class ResNeXt50(TorchvisionResNet):
    arch = "resnext50_32x4d"


@BACKBONE_REGISTRY.register()
class ResNeXt101(TorchvisionResNet):
    arch = "resnext101_32x8d"


@BACKBONE_REGISTRY.register()
class ResNet152(TorchvisionResNet):
    arch = "resnet152"


_STEM_RENAMES = {"conv1.": "layer0.0.", "bn1.": "layer0.1."}
_DROPPED_PREFIXES = ("fc.",)


def convert_torchvision_resnet_state_dict(state_dict, prefix="backbone."):
    """Map a torchvision ResNet/ResNeXt ImageNet state dict onto this backbone's key layout.

    ``conv1.*`` -> ``layer0.0.*``, ``bn1.*`` -> ``layer0.1.*``, ``layer{1-4}.*`` unchanged, the
    classifier ``fc.*`` dropped; ``prefix`` is prepended to every kept key.
    Returns ``(converted OrderedDict, list of dropped keys)``.
    """
    converted, dropped = OrderedDict(), []
    for key, value in state_dict.items():
        if key.startswith(_DROPPED_PREFIXES):
            dropped.append(key)
            continue
        for old, new in _STEM_RENAMES.items():
            if key.startswith(old):
                key = new + key[len(old) :]
                break
        converted[prefix + key] = value
    return converted, dropped
