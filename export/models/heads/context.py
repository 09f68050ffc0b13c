"""``mil-ctx``: Sultani's segment scorer with the cheap gains of later papers, for pooled features.

Not a published head: a variant registered in the zoo beside the papers' heads, built from ideas
the literature reports on these weakly supervised benchmarks:

* each segment feature is L2-normalised (Sultani et al. normalise their C3D features; it removes
  the per-video brightness/magnitude offsets of pooled 3D-CNN features);
* temporal context (``context="diff"``): next to the segment's own feature the MLP sees its
  difference from the mean of a centred window of ``window`` segments (a fixed average pooling,
  no parameters), so a segment that stands out from its neighbours is easy to score (the idea
  behind DAM's dissimilarity and RTFM's temporal modules); ``context="none"`` is the plain MLP;
* top-k selection in the ranking loss (:func:`topk_ranking_loss`, RTFM / "MIL top-k": the mean of
  the k highest segment scores, k = 3) instead of the single maximum.

``features [B, S, D] -> scores [B, S]`` in [0, 1]; the window makes a segment's score depend on its
``window // 2`` neighbours on each side (offline bags, or a runtime that delays by that many
segments). Exported graphs stay plain (normalise, avg-pool, concat, MLP).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .losses import _check, _hinge, _reduce, temporal_smoothness
from .mlp import SegmentMLP, check_features

_CONTEXTS = ("none", "diff")


class ContextMILHead(nn.Module):
    def __init__(self, feature_dim: int = 1024, hidden: int = 128, bottleneck: int = 32,
                 dropout: float = 0.6, normalize: bool = True, context: str = "diff",
                 window: int = 5, eps: float = 1e-6) -> None:
        super().__init__()
        if context not in _CONTEXTS:
            raise ValueError(f"context must be one of {_CONTEXTS}, got {context!r}")
        if window < 1 or window % 2 == 0:
            raise ValueError(f"window must be an odd number >= 1, got {window}")
        self.feature_dim = feature_dim
        self.normalize = normalize
        self.context = context
        self.window = window
        self.eps = eps
        width = feature_dim * (2 if context == "diff" else 1)
        self.mlp = SegmentMLP(width, hidden=hidden, bottleneck=bottleneck, dropout=dropout)

    @property
    def live_window(self) -> int:
        """Clips a live runtime feeds to score the newest one: it and the ``window // 2`` before
        it (the context the last segment of a bag sees; no added latency). On Ped2 this causal
        scoring measured 77.2 frame AUC against 78.0 for whole bags (default model, 01-06)."""
        return self.window // 2 + 1 if self.context == "diff" else 1

    def features(self, x: torch.Tensor) -> torch.Tensor:
        check_features(x, self.feature_dim)
        if self.normalize:
            x = F.normalize(x, dim=-1, eps=self.eps)
        if self.context == "diff":
            pooled = F.avg_pool1d(x.transpose(1, 2), self.window, stride=1,
                                  padding=self.window // 2, count_include_pad=False).transpose(1, 2)
            x = torch.cat([x, x - pooled], dim=-1)
        return x

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.features(features))


def build_context_mil(feature_dim: int = 1024, **kwargs) -> ContextMILHead:
    """The ``mil-ctx`` head; kwargs: ``hidden=128, bottleneck=32, dropout=0.6, normalize=True,
    context="diff", window=5``."""
    return ContextMILHead(feature_dim=feature_dim, **kwargs)


def topk_ranking_loss(scores_anom: torch.Tensor, scores_norm: torch.Tensor, k: int = 3,
                      smooth: float = 8e-5, sparsity: float = 8e-5, *, margin: float = 1.0,
                      pairing: str = "paired") -> torch.Tensor:
    """Sultani's MIL ranking loss with the mean of the ``k`` top segments of each bag in place of
    the maximum (k = 1 is :func:`~.losses.mil_ranking_loss` exactly)."""
    _check(scores_anom, scores_norm, pairing)
    k = min(k, scores_anom.shape[1], scores_norm.shape[1])
    top_a = scores_anom.topk(k, dim=1).values.mean(dim=1)
    top_n = scores_norm.topk(k, dim=1).values.mean(dim=1)
    loss = _hinge(top_a, top_n, margin, pairing)
    loss = loss + smooth * _reduce(temporal_smoothness(scores_anom), pairing)
    return loss + sparsity * _reduce(scores_anom.sum(dim=1), pairing)
