"""Calibration sets: sampled across videos, preprocessed exactly as the runtime does, saved with
their provenance, refused for the wrong geometry, read again and again by ONNX Runtime's protocol.

Videos are written here with OpenCV (a moving square on a gradient), so nothing needs ../shared.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from video_files import gradient_frames, write_video

from edgevad.artifact import zoo
from edgevad.media.motion import FlowEstimator, encode_flow
from edgevad.media.preprocess import preprocess_frame
from edgevad.media.video import VideoReader
from edgevad_calibration import (
    CalibrationError,
    CalibrationSet,
    build_from_bags,
    build_from_videos,
    collect_videos,
    is_calibration_file,
    load_calibration,
)
from edgevad_calibration.build import spread_starts

R3D = zoo.get_backbone("r3d18").geometry
I3D = zoo.get_backbone("i3d").geometry
FLOW = zoo.get_backbone("motion-r3d18").geometry


def _write_video(path: Path, n: int, size=(120, 160), seed=0) -> Path:
    """A colour gradient with noise and a bright square moving right."""
    w = size[1]

    def frames():
        for i, frame in enumerate(gradient_frames(n, size, seed, drift=3, noise=20)):
            frame[30:60, (i * 4) % (w - 30):(i * 4) % (w - 30) + 30] = 240
            yield frame

    return write_video(path, frames())


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> list[Path]:
    d = tmp_path_factory.mktemp("videos")
    return [_write_video(d / "a.mp4", 40, seed=1), _write_video(d / "b.mp4", 24, (90, 150), 2)]


def _decoded(path: Path) -> list[np.ndarray]:
    with VideoReader(path) as r:
        return list(r)


def test_spread_starts_cover_the_video():
    assert spread_starts(100, 16, 3) == [0, 42, 84]
    assert spread_starts(10, 16, 2) == [0]  # shorter than a clip: one padded clip
    assert spread_starts(100, 16, 1) == [42]


def test_pixels_are_the_runtimes_exactly(videos):
    cset = build_from_videos(videos, R3D, samples=5)
    assert cset.role == "backbone" and cset.n_samples == 5 and cset.input_names == ["clip"]
    assert cset.arrays["clip"].dtype == np.uint8  # stored compactly, after resize and crop
    assert cset.sample_shape("clip") == (3, 16, 112, 112)
    starts = [s["clip_starts"] for s in cset.sources]
    assert starts == [[0, 12, 24], [0, 8]]  # 3 + 2 clips, spread over each video
    assert [s["sha256"] for s in cset.sources][0] == __import__(
        "edgevad.fetch.hashing", fromlist=["x"]).sha256_file(videos[0])
    frames = _decoded(videos[1])
    want = np.stack([preprocess_frame(f, R3D) for f in frames[8:24]], axis=1)
    np.testing.assert_array_equal(cset.sample(4)["clip"][0], want)
    # and at I3D's geometry (resize without crop, [-1, 1])
    i3d = build_from_videos(videos[:1], I3D, samples=1)
    frames = _decoded(videos[0])
    want = np.stack([preprocess_frame(f, I3D) for f in frames[12:28]], axis=1)
    np.testing.assert_array_equal(i3d.sample(0)["clip"][0], want)


def test_flow_clips_match_a_running_stream(videos):
    cset = build_from_videos(videos[:1], FLOW, samples=2)
    assert cset.role == "motion" and cset.input_names == ["flow"]
    x = cset.sample(1)["flow"][0]
    assert x.shape == (2, 16, 112, 112) and x.dtype == np.float32
    frames = _decoded(videos[0])
    est = FlowEstimator(size=(112, 112))
    maps = [encode_flow(est(f), FLOW.flow_bound) for f in frames[23:40]]
    np.testing.assert_allclose(x, np.stack(maps[1:], axis=1), atol=0)
    assert np.abs(x).max() > 0.01  # the square moves
    first = cset.sample(0)["flow"][0]
    assert np.all(first[:, 0] == 0)  # a clip at frame 0 starts with zero flow, as a stream does


def test_save_load_provenance_and_corruption(videos, tmp_path):
    cset = build_from_videos(videos, R3D, samples=3, method="percentile")
    path = cset.save(tmp_path / "calib")
    assert path.name == "calib.npz" and is_calibration_file(path)
    back = load_calibration(path)
    assert back.data_sha256 == cset.data_sha256 and back.method == "percentile"
    assert back.geometry == cset.geometry and back.input_geometry() == R3D and back.n_samples == 3
    rec = back.record("calib.npz")
    assert rec["samples"] == 3 and rec["inputs"] == {"clip": [3, 16, 112, 112]}
    assert [s["name"] for s in rec["sources"]] == ["a.mp4", "b.mp4"]
    # same meta, other pixels: the stored hash catches it
    with np.load(path) as z:
        meta, clip = z["meta"], z["input/clip"].copy()
    clip[0, 0, 0, 0, 0] ^= 1
    np.savez(tmp_path / "bad.npz", meta=meta, **{"input/clip": clip})
    with pytest.raises(CalibrationError, match="corrupt"):
        load_calibration(tmp_path / "bad.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    assert not is_calibration_file(tmp_path / "junk.npz")
    with pytest.raises(CalibrationError, match="not a readable calibration set"):
        load_calibration(tmp_path / "junk.npz")


def test_wrong_geometry_is_named(videos):
    cset = build_from_videos(videos[:1], R3D, samples=1)
    cset.check_geometry(replace(R3D, stride=8))  # the stride only moves clip starts
    with pytest.raises(CalibrationError, match=r"size: set \[112, 112\], stage \[224, 224\]"):
        cset.check_geometry(I3D, "backbone i3d")
    with pytest.raises(CalibrationError, match="clip_len: set 16, stage 64"):
        cset.check_geometry(replace(R3D, clip_len=64))
    with pytest.raises(CalibrationError, match=r"takes \['batch', 3, 16, 224, 224\]"):
        cset.check_inputs({"clip": ("batch", 3, 16, 224, 224)})
    with pytest.raises(CalibrationError, match="inputs"):
        cset.check_inputs({"features": ("batch", 32, 512)})
    cset.check_inputs({"clip": ("batch", 3, 16, 112, 112)})


def test_reader_is_re_iterable(videos):
    cset = build_from_videos(videos, R3D, samples=5)
    reader = cset.reader(batch_size=2)
    assert len(reader) == 3
    for _ in range(2):  # ONNX Runtime's protocol: get_next until None, then a fresh pass
        sizes = []
        while (feed := reader.get_next()) is not None:
            sizes.append(feed["clip"].shape[0])
        assert sizes == [2, 2, 1]
    first = [f["clip"] for f in reader]
    again = [f["clip"] for f in reader]
    assert len(first) == 3 and all(np.array_equal(a, b) for a, b in zip(first, again))
    reader.set_range(1, 3)
    assert [f["clip"].shape[0] for f in reader] == [2]


def test_bags_set_and_bad_inputs(tmp_path, synthetic_bags):
    bags = synthetic_bags(n=10, dim=8)
    S = max(len(f) for f in bags.features)
    feats = np.zeros((len(bags), S, 8), np.float32)
    for i, f in enumerate(bags.features):
        feats[i, :len(f)] = f
    path = tmp_path / "bags.npz"
    np.savez(path, features=feats, n_segments=[len(f) for f in bags.features], name=bags.names,
             label=bags.labels, category=bags.categories)
    cset = build_from_bags(path, segments=32, samples=4)
    assert cset.role == "head" and cset.arrays["features"].shape == (4, 32, 8)
    assert cset.sampler["labels"] == {"anomalous": 2, "normal": 2}
    assert len(cset.sources[0]["bags"]) == 4
    with pytest.raises(CalibrationError, match="does not exist"):
        collect_videos([tmp_path / "nope.mp4"])
    with pytest.raises(CalibrationError, match="no video"):
        collect_videos([tmp_path])
    (tmp_path / "broken.mp4").write_bytes(b"\0" * 100)
    with pytest.raises(CalibrationError, match="broken.mp4"):
        build_from_videos([tmp_path / "broken.mp4"], R3D, samples=1)
    with pytest.raises(CalibrationError, match="method"):
        CalibrationSet("head", {"x": np.zeros((1, 2), np.float32)}, {"x": "float32"},
                       method="kl")


def test_calibrate_command(videos, tmp_path):
    from typer.testing import CliRunner

    from edgevad.cli.main import app

    out = tmp_path / "set.npz"
    result = CliRunner().invoke(app, ["calibrate", str(videos[0]), str(videos[1]), "-o", str(out),
                                      "--backbone", "r3d18", "--samples", "3", "--method",
                                      "entropy"])
    assert result.exit_code == 0, result.output
    cset = load_calibration(out)
    assert cset.n_samples == 3 and cset.method == "entropy" and cset.input_geometry() == R3D
    result = CliRunner().invoke(app, ["calibrate", str(videos[0]), "-o", str(tmp_path / "m"),
                                      "--model", "dmrm", "--stage", "motion", "--samples", "1"])
    assert result.exit_code == 0, result.output
    assert load_calibration(tmp_path / "m.npz").role == "motion"
