"""edgevad.media.motion: DIS flow, flow encoding and motion boxes, on synthetic and real (Ped2) frames."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgevad.media.motion import (
    FLOW_BOUND,
    FLOW_STATISTICS,
    FlowEstimator,
    MotionBox,
    encode_flow,
    flow_clip,
    flow_magnitude,
    flow_statistics,
    motion_boxes,
)

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
PED2_TEST_01 = DATA / "ped2" / "testing" / "01.mp4"


def texture(h: int, w: int, seed: int, lo: int, hi: int) -> np.ndarray:
    noise = np.random.default_rng(seed).integers(0, 256, (h, w)).astype(np.uint8)
    return cv2.normalize(cv2.GaussianBlur(noise, (0, 0), 1.5), None, lo, hi, cv2.NORM_MINMAX)


@pytest.fixture(scope="module")
def shifted_pair():
    """A textured 40x40 square on a static textured background, moved 3 px to the right."""
    bg, square = texture(112, 112, 1, 60, 120), texture(40, 40, 2, 140, 250)
    a, b = bg.copy(), bg.copy()
    a[36:76, 30:70] = square
    b[36:76, 33:73] = square
    return a, b


def test_shift_gives_flow_inside_and_none_outside(shifted_pair):
    a, b = shifted_pair
    est = FlowEstimator()
    assert not est(a).any()  # first frame: zero flow
    flow = est(b)
    assert flow.shape == (112, 112, 2) and flow.dtype == np.float32
    dx, dy = np.median(flow[42:70, 39:64].reshape(-1, 2), axis=0)
    assert abs(dx - 3.0) < 0.3 and abs(dy) < 0.3
    outside = np.ones((112, 112), bool)
    outside[26:86, 20:83] = False  # the square's path plus a 10 px margin
    mag = flow_magnitude(flow)[outside]
    assert np.median(mag) < 0.1 and np.percentile(mag, 95) < 0.5
    est.reset()
    assert not est(b).any()


def test_box_around_the_moving_square(shifted_pair):
    a, b = shifted_pair
    est = FlowEstimator()
    est(cv2.cvtColor(a, cv2.COLOR_GRAY2BGR))  # BGR and grey frames both work
    flow = est(cv2.cvtColor(b, cv2.COLOR_GRAY2BGR))
    boxes = motion_boxes(flow, (224, 224, 3))
    assert len(boxes) == 1
    box = boxes[0]
    moved = (60, 72, 146, 152)  # both positions of the square, in 224x224 frame pixels
    ix = max(0, min(box.x2, moved[2]) - max(box.x1, moved[0]))
    iy = max(0, min(box.y2, moved[3]) - max(box.y1, moved[1]))
    union = box.width * box.height + 86 * 80 - ix * iy
    assert ix * iy / union > 0.5
    assert 2.0 < box.magnitude < 3.5
    assert box.to_dict() == {"x1": box.x1, "y1": box.y1, "x2": box.x2, "y2": box.y2,
                             "magnitude": box.magnitude, "area": box.area}


def test_working_size_and_flow_clip(shifted_pair):
    a, b = shifted_pair
    big = [cv2.resize(f, (448, 224), interpolation=cv2.INTER_LINEAR) for f in (a, b, b)]
    clip = flow_clip(big)  # resized back to the 112x112 working size: a 3 px shift again
    assert clip.shape == (2, 3, 112, 112) and clip.dtype == np.float32
    assert not clip[:, 0].any()  # no previous frame
    assert np.median(clip[0, 1, 42:70, 39:64]) * FLOW_BOUND == pytest.approx(3.0, abs=0.3)
    assert np.abs(clip[:, 2]).max() < 0.05  # identical frames: no motion
    est = FlowEstimator(size=(56, 64))
    assert est(big[0]).shape == (56, 64, 2)


def test_encode_flow_range():
    flow = np.zeros((4, 5, 2), np.float32)
    flow[0, 0] = (50.0, -50.0)
    flow[1, 1] = (10.0, -5.0)
    enc = encode_flow(flow, bound=20.0)
    assert enc.shape == (2, 4, 5) and enc.dtype == np.float32
    assert enc.min() == -1.0 and enc.max() == 1.0
    assert enc[:, 1, 1].tolist() == [0.5, -0.25]
    assert enc[:, 2, 2].tolist() == [0.0, 0.0]
    assert encode_flow(flow.astype(np.float64), bound=100.0)[0, 0, 0] == pytest.approx(0.5)


def test_boxes_on_synthetic_magnitude():
    mag = np.zeros((112, 112), np.float32)
    mag[10:40, 10:30] = 3.0  # large, slow-ish
    mag[60:75, 70:90] = 5.0  # smaller, faster
    mag[100:102, 100:102] = 5.0  # a speck: removed by the opening
    boxes = motion_boxes(mag, (240, 360), rel_threshold=0.2)
    assert len(boxes) == 2
    assert all(isinstance(b, MotionBox) for b in boxes)
    big, small = boxes
    sx, sy = 360 / 112, 240 / 112
    assert (big.x1, big.y1) == (int(10 * sx), int(10 * sy))
    assert (big.x2, big.y2) == (int(np.ceil(30 * sx)), int(np.ceil(40 * sy)))
    assert big.area > small.area and big.magnitude == pytest.approx(3.0, abs=0.1)
    by_speed = motion_boxes(mag, (240, 360), rel_threshold=0.2, sort_by="magnitude")
    assert by_speed[0].magnitude == pytest.approx(5.0, abs=0.1)
    assert len(motion_boxes(mag, (240, 360), rel_threshold=0.2, max_boxes=1)) == 1
    assert len(motion_boxes(mag, (240, 360), rel_threshold=0.8)) == 1  # only the fast one
    assert len(motion_boxes(mag, (240, 360), rel_threshold=0.2, min_area=0.04)) == 1
    assert motion_boxes(np.full((112, 112), 0.1, np.float32), (240, 360)) == []


@pytest.mark.skipif(not PED2_TEST_01.is_file(), reason=f"real data not found at {DATA}")
def test_real_ped2_pair_boxes_the_cyclist():
    cap = cv2.VideoCapture(str(PED2_TEST_01))
    frames = [cap.read()[1] for _ in range(101)][99:]  # decode in order: seeking is inexact
    cap.release()
    assert all(f is not None and f.shape == (240, 360, 3) for f in frames)
    est = FlowEstimator()
    est(frames[0])
    flow = est(frames[1])
    boxes = motion_boxes(flow, frames[1].shape)
    assert len(boxes) >= 1
    for b in boxes:
        assert 0 <= b.x1 < b.x2 <= 360 and 0 <= b.y1 < b.y2 <= 240
        assert b.magnitude > 0.25
    # frame 100: a cyclist rides along the walkway at about (90, 130)
    assert any(b.x1 <= 90 < b.x2 and b.y1 <= 130 < b.y2 for b in boxes)


@pytest.mark.skipif(not PED2_TEST_01.is_file(), reason=f"real data not found at {DATA}")
def test_flow_statistics_are_numpys_percentiles_on_real_ped2_flow():
    """The one implementation of the motion-prior's per-frame statistics (np.partition inside)
    gives np.percentile's numbers to the bit, frame by frame and for a stack, on real flow at
    Ped2's native 240x360 (frames 96-103 of testing/01: a cyclist among walkers)."""
    cap = cv2.VideoCapture(str(PED2_TEST_01))
    frames = [cap.read()[1] for _ in range(104)][96:]
    cap.release()
    est = FlowEstimator(size=(240, 360))
    mags = np.stack([flow_magnitude(est(f)) for f in frames])[1:]
    flat = mags.reshape(len(mags), -1)
    want = np.concatenate([np.percentile(flat, (50, 90, 95, 99, 99.9), axis=1).T,
                           flat.max(axis=1, keepdims=True), flat.mean(axis=1, keepdims=True)],
                          axis=1)
    got = flow_statistics(mags)
    assert got.shape == (7, len(FLOW_STATISTICS)) and got.dtype == np.float64
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(flow_statistics(mags[3]), want[3])
    np.testing.assert_array_equal(flow_statistics(mags.astype(np.float16)),
                                  flow_statistics(mags.astype(np.float16).astype(np.float32)))
    assert FLOW_STATISTICS == ("p50", "p90", "p95", "p99", "p99.9", "max", "mean")
    assert (np.diff(got[:, :6], axis=1) >= 0).all() and got[:, 5].max() > 1.0
    tiny = flow_statistics(np.array([[0.0, 2.0]], np.float32))  # 2 pixels: interpolated
    np.testing.assert_allclose(tiny, [1.0, 1.8, 1.9, 1.98, 1.998, 2.0, 1.0])


