"""Segment arithmetic shared by extraction, evaluation and the runtime (numpy only).

The weakly-supervised protocol cuts a video of F frames into S segments; segment i covers frames
``[floor(i*F/S), floor((i+1)*F/S))`` and every frame takes its segment's score. Bags whose
segment count differs from a model's (the UCF-Crime features have 31-33) are resampled by
averaging, as in Sultani et al.'s and later papers' feature preparation.
"""

from __future__ import annotations

import numpy as np


def segment_bounds(n_frames: int, n_segments: int) -> np.ndarray:
    """Start and end (exclusive) frame of each segment, shape [S, 2].

    With F < S some segments are empty (start == end); every frame still belongs to exactly one.
    """
    if n_segments < 1:
        raise ValueError(f"n_segments must be >= 1, got {n_segments}")
    if n_frames < 0:
        raise ValueError(f"n_frames must be >= 0, got {n_frames}")
    edges = (np.arange(n_segments + 1, dtype=np.int64) * n_frames) // n_segments
    return np.stack([edges[:-1], edges[1:]], axis=1)


def segment_scores_to_frames(scores: np.ndarray, n_frames: int) -> np.ndarray:
    """Expand S segment scores to F frame scores (each frame takes its segment's score)."""
    scores = np.asarray(scores)
    if scores.ndim != 1 or scores.size == 0:
        raise ValueError(f"expected a non-empty 1-D array of segment scores, got shape {scores.shape}")
    bounds = segment_bounds(n_frames, scores.size)
    return np.repeat(scores, bounds[:, 1] - bounds[:, 0])


def resample_segments(features: np.ndarray, n_out: int) -> np.ndarray:
    """Resample [S, ...] segment features to [n_out, ...] by averaging the segments each covers.

    Output segment j averages input segments ``floor(j*S/n_out)`` up to (excluding)
    ``floor((j+1)*S/n_out)``, taking at least one, so S < n_out repeats segments and S > n_out
    merges neighbours; S == n_out returns a copy.
    """
    features = np.asarray(features)
    n_in = features.shape[0]
    if n_in < 1:
        raise ValueError("cannot resample an empty bag")
    if n_in == n_out:
        return features.copy()
    edges = (np.arange(n_out + 1) * n_in) // n_out
    out = np.empty((n_out, *features.shape[1:]), dtype=features.dtype)
    for j in range(n_out):
        start = min(edges[j], n_in - 1)
        end = max(edges[j + 1], start + 1)
        out[j] = features[start:end].mean(axis=0)
    return out
