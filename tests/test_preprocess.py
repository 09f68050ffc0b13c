"""Frame preprocessing follows InputGeometry exactly; video reading fails loudly on bad files."""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np
import pytest
from video_files import write_video

from edgevad.artifact.zoo import (
    C3D_GEOMETRY,
    FLOW_GEOMETRY,
    HARA_R3D_GEOMETRY,
    I3D_GEOMETRY,
    InputGeometry,
)
from edgevad.errors import EdgevadError
from edgevad.media.preprocess import preprocess_frame, resized_shape
from edgevad.media.video import VideoError, VideoReader, read_video, video_info


def _solid(h, w, bgr):
    frame = np.empty((h, w, 3), np.uint8)
    frame[:] = bgr
    return frame


def test_shorter_side_resize_and_centre_crop_shape():
    # 360 x 480: shorter side 112 -> 112 x 149, centre crop 112 x 112
    assert resized_shape(360, 480, HARA_R3D_GEOMETRY) == (112, 149)
    assert resized_shape(480, 360, HARA_R3D_GEOMETRY) == (149, 112)
    frame = np.zeros((360, 480, 3), np.uint8)
    assert preprocess_frame(frame, HARA_R3D_GEOMETRY).shape == (3, 112, 112)
    assert preprocess_frame(frame.transpose(1, 0, 2).copy(), HARA_R3D_GEOMETRY).shape == (3, 112, 112)
    # exact (h, w) resize then crop; None: straight to size, whatever the aspect
    assert preprocess_frame(frame, C3D_GEOMETRY).shape == (3, 112, 112)
    out = preprocess_frame(np.zeros((240, 360, 3), np.uint8), I3D_GEOMETRY)
    assert out.shape == (3, 224, 224) and out.dtype == np.float32 and out.flags.c_contiguous


def test_centre_crop_takes_the_middle():
    # left third blue, middle third green, right third red: a centre crop of a 112 x 336 frame
    # resized with shorter side 112 keeps only the green middle.
    frame = np.zeros((112, 336, 3), np.uint8)
    frame[:, :112] = (255, 0, 0)
    frame[:, 112:224] = (0, 255, 0)
    frame[:, 224:] = (0, 0, 255)
    g = replace(HARA_R3D_GEOMETRY, mean=(0.0, 0.0, 0.0))
    out = preprocess_frame(frame, g)
    assert out.shape == (3, 112, 112)
    np.testing.assert_array_equal(out[0], 0)    # R
    np.testing.assert_array_equal(out[1], 255)  # G
    np.testing.assert_array_equal(out[2], 0)    # B


def test_colour_order_swap():
    frame = _solid(20, 30, (10, 20, 30))  # B, G, R
    base = InputGeometry(clip_len=1, stride=1, size=(20, 30), resize=None)
    rgb = preprocess_frame(frame, base)
    bgr = preprocess_frame(frame, replace(base, color="bgr"))
    assert rgb[:, 0, 0].tolist() == [30, 20, 10]
    assert bgr[:, 0, 0].tolist() == [10, 20, 30]
    gray = preprocess_frame(frame, replace(base, color="gray", channels=1, mean=(0.0,), std=(1.0,)))
    assert gray.shape == (1, 20, 30)
    assert gray[0, 0, 0] == pytest.approx(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)[0, 0])


def test_normalisation_values_at_known_pixels():
    frame = np.zeros((8, 8, 3), np.uint8)
    frame[0, 0] = (0, 0, 0)
    frame[0, 1] = (255, 255, 255)
    frame[0, 2] = (0, 51, 255)  # B=0, G=51, R=255
    g = replace(I3D_GEOMETRY, size=(8, 8))  # (p / 255 - 0.5) / 0.5 in RGB
    out = preprocess_frame(frame, g)
    np.testing.assert_allclose(out[:, 0, 0], [-1, -1, -1], atol=1e-6)
    np.testing.assert_allclose(out[:, 0, 1], [1, 1, 1], atol=1e-6)
    np.testing.assert_allclose(out[:, 0, 2], [1, 51 / 255 * 2 - 1, -1], atol=1e-6)
    h = replace(HARA_R3D_GEOMETRY, resize=None, crop="none", size=(8, 8))  # p - mean, no std
    out = preprocess_frame(frame, h)
    np.testing.assert_allclose(out[:, 0, 2], [255 - 114.7748, 51 - 107.7354, 0 - 99.4750], atol=1e-4)
    s = InputGeometry(clip_len=1, stride=1, size=(8, 8), scale=2.0, mean=(1.0, 2.0, 3.0),
                      std=(2.0, 4.0, 8.0))
    out = preprocess_frame(frame, s)
    np.testing.assert_allclose(out[:, 0, 2], [(510 - 1) / 2, (102 - 2) / 4, (0 - 3) / 8], rtol=1e-6)


