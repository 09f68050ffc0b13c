"""MIL ranking head of Sultani, Chen & Shah, "Real-world Anomaly Detection in Surveillance Videos",
CVPR 2018.

A video is a bag of segments (32 in training); a 3-layer MLP scores each segment and the MIL ranking
loss (:func:`edgevad_export.models.heads.losses.mil_ranking_loss`) pushes the top segment of an
anomalous bag above the top segment of a normal bag. The paper used 4096-D C3D fc6 features; the
zoo feeds 1024-D I3D features, hence ``feature_dim=1024``.
"""

from __future__ import annotations

import torch
from torch import nn

from .mlp import FeatureStandardizer, SegmentMLP, check_features


class MILHead(nn.Module):
    """``features [B, S, D] -> scores [B, S]`` in [0, 1], one independent score per segment."""

    def __init__(self, feature_dim: int = 1024, hidden: int = 512, bottleneck: int = 32,
                 dropout: float = 0.6, standardize: bool = False) -> None:
        super().__init__()
        self.feature_dim = feature_dim
        self.standardizer = FeatureStandardizer(feature_dim) if standardize else None
        self.mlp = SegmentMLP(feature_dim, hidden=hidden, bottleneck=bottleneck, dropout=dropout)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        check_features(features, self.feature_dim)
        if self.standardizer is not None:
            features = self.standardizer(features)
        return self.mlp(features)


def build_mil(feature_dim: int = 1024, **kwargs) -> MILHead:
    """The zoo's ``mil`` head; kwargs: ``hidden=512, bottleneck=32, dropout=0.6`` (the paper's),
    ``standardize=False`` (per-dimension feature standardisation fitted by the trainer)."""
    return MILHead(feature_dim=feature_dim, **kwargs)
