"""``mil-dis``: a MIL segment detector gated by how much the scene changed since the last segment.

Not a published head; it joins two published ideas for pooled 3D-CNN features:

* the detector is Sultani's segment MLP over per-dimension standardised features, trained by
  top-k ranking and then self-training on its own segment pseudo-labels (``TrainConfig``
  ``topk=3, self_training=True``), its length chosen on held-out training videos (``val_share``);
* DAM (Majhi et al., AVSS 2021) scores a clip against the clip just before it and multiplies the
  detection by an attention from that dissimilarity (``score = D + D * ClipA``). Here the gate is
  parameter-free: ``g_i = min(1, ||x_i - x_{i-1}|| / change_scale)``, the Euclidean distance of a
  segment's raw feature from the previous segment's, over the largest such distance in the
  training bags (a buffer fitted with the standardiser). The first segment has no predecessor and
  is compared with itself (``g = 0``), as DAM's runtime does on a stream's first clip.

Why: trained from video labels only, the detector learns *which videos* are anomalous (on the
UCF-Crime R3D-34 dev split it ranks anomalous frames above normal videos' frames with 0.95 AUC)
but not *where* inside an anomalous video (0.52 AUC within those videos), because weak labels
never mark any part of an anomalous video as normal. Change from the previous segment localises
(0.68 AUC within anomalous videos on its own) and is near zero where nothing happens, so the
product keeps the detector's video-level ranking and adds localisation. The gate is applied at
inference only: the trainer fits the detector on :meth:`DissimilarityMILHead.detection` (gating
during training was measured worse: the ranking loss then learns from the gate's peaks).

The product is small (the gate is rarely near 1), so 0.5 would mean nothing: with held-out
training videos (``val_share``) the trainer calls :meth:`DissimilarityMILHead.calibrate`, which
maps the held-out videos' best video-level threshold (Youden's J on their peak scores) to 0.5 by
a power ``s ** score_power`` (monotone: AUCs unchanged). No test data is involved.

``features [B, S, D] -> scores [B, S]`` in [0, 1]. Causal: a segment's score needs only its own
and the previous segment's features, so a runtime feeding a sliding window of ``W >= 2`` segments
reads every score but the window's first. ``change_scale`` is in the units of the training
features (segment averages of clip features); clip features fed one by one change more from clip
to clip than 1/32-of-a-video averages do, so a runtime must feed the same kind of features.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from .mlp import FeatureStandardizer, SegmentMLP, check_features


class DissimilarityMILHead(nn.Module):
    def __init__(self, feature_dim: int = 1024, hidden: int = 128, bottleneck: int = 32,
                 dropout: float = 0.6) -> None:
        super().__init__()
        self.feature_dim = feature_dim
        self.standardizer = FeatureStandardizer(feature_dim)
        self.mlp = SegmentMLP(feature_dim, hidden=hidden, bottleneck=bottleneck, dropout=dropout)
        self.register_buffer("change_scale", torch.ones(()))
        self.register_buffer("score_power", torch.ones(()))

    @torch.no_grad()
    def fit_statistics(self, features: torch.Tensor) -> None:
        """Fit the standardiser and ``change_scale`` on training bags ``[N, S, D]``."""
        self.standardizer.fit(features)
        change = (features[:, 1:] - features[:, :-1]).norm(dim=-1)
        self.change_scale.copy_(change.max().clamp_min(1e-6))

    @torch.no_grad()
    def calibrate(self, features: torch.Tensor, labels: torch.Tensor) -> float:
        """Give 0.5 a meaning: find the video threshold ``t`` on the peak scores of held-out
        training bags (``features [N, S, D]``, video ``labels [N]``) that maximises Youden's J
        (TPR - FPR), and set ``score_power = log 0.5 / log t`` so that ``t`` maps to 0.5.
        Monotone, so AUCs are unchanged. Call in eval mode. Returns ``t``."""
        from sklearn.metrics import roc_curve

        self.score_power.fill_(1.0)
        peaks = self(features).amax(dim=1)
        fpr, tpr, thresholds = roc_curve(labels.numpy().astype(bool), peaks.numpy())
        finite = np.isfinite(thresholds)  # roc_curve's first threshold is +inf
        youden = np.where(finite, tpr - fpr, -np.inf)
        best = float(thresholds[int(youden.argmax())])
        if youden.max() <= 0 or not 0.0 < best < 1.0:
            raise ValueError(f"held-out peak scores do not separate anomalous from normal videos "
                             f"(best Youden J {youden.max():.3f} at {best:.4g}): cannot calibrate")
        self.score_power.fill_(math.log(0.5) / math.log(best))
        return best

    def detection(self, features: torch.Tensor) -> torch.Tensor:
        """The ungated segment scores ``[B, S]`` in [0, 1] (what training optimises)."""
        check_features(features, self.feature_dim)
        return self.mlp(self.standardizer(features))

    def gate(self, features: torch.Tensor) -> torch.Tensor:
        """``min(1, ||x_i - x_{i-1}|| / change_scale)`` per segment ``[B, S]``; 0 for the first."""
        prev = torch.cat([features[:, :1], features[:, :-1]], dim=1)
        return ((features - prev).norm(dim=-1) / self.change_scale).clamp(0.0, 1.0)

    live_window = 2
    """A live runtime feeds this clip and the one before it (the gate is the change between them;
    a window's first segment has no predecessor and scores 0)."""

    def gated(self, detection: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """The head's scores from its ``detection`` of ``features``: ``(d * g) ** score_power``."""
        return (detection * self.gate(features)).pow(self.score_power)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.gated(self.detection(features), features)


def build_dissimilarity_mil(feature_dim: int = 1024, **kwargs) -> DissimilarityMILHead:
    """The ``mil-dis`` head; kwargs: ``hidden=128, bottleneck=32, dropout=0.6``."""
    return DissimilarityMILHead(feature_dim=feature_dim, **kwargs)
