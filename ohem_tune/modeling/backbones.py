"""Conv trunks: paper-scale VGG16 / VGG_CNN_M_1024 / ResNet-50 C4, and small CPU trunks.

Each builder returns a `Trunk`: the conv module, its output channels and stride, and the
parameter-name prefixes frozen by default (conv1-2 for VGG16, conv1 for VGG_CNN_M_1024 as in
Fast R-CNN's prototxts, stem + res2 for ResNet-50 as in detectron2).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn as nn

from ohem_tune.errors import ConfigError


@dataclass
class Trunk:
    """A conv trunk and what the RoI head needs to know about it."""

    body: nn.Module
    out_channels: int
    stride: int
    # Freezable stages in order (module names inside body); freeze_at=k freezes the first k.
    stages: list[list[str]]
    default_freeze_at: int


_BUILDERS: dict[str, Callable[[], Trunk]] = {}


def _register(name: str) -> Callable[[Callable[[], Trunk]], Callable[[], Trunk]]:
    def wrap(fn: Callable[[], Trunk]) -> Callable[[], Trunk]:
        _BUILDERS[name] = fn
        return fn

    return wrap


def build_trunk(name: str, freeze_at: int | None = None) -> Trunk:
    """Build the named trunk and freeze its first `freeze_at` stages (None: trunk default)."""
    if name not in _BUILDERS:
        choices = ", ".join(sorted(_BUILDERS))
        raise ConfigError(f"model.backbone: unknown trunk '{name}'; choose from {choices}")
    trunk = _BUILDERS[name]()
    freeze = trunk.default_freeze_at if freeze_at is None else freeze_at
    if freeze > len(trunk.stages):
        raise ConfigError(
            f"model.freeze_at: bad value {freeze}: '{name}' has {len(trunk.stages)} stages"
        )
    modules = dict(trunk.body.named_modules())
    for stage in trunk.stages[:freeze]:
        for module_name in stage:
            for p in modules[module_name].parameters():
                p.requires_grad_(False)
    return trunk


class LocalResponseNorm32(nn.LocalResponseNorm):
    """LocalResponseNorm computed in fp32 under autocast: its sum of squares overflows fp16
    (activations of a few hundred square to more than fp16's 65504). Output is fp32."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        with torch.autocast(input.device.type, enabled=False):
            return super().forward(input.float())


def _conv_bn(cin: int, cout: int, k: int = 3, stride: int = 1) -> list[nn.Module]:
    return [
        nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    ]


@_register("vgg16")
def vgg16() -> Trunk:
    """torchvision VGG16 `features` up to relu5_3 (stride 16, 512 channels); conv1-2 frozen.

    Its four max pools round up, as Caffe's pooling in Fast R-CNN's VGG16 prototxt does (a
    600 x 1000 image gives a 38 x 63 map, not torchvision's 37 x 62); same weights either way.
    """
    from torchvision.models import vgg16 as tv_vgg16

    body = tv_vgg16(weights=None).features[:30]
    for layer in body:
        if isinstance(layer, nn.MaxPool2d):
            layer.ceil_mode = True
    # Stage = conv block; indices of torchvision's VGG16 feature layers (pool layers dropped at 30).
    blocks = [[0, 2], [5, 7], [10, 12, 14], [17, 19, 21], [24, 26, 28]]
    return Trunk(body, 512, 16, [[str(i) for i in b] for b in blocks], default_freeze_at=2)


@_register("vgg_cnn_m_1024")
def vgg_cnn_m_1024() -> Trunk:
    """VGG_CNN_M_1024 (Chatfield et al. 2014) as in Fast R-CNN: 5 convs, LRN, stride 16."""
    body = nn.Sequential(
        nn.Conv2d(3, 96, 7, stride=2),
        nn.ReLU(inplace=True),
        LocalResponseNorm32(5, alpha=0.0005, beta=0.75, k=2.0),
        nn.MaxPool2d(3, 2, ceil_mode=True),
        nn.Conv2d(96, 256, 5, stride=2, padding=1),
        nn.ReLU(inplace=True),
        LocalResponseNorm32(5, alpha=0.0005, beta=0.75, k=2.0),
        nn.MaxPool2d(3, 2, ceil_mode=True),
        nn.Conv2d(256, 512, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(512, 512, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(512, 512, 3, padding=1),
        nn.ReLU(inplace=True),
    )
    return Trunk(body, 512, 16, [["0"], ["4"], ["8"], ["10"], ["12"]], default_freeze_at=1)


@_register("resnet50")
def resnet50() -> Trunk:
    """torchvision ResNet-50 up to res4 (C4, stride 16, 1024 ch), frozen BN; stem+res2 frozen."""
    from torchvision.models import resnet50 as tv_resnet50
    from torchvision.ops import FrozenBatchNorm2d

    net = tv_resnet50(weights=None, norm_layer=FrozenBatchNorm2d)
    body = nn.Sequential()
    for name in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3"):
        body.add_module(name, getattr(net, name))
    stages = [["conv1", "bn1"], ["layer1"], ["layer2"], ["layer3"]]
    return Trunk(body, 1024, 16, stages, default_freeze_at=2)


@_register("small_vggm")
def small_vggm() -> Trunk:
    """CPU-scale VGGM analogue: 5 conv+BN layers, stride 8, ~0.89M params, trains from scratch."""
    widths = [(3, 32, 5, 2), (32, 64, 3, 2), (64, 160, 3, 2), (160, 224, 3, 1), (224, 224, 3, 1)]
    layers: list[nn.Module] = []
    for cin, cout, k, s in widths:
        layers += _conv_bn(cin, cout, k, s)
    body = nn.Sequential(*layers)
    return Trunk(body, 224, 8, [[str(3 * i)] for i in range(5)], default_freeze_at=0)


@_register("small_vgg16")
def small_vgg16() -> Trunk:
    """CPU-scale VGG16 analogue: 9 3x3 conv+BN layers in 4 blocks, stride 8, ~0.93M params."""
    blocks = [[32, 32], [64, 64], [128, 128], [160, 160, 160]]
    layers: list[nn.Module] = []
    stages: list[list[str]] = []
    cin = 3
    for b, widths in enumerate(blocks):
        stage = []
        for cout in widths:
            stage.append(str(len(layers)))
            layers += _conv_bn(cin, cout)
            cin = cout
        stages.append(stage)
        if b < 3:
            layers.append(nn.MaxPool2d(2, 2, ceil_mode=True))
    return Trunk(nn.Sequential(*layers), cin, 8, stages, default_freeze_at=0)


@_register("tiny")
def tiny() -> Trunk:
    """A ~4k-parameter stride-8 trunk for unit tests."""
    layers = _conv_bn(3, 8, 3, 2) + _conv_bn(8, 16, 3, 2) + _conv_bn(16, 16, 3, 2)
    return Trunk(nn.Sequential(*layers), 16, 8, [["0"], ["3"], ["6"]], default_freeze_at=0)


TRUNK_NAMES = tuple(_BUILDERS)
