"""``r3d34-ucf-crime``: 3D ResNet-34 with the UCF-Crime features' clip reshape quirk in the graph.

The UCF-Crime R3D-34 features were made by reshaping each (16, 112, 112, 3) clip to
(3, 16, 112, 112) instead of transposing it (:mod:`edgevad.artifact.ucf_crime`). This backbone takes the
properly laid out clip the runtime builds, [B, 3, 16, H, W], and reproduces that reshape first,
so heads trained on those features see the same numbers live. Weights load as ``r3d34``'s (a
subclass: the state-dict keys are Hara's).
"""

from __future__ import annotations

import torch

from .resnet3d import ResNet3D


class UCFCrimeResNet3D(ResNet3D):
    def scramble(self, x: torch.Tensor) -> torch.Tensor:
        """[B, C, T, H, W] -> [B, T, H, W, C] -> plain reshape to [B, C, T, H, W]."""
        b, c, t, h, w = x.shape
        return x.permute(0, 2, 3, 4, 1).reshape(b, c, t, h, w)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward_features(self.scramble(x))


def build_r3d34_ucf_crime(**kwargs) -> UCFCrimeResNet3D:
    """ResNet-34 (blocks 3-4-6-3, type-A shortcuts) behind the UCF-Crime reshape quirk."""
    return UCFCrimeResNet3D((3, 4, 6, 3), **kwargs)
