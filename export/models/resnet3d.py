"""3D ResNet in the exact layout of Hara et al.'s 3D-ResNets-PyTorch (``models/resnet.py``).

Parameter names and shapes match the published ``resnet-18/34-kinetics.pth`` files, so they load
with ``strict=True`` (after :func:`edgevad_export.weights.hara.load_hara_checkpoint` strips the
``module.`` prefix). Two deliberate differences from the original, neither changing the output:

* The type-A shortcut pads the missing channels with ``F.pad`` instead of building a zero tensor
  and re-wrapping ``.data`` in a ``Variable``: that detaches the shortcut from the graph, so an
  ONNX trace bakes it in as a constant (wrong for any other input or batch size) and training
  gets no gradient through it.
* ``AdaptiveAvgPool3d(1)`` instead of a fixed ``AvgPool3d``: identical at 16x112x112, where the
  last feature map is 1x4x4, and still valid at other clip sizes.
"""

from __future__ import annotations

from functools import partial
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["BasicBlock", "ResNet3D", "build_r3d18", "build_r3d34"]


def conv3x3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv3d:
    return nn.Conv3d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


def downsample_basic_block(x: torch.Tensor, planes: int, stride: int) -> torch.Tensor:
    """Type-A shortcut: subsample by ``stride`` and append zero channels up to ``planes``."""
    out = F.avg_pool3d(x, kernel_size=1, stride=stride)
    return F.pad(out, (0, 0, 0, 0, 0, 0, 0, planes - out.shape[1]))


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample=None):
        super().__init__()
        self.conv1 = conv3x3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm3d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3x3(planes, planes)
        self.bn2 = nn.BatchNorm3d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + residual)


class ResNet3D(nn.Module):
    """Hara's ``ResNet`` with BasicBlocks. Input [B, in_channels, T, H, W]; 512-D features."""

    feature_dim = 512

    def __init__(
        self,
        layers: Sequence[int],
        shortcut_type: str = "A",
        num_classes: int = 400,
        in_channels: int = 3,
    ):
        super().__init__()
        if shortcut_type not in ("A", "B"):
            raise ValueError(f"shortcut_type must be 'A' or 'B', got {shortcut_type!r}")
        if len(layers) != 4:
            raise ValueError(f"layers must give 4 block counts, got {tuple(layers)}")
        self.shortcut_type = shortcut_type
        self.inplanes = 64
        self.conv1 = nn.Conv3d(in_channels, 64, kernel_size=7, stride=(1, 2, 2), padding=(3, 3, 3),
                               bias=False)
        self.bn1 = nn.BatchNorm3d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool3d(kernel_size=(3, 3, 3), stride=2, padding=1)
        self.layer1 = self._make_layer(64, layers[0])
        self.layer2 = self._make_layer(128, layers[1], stride=2)
        self.layer3 = self._make_layer(256, layers[2], stride=2)
        self.layer4 = self._make_layer(512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool3d(1)
        self.fc = nn.Linear(512 * BasicBlock.expansion, num_classes)
        for m in self.modules():  # Hara's initialisation
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.BatchNorm3d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _make_layer(self, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * BasicBlock.expansion:
            if self.shortcut_type == "A":
                downsample = partial(downsample_basic_block, planes=planes * BasicBlock.expansion,
                                     stride=stride)
            else:
                downsample = nn.Sequential(
                    nn.Conv3d(self.inplanes, planes * BasicBlock.expansion, kernel_size=1,
                              stride=stride, bias=False),
                    nn.BatchNorm3d(planes * BasicBlock.expansion),
                )
        layers = [BasicBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * BasicBlock.expansion
        layers += [BasicBlock(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled layer4 output [B, 512]: the clip features the anomaly heads consume."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.forward_features(x))


def build_r3d18(**kwargs) -> ResNet3D:
    """ResNet-18 (blocks 2-2-2-2); kwargs: shortcut_type, num_classes, in_channels."""
    return ResNet3D((2, 2, 2, 2), **kwargs)


def build_r3d34(**kwargs) -> ResNet3D:
    """ResNet-34 (blocks 3-4-6-3); kwargs: shortcut_type, num_classes, in_channels."""
    return ResNet3D((3, 4, 6, 3), **kwargs)
