"""BN-WVAD's normality prior as a head: how far a clip's features lie from normal footage's.

Zhou et al., "BatchNorm-based Weakly Supervised Video Anomaly Detection" (BN-WVAD, 2023) score a
feature by its distance from the running statistics a BatchNorm layer keeps of *normal* features.
Without their ranking head, that prior alone is ``motion-prior``'s scorer on per-clip optical-flow
statistics (``docs/ped2_weak_split.md``: chosen by validation inside Ped2's training videos,
99.3 frame AUC on the weak split's test videos): per dimension ``z = (x - mean) / std`` with the
mean and standard deviation of the normal clips, clamped at 0 from below for ``side="upper"``
(only faster-than-usual motion counts), ``d = mean(z ** 2)``, score ``d / (1 + d)`` in [0, 1).

Nothing is learned by gradient: :meth:`NormalityPriorHead.fit` sets the two buffers from normal
clips (``edgevad fit-prior``), and the state dict (``mean``, ``std``) is the checkpoint. A clip's
score is its own (no window, no per-video state), so the head is causal and exact clip by clip.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .mlp import check_features

SIDES = ("upper", "both")
EPS = 1e-6
"""Added to the normal clips' standard deviation (a dimension that never varied stays finite)."""


class NormalityPriorHead(nn.Module):
    """``features [B, S, D] -> scores [B, S]`` in [0, 1): the normality prior of each segment."""

    live_window = 1
    """Each clip is scored alone (the exporter records it as the protocol's live window)."""

    def __init__(self, feature_dim: int = 7, side: str = "upper") -> None:
        super().__init__()
        if side not in SIDES:
            raise ValueError(f"side must be one of {', '.join(SIDES)}, got {side!r}")
        self.feature_dim = int(feature_dim)
        self.side = side
        self.register_buffer("mean", torch.zeros(self.feature_dim))
        self.register_buffer("std", torch.ones(self.feature_dim))

    @torch.no_grad()
    def fit(self, normal: np.ndarray | torch.Tensor) -> NormalityPriorHead:
        """Set ``mean`` and ``std`` (population std + :data:`EPS`) from normal clips' features
        ``[N, D]`` (float64 sums, stored as float32). Returns self."""
        x = np.asarray(normal, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.feature_dim or len(x) < 2:
            raise ValueError(f"normal features must be [N >= 2, {self.feature_dim}], got "
                             f"{x.shape}")
        if not np.isfinite(x).all():
            raise ValueError("normal features contain NaN or infinity")
        self.mean.copy_(torch.from_numpy(x.mean(axis=0)))
        self.std.copy_(torch.from_numpy(x.std(axis=0) + EPS))
        return self

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        check_features(features, self.feature_dim)
        z = (features - self.mean) / self.std
        if self.side == "upper":
            z = torch.clamp(z, min=0.0)
        d = (z * z).mean(dim=-1)
        return d / (1.0 + d)


def build_normality_prior(feature_dim: int = 7, **kwargs) -> NormalityPriorHead:
    """The zoo's ``motion-prior`` head; kwargs: ``side="upper"`` (or ``"both"``)."""
    return NormalityPriorHead(feature_dim=feature_dim, **kwargs)
