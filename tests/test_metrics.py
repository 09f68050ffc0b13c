"""The frame protocol's metrics, checked against scikit-learn on hand-made cases."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from edgevad_export.evaluation.metrics import VideoScores, false_alarm_rate, frame_report


def _videos():
    # anomalous video: 8 frames, frames 4-7 anomalous; 2 segments
    a = VideoScores("A", np.array([0.2, 0.9]), np.array([0, 0, 0, 0, 1, 1, 1, 1]), "Arson")
    # normal video: 6 frames, 3 segments
    n = VideoScores("N", np.array([0.1, 0.6, 0.3]), np.zeros(6, dtype=np.int8), "Normal")
    return [a, n]


def test_frame_auc_pools_frames_like_sklearn():
    videos = _videos()
    rep = frame_report(videos, threshold=0.5)
    frame_scores = [0.2] * 4 + [0.9] * 4 + [0.1] * 2 + [0.6] * 2 + [0.3] * 2
    frame_labels = [0] * 4 + [1] * 4 + [0] * 6
    assert rep.frame_auc == pytest.approx(roc_auc_score(frame_labels, frame_scores))
    assert rep.n_frames == 14 and rep.n_videos == 2
    assert rep.far == pytest.approx(2 / 6)  # the normal video's 2 frames at 0.6
    assert rep.video_auc == 1.0  # 0.9 > 0.6
    assert rep.per_class_auc["Arson"] == pytest.approx(rep.frame_auc)


def test_far_without_normal_videos_is_nan():
    assert np.isnan(false_alarm_rate(_videos()[:1], 0.5))


def test_single_class_is_refused():
    with pytest.raises(ValueError, match="both normal and anomalous"):
        frame_report(_videos()[1:])
