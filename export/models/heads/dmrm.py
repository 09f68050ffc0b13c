"""DMRM head: Dubey, Boragule, Gwak & Jeon, "Anomalous Event Recognition in Videos Based on Joint
Learning of Motion and Appearance with Multiple Ranking Measures", Appl. Sci. 11(3) 1344, 2021.

Appearance (3D ResNet over RGB) and motion (a 3D network over optical flow) segment features are
learnt jointly by one MIL scorer trained with the multiple ranking measures.

Fusion (our reading, documented because the two streams' scales differ): each stream is
L2-normalised per segment, then the two are concatenated, ``[B, S, Da + Dm]``, and scored by the
MRM MIL MLP. Normalising first keeps one stream's magnitude from swamping the other (Sultani et al.
likewise L2-normalise segment features before the MLP); ``normalize=False`` gives plain
concatenation. No learned projection: the MLP's first layer already is one.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .mlp import SegmentMLP, check_features


class DMRMHead(nn.Module):
    """``appearance [B, S, Da], motion [B, S, Dm] -> scores [B, S]`` in [0, 1]."""

    def __init__(self, appearance_dim: int = 1024, motion_dim: int = 1024, hidden: int = 512,
                 bottleneck: int = 32, dropout: float = 0.6, normalize: bool = True,
                 eps: float = 1e-6) -> None:
        super().__init__()
        self.appearance_dim = appearance_dim
        self.motion_dim = motion_dim
        self.feature_dim = appearance_dim + motion_dim
        self.normalize = normalize
        self.eps = eps
        self.mlp = SegmentMLP(self.feature_dim, hidden=hidden, bottleneck=bottleneck,
                              dropout=dropout)

    def fuse(self, appearance: torch.Tensor, motion: torch.Tensor) -> torch.Tensor:
        check_features(appearance, self.appearance_dim, "appearance")
        check_features(motion, self.motion_dim, "motion")
        if self.normalize:
            appearance = F.normalize(appearance, dim=-1, eps=self.eps)
            motion = F.normalize(motion, dim=-1, eps=self.eps)
        return torch.cat([appearance, motion], dim=-1)

    def forward(self, appearance: torch.Tensor, motion: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.fuse(appearance, motion))


def build_dmrm(appearance_dim: int = 1024, motion_dim: int = 1024, **kwargs) -> DMRMHead:
    """The zoo's ``dmrm`` head; kwargs: ``hidden=512, bottleneck=32, dropout=0.6,
    normalize=True``."""
    return DMRMHead(appearance_dim=appearance_dim, motion_dim=motion_dim, **kwargs)