def test_matches_the_float_reference_and_fills_out():
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (240, 360, 3), dtype=np.uint8)
    g = HARA_R3D_GEOMETRY
    ref = cv2.resize(frame, (168, 112), interpolation=cv2.INTER_LINEAR)[:, 28:140, ::-1]
    ref = (ref.astype(np.float64) * g.scale - np.array(g.mean)) / np.array(g.std)
    buf = np.zeros((3, 4, 112, 112), np.float32)  # a clip buffer [C, T, h, w]
    got = preprocess_frame(frame, g, out=buf[:, 2])
    np.testing.assert_allclose(got, ref.transpose(2, 0, 1), atol=1e-4)
    np.testing.assert_array_equal(buf[:, 2], got)
    assert not buf[:, 1].any()


@pytest.mark.parametrize("frame, words", [
    (None, "None"),
    (np.zeros((4, 4), np.uint8), "dimensions"),
    (np.zeros((4, 4, 4), np.uint8), "3 channels"),
    (np.zeros((4, 4, 3), np.float32), "uint8"),
    ([[1, 2, 3]], "numpy array"),
])
def test_bad_frames_raise(frame, words):
    with pytest.raises(ValueError, match=words):
        preprocess_frame(frame, I3D_GEOMETRY)


def test_bad_geometry_raises():
    with pytest.raises(ValueError, match="motion"):
        preprocess_frame(np.zeros((8, 8, 3), np.uint8), FLOW_GEOMETRY)
    with pytest.raises(ValueError, match="color"):
        preprocess_frame(np.zeros((8, 8, 3), np.uint8), replace(I3D_GEOMETRY, color="hsv"))
    with pytest.raises(ValueError, match="smaller"):
        preprocess_frame(np.zeros((8, 8, 3), np.uint8), replace(C3D_GEOMETRY, resize=(64, 64)))


def _write_video(path, n, size=(48, 64)):
    h, w = size
    write_video(path, (_solid(h, w, (i * 5 % 256, 100, 200)) for i in range(n)))


def test_read_video_and_info(tmp_path):
    path = tmp_path / "v.mp4"
    _write_video(path, 12)
    info = video_info(path)
    assert (info.n_frames, info.width, info.height) == (12, 64, 48)
    assert info.fps == pytest.approx(10)
    frames = list(read_video(path))
    assert len(frames) == 12 and frames[0].shape == (48, 64, 3) and frames[0].dtype == np.uint8


def test_unreadable_videos_raise_naming_the_file(tmp_path):
    bad = tmp_path / "corrupt.mp4"
    bad.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(VideoError, match="corrupt.mp4") as err:
        list(read_video(bad))
    assert isinstance(err.value, EdgevadError)
    with pytest.raises(VideoError, match="does not exist"):
        VideoReader(tmp_path / "missing.mp4")


def test_truncated_video_reports_decoded_vs_declared(tmp_path):
    # An MJPG AVI declares its frame count in the header: cut the file in half and decoding stops
    # at about half of it.
    path = tmp_path / "long.avi"
    rng = np.random.default_rng(0)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for _ in range(40):
        writer.write(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8))
    writer.release()
    data = path.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: len(data) // 2])
    reader = VideoReader(cut)
    assert reader.info.n_frames == 40
    with pytest.raises(VideoError, match=r"cut\.avi stopped early: \d+ frames decoded of 40 declared"):
        list(reader)
    assert 0 < reader.decoded < 40
    assert len(list(read_video(path))) == 40
