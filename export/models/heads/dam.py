"""DAM: Dissimilarity Attention Module, Majhi, Das & Bremond, "DAM: Dissimilarity Attention Module
for Weakly-supervised Video Anomaly Detection", AVSS 2021
(code: github.com/snehashismajhi/DAM-Anomaly-Detection).

Online: a clip is judged against the clip just before it, not against the whole video, so a score
is ready as soon as the clip is. Per clip, with ``x`` this clip's I3D map and ``y`` the previous
clip's, both ``[t, n]`` (t = 7 steps of a 64-frame clip, n = 1024 channels in the paper):

1. a feature LSTM over the t steps of ``x`` gives the clip encoding ``e`` (its last output);
2. dissimilarities of ``x`` and ``y`` along channels ``c [n]`` and along time ``d [t]``:

   * Dist-DAM, Manhattan: ``E = |x - y|``; ``c = sum_t E``, ``d = sum_n E``;
   * Cov-DAM, diagonal of the cross-covariance: ``P = (x - mean x) * (y - mean y)``;
     ``c = mean_t P`` (per channel, covariance over time), ``d = mean_n P`` (per step, covariance
     over channels). Centring: over all t*n entries of each map (``cov_centering="global"``, the
     default), which for t = 1 still leaves a meaningful per-channel product of deviations; the
     released code centres each covariance along its own axis (``"axis"``), which makes the
     channel term identically zero for t = 1 (the UCF-Crime features we have are pooled, t = 1).
     The released code also divides the two by the wrong counts (7 and 1024 swapped); the
     outer product below is the same either way;

3. their outer product ``d c^T [t, n]`` feeds a second LSTM; its last output ``g`` gives
   channel attention ``softmax(g)``, applied residually to the clip encoding,
   ``e + e * softmax(g)`` (as in the released code), and the clip attention
   ``ClipA = sigmoid(FC(tanh g))``;
4. detection ``D = sigmoid(FC(relu(FC(dropout(attended)))))`` (hidden 96, dropout 0.2, the paper's);
5. ``score = D + D * ClipA`` in [0, 2].

Stateless as a graph: the previous map is an explicit input and the runtime holds it. On a
stream's first clip the runtime passes the clip's own map as ``prev_map`` (no change: Dist
dissimilarity zero, so the attention is uninformative and ``D`` dominates). Note the authors'
training loader instead used an all-zero map before a video's first clip.
"""

from __future__ import annotations

import torch
from torch import nn

from .mlp import init_dense, init_lstm

_DISSIMILARITIES = ("dist", "cov")
_CENTERINGS = ("global", "axis")


def dissimilarities(clip_map: torch.Tensor, prev_map: torch.Tensor, kind: str = "dist",
                    cov_centering: str = "global") -> tuple[torch.Tensor, torch.Tensor]:
    """``(channel [B, n], temporal [B, t])`` dissimilarities of two ``[B, t, n]`` maps."""
    if kind not in _DISSIMILARITIES or cov_centering not in _CENTERINGS:
        raise ValueError(f"unknown dissimilarity {kind!r} or centring {cov_centering!r}")
    if kind == "dist":
        e = (clip_map - prev_map).abs()
        return e.sum(dim=1), e.sum(dim=2)
    if cov_centering == "global":
        xc = clip_map - clip_map.mean(dim=(1, 2), keepdim=True)
        yc = prev_map - prev_map.mean(dim=(1, 2), keepdim=True)
        p = xc * yc
        return p.mean(dim=1), p.mean(dim=2)
    channel = ((clip_map - clip_map.mean(dim=1, keepdim=True))
               * (prev_map - prev_map.mean(dim=1, keepdim=True))).mean(dim=1)
    temporal = ((clip_map - clip_map.mean(dim=2, keepdim=True))
                * (prev_map - prev_map.mean(dim=2, keepdim=True))).mean(dim=2)
    return channel, temporal


class DAMHead(nn.Module):
    """``clip_map, prev_map [B, t, n] -> (score, detection, clip_attention)``, each ``[B]``."""

    def __init__(self, dissimilarity: str = "dist", feature_dim: int = 1024, hidden: int = 1024,
                 detector_hidden: int = 96, dropout: float = 0.2,
                 cov_centering: str = "global") -> None:
        super().__init__()
        if dissimilarity not in _DISSIMILARITIES:
            raise ValueError(
                f"dissimilarity must be one of {_DISSIMILARITIES}, got {dissimilarity!r}"
            )
        if cov_centering not in _CENTERINGS:
            raise ValueError(f"cov_centering must be one of {_CENTERINGS}, got {cov_centering!r}")
        self.dissimilarity = dissimilarity
        self.cov_centering = cov_centering
        self.feature_dim = feature_dim
        self.hidden = hidden
        self.clip_lstm = init_lstm(nn.LSTM(feature_dim, hidden, batch_first=True))
        self.dissimilarity_lstm = init_lstm(nn.LSTM(feature_dim, hidden, batch_first=True))
        self.clip_attention_fc = init_dense(nn.Linear(hidden, 1))
        self.dropout = nn.Dropout(dropout)
        self.detector_fc = init_dense(nn.Linear(hidden, detector_hidden))
        self.detection_fc = init_dense(nn.Linear(detector_hidden, 1))

    def forward(self, clip_map: torch.Tensor, prev_map: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if clip_map.dim() != 3 or clip_map.shape[-1] != self.feature_dim:
            raise ValueError(
                f"clip_map must be [batch, t, {self.feature_dim}], got {tuple(clip_map.shape)}"
            )
        if prev_map.dim() != 3 or prev_map.shape[1:] != clip_map.shape[1:]:
            raise ValueError(f"prev_map must match clip_map's [t, n], got {tuple(prev_map.shape)}")
        encoding = self.clip_lstm(clip_map)[0][:, -1]
        channel, temporal = dissimilarities(clip_map, prev_map, self.dissimilarity,
                                            self.cov_centering)
        outer = temporal.unsqueeze(2) * channel.unsqueeze(1)  # [B, t, n]
        dissim_encoding = self.dissimilarity_lstm(outer)[0][:, -1]
        attended = encoding + encoding * torch.softmax(dissim_encoding, dim=-1)
        hidden = torch.relu(self.detector_fc(self.dropout(attended)))
        detection = torch.sigmoid(self.detection_fc(hidden)).squeeze(-1)
        clip_attention = torch.sigmoid(
            self.clip_attention_fc(torch.tanh(dissim_encoding))
        ).squeeze(-1)
        score = detection + detection * clip_attention
        return score, detection, clip_attention


def build_dam(dissimilarity: str = "dist", feature_dim: int = 1024, hidden: int = 1024,
              **kwargs) -> DAMHead:
    """The zoo's ``dam-dist`` / ``dam-cov`` heads; kwargs: ``detector_hidden=96, dropout=0.2,
    cov_centering="global"``. Raises ValueError for an unknown ``dissimilarity``."""
    return DAMHead(dissimilarity=dissimilarity, feature_dim=feature_dim, hidden=hidden, **kwargs)
