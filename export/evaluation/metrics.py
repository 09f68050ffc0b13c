"""Frame-level metrics of the weakly-supervised protocol (scikit-learn does the maths).

Every frame of a video takes its segment's score (``edgevad.artifact.segments``); frames of all test
videos are pooled; ROC AUC and average precision are computed over frames. The false alarm rate
is the share of frames of *normal* videos scored above the threshold. Video-level AUC ranks
videos by their highest segment score.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from edgevad.artifact.segments import segment_scores_to_frames


@dataclass
class VideoScores:
    """One test video: its segment scores and frame-level ground truth."""

    name: str
    scores: np.ndarray  # [S]
    frame_labels: np.ndarray  # [F] 0/1
    category: str = ""

    @property
    def is_anomalous(self) -> bool:
        return bool(self.frame_labels.any())

    def frame_scores(self) -> np.ndarray:
        return segment_scores_to_frames(self.scores, len(self.frame_labels))


@dataclass
class FrameReport:
    frame_auc: float
    average_precision: float
    far: float
    threshold: float
    video_auc: float
    n_videos: int
    n_frames: int
    per_class_auc: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def pooled_frames(videos: list[VideoScores]) -> tuple[np.ndarray, np.ndarray]:
    """Frame scores and labels of all videos, concatenated."""
    scores = np.concatenate([v.frame_scores() for v in videos])
    labels = np.concatenate([v.frame_labels for v in videos])
    return scores, labels


def false_alarm_rate(videos: list[VideoScores], threshold: float) -> float:
    """Share of frames of normal videos scored above ``threshold`` (nan without normal videos)."""
    normal = [v.frame_scores() for v in videos if not v.is_anomalous]
    if not normal:
        return float("nan")
    frames = np.concatenate(normal)
    return float((frames > threshold).mean())


def frame_report(videos: list[VideoScores], threshold: float = 0.5) -> FrameReport:
    """Frame AUC, AP, FAR@threshold, video AUC and per-category frame AUC.

    Per-class AUC pools the frames of one anomaly category with all normal videos' frames, the
    usual way of reporting UCF-Crime classes.
    """
    if not videos:
        raise ValueError("no videos to evaluate")
    scores, labels = pooled_frames(videos)
    if labels.min() == labels.max():
        raise ValueError("frame-level AUC needs both normal and anomalous frames")
    video_max = np.array([v.scores.max() for v in videos])
    video_lab = np.array([v.is_anomalous for v in videos])
    per_class: dict[str, float] = {}
    normal = [v for v in videos if not v.is_anomalous]
    for category in sorted({v.category for v in videos if v.is_anomalous and v.category}):
        subset = [v for v in videos if v.category == category and v.is_anomalous] + normal
        s, y = pooled_frames(subset)
        if y.min() != y.max():
            per_class[category] = float(roc_auc_score(y, s))
    return FrameReport(
        frame_auc=float(roc_auc_score(labels, scores)),
        average_precision=float(average_precision_score(labels, scores)),
        far=false_alarm_rate(videos, threshold),
        threshold=threshold,
        video_auc=(float(roc_auc_score(video_lab, video_max))
                   if video_lab.min() != video_lab.max() else float("nan")),
        n_videos=len(videos),
        n_frames=int(labels.size),
        per_class_auc=per_class,
    )


def frame_roc(videos: list[VideoScores]) -> tuple[np.ndarray, np.ndarray]:
    """False and true positive rates over pooled frames, for the ROC plot."""
    scores, labels = pooled_frames(videos)
    fpr, tpr, _ = roc_curve(labels, scores)
    return fpr, tpr