def test_bad_inputs_raise():
    est = FlowEstimator()
    with pytest.raises(ValueError, match="uint8"):
        est(np.zeros((112, 112), np.float32))
    with pytest.raises(ValueError, match="shape"):
        est(np.zeros((112, 112, 4), np.uint8))
    with pytest.raises(ValueError, match="numpy"):
        est([[0, 1], [2, 3]])
    with pytest.raises(ValueError, match="preset"):
        FlowEstimator(preset="slow")
    with pytest.raises(ValueError, match="size"):
        FlowEstimator(size=(4, 4))
    with pytest.raises(ValueError, match=r"\[H, W, 2\]"):
        encode_flow(np.zeros((2, 8, 8), np.float32))
    with pytest.raises(ValueError, match="float"):
        encode_flow(np.zeros((8, 8, 2), np.int16))
    with pytest.raises(ValueError, match="bound"):
        encode_flow(np.zeros((8, 8, 2), np.float32), bound=0)
    with pytest.raises(ValueError, match="transpose"):
        motion_boxes(np.zeros((2, 8, 8), np.float32), (8, 8))
    with pytest.raises(ValueError, match="float"):
        motion_boxes(np.zeros((8, 8), np.uint8), (8, 8))
    with pytest.raises(ValueError, match="frame_shape"):
        motion_boxes(np.zeros((8, 8), np.float32), (8,))
    with pytest.raises(ValueError, match="fraction"):
        motion_boxes(np.zeros((8, 8), np.float32), (8, 8), min_area=50)
    with pytest.raises(ValueError, match="sort_by"):
        motion_boxes(np.zeros((8, 8), np.float32), (8, 8), sort_by="size")
    with pytest.raises(ValueError, match="at least one"):
        flow_clip([])
    with pytest.raises(ValueError, match=r"\[H, W\]"):
        flow_statistics(np.zeros(8, np.float32))
    with pytest.raises(ValueError, match="float"):
        flow_statistics(np.zeros((8, 8), np.uint8))


def test_motion_is_torch_free():
    code = "import sys, edgevad.media.motion; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_flow_bound_in_the_zoo_matches_the_encoder():
    from edgevad.artifact.zoo import get_backbone

    assert get_backbone("motion-r3d18").geometry.flow_bound == FLOW_BOUND
