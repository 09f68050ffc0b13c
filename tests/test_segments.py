"""Segment <-> frame arithmetic at the edges (F not divisible by S, F < S) and resampling."""

from __future__ import annotations

import numpy as np
import pytest

from edgevad.artifact.segments import resample_segments, segment_bounds, segment_scores_to_frames


def test_bounds_follow_the_floor_protocol():
    b = segment_bounds(100, 32)
    assert b[0].tolist() == [0, 3] and b[-1].tolist() == [96, 100]
    assert (b[1:, 0] == b[:-1, 1]).all()  # contiguous, no gaps, no overlaps
    i = 7
    assert b[i].tolist() == [i * 100 // 32, (i + 1) * 100 // 32]


def test_fewer_frames_than_segments_maps_every_frame_once():
    b = segment_bounds(5, 32)
    sizes = b[:, 1] - b[:, 0]
    assert sizes.sum() == 5 and set(sizes.tolist()) <= {0, 1}
    frames = segment_scores_to_frames(np.arange(32, dtype=float), 5)
    assert frames.shape == (5,)
    assert frames.tolist() == [float(i) for i in range(32) if sizes[i]]


def test_frame_expansion_length_and_values():
    scores = np.array([0.1, 0.9, 0.3])
    frames = segment_scores_to_frames(scores, 10)
    assert frames.tolist() == [0.1] * 3 + [0.9] * 3 + [0.3] * 4
    assert segment_scores_to_frames(scores, 0).shape == (0,)


@pytest.mark.parametrize("bad", [np.zeros(0), np.zeros((2, 2))])
def test_frame_expansion_rejects_bad_scores(bad):
    with pytest.raises(ValueError):
        segment_scores_to_frames(bad, 10)


def test_resample_31_33_to_32():
    x = np.arange(33, dtype=np.float32)[:, None].repeat(4, axis=1)
    y = resample_segments(x, 32)
    assert y.shape == (32, 4)
    assert y[0, 0] == 0.0 and y[-1, 0] == pytest.approx((31 + 32) / 2)  # last two merged
    z = resample_segments(x[:31], 32)
    assert z.shape == (32, 4) and z[0, 0] == 0 and z[-1, 0] == 30
    assert np.all(np.diff(z[:, 0]) >= 0)  # order kept, one segment repeated
    same = resample_segments(x[:32], 32)
    assert np.array_equal(same, x[:32]) and same is not x


def test_resample_empty_bag_is_refused():
    with pytest.raises(ValueError, match="empty"):
        resample_segments(np.zeros((0, 4)), 32)
