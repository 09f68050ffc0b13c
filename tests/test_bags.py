"""Feature-bag files: the real data's faults are handled, bad files fail with the video's name."""

from __future__ import annotations

import numpy as np
import pytest

from edgevad_export.data.bags import BagFileError, frame_labels, load_bags


def _write(path, features, n_segments, labels=None, **extra):
    n = len(n_segments)
    np.savez(path, features=np.asarray(features, np.float32), n_segments=np.asarray(n_segments),
             name=np.array([f"v{i}" for i in range(n)]),
             label=np.asarray(labels if labels is not None else [True] * n),
             category=np.array(["Arson"] * n), **extra)
    return path


def test_padding_empty_and_ragged_bags(tmp_path):
    f = np.random.default_rng(0).normal(size=(3, 33, 8)) + 5
    path = _write(tmp_path / "b.npz", f, [31, 0, 33])
    bags = load_bags(path)
    assert len(bags) == 2 and bags.skipped_empty == ["v1"]
    assert [b.shape for b in bags.features] == [(31, 8), (33, 8)]
    assert bags.stacked(32).shape == (2, 32, 8)


def test_nan_and_zero_rows_are_refused_by_name(tmp_path):
    f = np.ones((3, 32, 4))
    f[0, 5, 2] = np.nan
    f[2, 10] = 0.0
    f[1, 31] = 0.0  # padding past n_segments is allowed to be zero
    path = _write(tmp_path / "b.npz", f, [32, 31, 32])
    bags = load_bags(path)
    assert list(bags.names) == ["v1"]
    assert "NaN" in bags.refused["v0"] and "[10]" in bags.refused["v2"]
    with pytest.raises(BagFileError, match="video v0 has NaN"):
        load_bags(path, strict=True)


def test_missing_corrupt_and_malformed_files(tmp_path):
    with pytest.raises(BagFileError, match="does not exist"):
        load_bags(tmp_path / "nope.npz")
    good = _write(tmp_path / "g.npz", np.ones((1, 4, 2)), [4])
    bad = tmp_path / "truncated.npz"
    bad.write_bytes(good.read_bytes()[:50])
    with pytest.raises(BagFileError, match="Cannot read"):
        load_bags(bad)
    np.savez(tmp_path / "m.npz", features=np.ones((1, 4, 2)))
    with pytest.raises(BagFileError, match="lacks the arrays n_segments, name, label"):
        load_bags(tmp_path / "m.npz")
    with pytest.raises(BagFileError, match=r"features must be \[N, S, D\]"):
        load_bags(_write(tmp_path / "s.npz", np.ones((1, 4)), [4]))


def test_frame_labels_inclusive_intervals():
    lab = frame_labels(10, np.array([2, 4, -1, -1]))
    assert lab.tolist() == [0, 0, 1, 1, 1, 0, 0, 0, 0, 0]
    assert frame_labels(5, np.array([3, 99, 0, 0])).tolist() == [1, 0, 0, 1, 1]


def test_real_ucf_crime_splits(shared_data):
    train = load_bags(shared_data / "ucf_crime_r3d34" / "train.npz")
    assert len(train.skipped_empty) == 106
    assert set(train.refused) == {"Assault023_x264", "Normal_Videos322_x264"}
    assert len(train) == 1610 - 106 - 2 and train.feature_dim == 512
    dev = load_bags(shared_data / "ucf_crime_r3d34" / "dev.npz")
    assert len(dev) == 151 - 14 and dev.n_frames is not None and not dev.refused


def test_select_and_concat_keep_arrays_aligned(tmp_path):
    from edgevad_export.data.bags import concat_bags

    f = np.arange(3 * 4 * 2, dtype=np.float32).reshape(3, 4, 2) + 1
    a = load_bags(_write(tmp_path / "a.npz", f, [4, 4, 4], labels=[True, False, True],
                         n_frames=np.array([10, 20, 30]),
                         anomaly_intervals=np.array([[1, 2], [-1, -1], [3, 4]])))
    b = load_bags(_write(tmp_path / "b.npz", f[:1], [4], labels=[False],
                         n_frames=np.array([40]), anomaly_intervals=np.array([[0, 1, 5, 6]])))
    picked = a.select([2, 0])
    assert list(picked.names) == ["v2", "v0"] and picked.n_frames.tolist() == [30, 10]
    assert np.array_equal(picked.features[0], a.features[2])
    both = concat_bags(picked, b)
    assert len(both) == 3 and both.labels.tolist() == [True, True, False]
    assert both.anomaly_intervals.tolist() == [[3, 4, -1, -1], [1, 2, -1, -1], [0, 1, 5, 6]]
