"""Joint detection + classification head: Majhi, Das & Bremond, "Weakly-supervised Joint Anomaly
Detection and Classification", FG 2021 (code: snehashismajhi/JointDetectClassify).

Our reading of the paper and of the authors' ``model.py``, for ``features [B, S, D]``:

* shared features: an LSTM over the S segments, concatenated with its input,
  ``h = [LSTM(x), x]`` (``[B, S, hidden + D]``): temporal context without losing the raw feature;
* first-level attention (which segments matter for the video): each segment is embedded
  (``relu(FC(x))``, 1024), the embeddings are averaged over the video and an FC with softmax
  maps that video summary to one weight per segment, ``a1 [B, S]``, applied residually,
  ``h1 = h + h * a1``. It feeds both branches. Because the FC emits exactly S weights, the head
  is built for a fixed number of segments (32, the training bag size);
* detection branch: per segment ``dropout(0.6) -> FC 96 (linear) -> dropout(0.6) -> FC 1 sigmoid``,
  the anomaly score, trained with the MIL ranking loss;
* second-level attention (detection guides classification): the detection branch's 96-D segment
  states go through ``relu(FC 24)``, are flattened over the segments and an FC with sigmoid gives
  ``a2 [B, S]``; ``h2 = h1 + h1 * a2`` weights the segments the detector finds telling;
* classification branch: ``h2`` averaged over segments, ``FC 256 relu -> dropout(0.6) -> FC 14``,
  logits over :data:`edgevad.artifact.zoo.UCF_CRIME_CLASSES` (Normal = 0); the paper applies softmax and a
  class-weighted cross-entropy (:func:`edgevad_export.models.heads.losses.joint_loss`).

The paper fed the flattened 7 x 1024 I3D map per segment (7168-D); the zoo's pooled I3D features
are 1024-D (``feature_dim=7168`` reproduces the paper's input).
"""

from __future__ import annotations

import torch
from torch import nn

from .mlp import FeatureStandardizer, check_features, init_dense, init_lstm


class JointHead(nn.Module):
    """``features [B, S, D] -> (scores [B, S] in [0, 1], class_logits [B, num_classes])``."""

    def __init__(self, feature_dim: int = 1024, num_classes: int = 14, segments: int = 32,
                 lstm_hidden: int = 1024, attention_hidden: int = 1024,
                 detector_hidden: int = 96, guide_hidden: int = 24,
                 classifier_hidden: int = 256, dropout: float = 0.6,
                 standardize: bool = False) -> None:
        super().__init__()
        self.feature_dim = feature_dim
        self.standardizer = FeatureStandardizer(feature_dim) if standardize else None
        self.num_classes = num_classes
        self.segments = segments
        width = lstm_hidden + feature_dim
        self.lstm = init_lstm(nn.LSTM(feature_dim, lstm_hidden, batch_first=True))
        self.attention_embed = init_dense(nn.Linear(feature_dim, attention_hidden))
        self.attention_fc = init_dense(nn.Linear(attention_hidden, segments))
        self.dropout = nn.Dropout(dropout)
        self.detector_fc = init_dense(nn.Linear(width, detector_hidden))
        self.detection_fc = init_dense(nn.Linear(detector_hidden, 1))
        self.guide_fc = init_dense(nn.Linear(detector_hidden, guide_hidden))
        self.guide_attention_fc = init_dense(nn.Linear(segments * guide_hidden, segments))
        self.classifier_fc = init_dense(nn.Linear(width, classifier_hidden))
        self.class_fc = init_dense(nn.Linear(classifier_hidden, num_classes))

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        check_features(features, self.feature_dim)
        if features.shape[1] != self.segments:
            raise ValueError(f"joint head is built for {self.segments} segments, "
                             f"got {features.shape[1]}")
        if self.standardizer is not None:
            features = self.standardizer(features)
        h = torch.cat([self.lstm(features)[0], features], dim=-1)
        summary = torch.relu(self.attention_embed(features)).mean(dim=1)
        a1 = torch.softmax(self.attention_fc(summary), dim=-1).unsqueeze(-1)
        h1 = h + h * a1
        z = self.dropout(self.detector_fc(self.dropout(h1)))
        scores = torch.sigmoid(self.detection_fc(z)).squeeze(-1)
        guide = torch.relu(self.guide_fc(z)).flatten(1)
        a2 = torch.sigmoid(self.guide_attention_fc(guide)).unsqueeze(-1)
        pooled = (h1 + h1 * a2).mean(dim=1)
        logits = self.class_fc(self.dropout(torch.relu(self.classifier_fc(pooled))))
        return scores, logits


def build_joint(feature_dim: int = 1024, num_classes: int = 14, **kwargs) -> JointHead:
    """The zoo's ``joint`` head; kwargs: ``segments=32, lstm_hidden=1024, attention_hidden=1024,
    detector_hidden=96, guide_hidden=24, classifier_hidden=256, dropout=0.6`` (the paper's),
    ``standardize=False`` (per-dimension feature standardisation fitted by the trainer: raw
    UCF-Crime R3D-34 features, norm ~40, saturate the detection sigmoid within a few hundred
    steps and every segment scores 1)."""
    return JointHead(feature_dim=feature_dim, num_classes=num_classes, **kwargs)
