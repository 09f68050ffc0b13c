"""Dense optical flow and motion boxes for the motion stream and for localisation (numpy + OpenCV).

This runs on the camera, next to the appearance backbone: no torch. :class:`FlowEstimator`
turns a stream of frames into DIS optical flow at a small working size (the motion network's
112x112 input), :func:`encode_flow` maps flow to the network's [-1, 1] range, and
:func:`motion_boxes` turns flow magnitude into boxes around moving objects, in the original
frame's coordinates, so an anomaly score can point at what moved.
:func:`flow_statistics` condenses a frame's flow magnitude into the few numbers (percentiles,
maximum, mean) that the ``motion-prior`` model scores: one implementation, used by the runtime
and by ``benchmarks/ped2_weak_split.py`` alike, so the benchmark measures what the camera runs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Iterable

import cv2
import numpy as np

__all__ = [
    "FLOW_BOUND", "FLOW_STATISTICS", "PRESETS", "STATISTIC_PERCENTILES", "FlowEstimator",
    "MotionBox", "encode_flow", "flow_clip", "flow_magnitude", "flow_statistics", "motion_boxes",
]

FLOW_BOUND = 5.0
"""Default clip bound, in working-size pixels per frame. The two-stream convention of 20 px is
for 224-256 px frames; at the 112 px working size real Ped2 motion is under ~1.5 px/frame for
walkers and a few px for bikes and carts, so 20 would squeeze it into +-0.07 and waste the range
that INT8 calibration has. Recorded in the manifest through ``InputGeometry.flow_bound``."""

PRESETS = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}


def _as_gray(frame: np.ndarray) -> np.ndarray:
    """uint8 grey image from an H x W grey or H x W x 3 BGR uint8 frame."""
    if not isinstance(frame, np.ndarray):
        raise ValueError(f"frame must be a numpy array, got {type(frame).__name__}")
    if frame.dtype != np.uint8:
        raise ValueError(f"frame must be uint8 (as decoded by OpenCV), got dtype {frame.dtype}")
    if frame.ndim == 3 and frame.shape[2] == 1:
        frame = frame[:, :, 0]
    if frame.ndim == 2:
        gray = frame
    elif frame.ndim == 3 and frame.shape[2] == 3:
        gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    else:
        raise ValueError(f"frame must be H x W (grey) or H x W x 3 (BGR), got shape {frame.shape}")
    if gray.shape[0] < 2 or gray.shape[1] < 2:
        raise ValueError(f"frame is too small: {frame.shape}")
    return gray


class FlowEstimator:
    """Stateful DIS optical flow between consecutive frames at a fixed working size.

    Frames are converted to grey and resized to ``size`` (h, w) before the flow, so the cost is
    fixed whatever the camera resolution and the flow is in working-size pixels per frame, the
    units the motion network sees. The previous grey frame is the only state: the first frame
    after construction or :meth:`reset` gets zero flow.

    ``finest_scale`` overrides the preset's finest pyramid level (None keeps it). ULTRAFAST's own
    level 2 solves at a quarter of the working size, 28x28 at 112x112, which smears a crowd of
    pedestrians into one blob; level 1 (56x56) keeps a cyclist apart from them on UCSD Ped2 and
    still costs well under a millisecond per pair.
    """

    def __init__(
        self,
        size: tuple[int, int] = (112, 112),
        preset: str = "ultrafast",
        finest_scale: int | None = 1,
    ):
        if len(size) != 2 or min(size) < 8:
            raise ValueError(f"size must be (height, width), both >= 8, got {size!r}")
        if preset not in PRESETS:
            raise ValueError(f"preset must be one of {', '.join(PRESETS)}, got {preset!r}")
        self.size = (int(size[0]), int(size[1]))
        self.preset = preset
        self._dis = cv2.DISOpticalFlow.create(PRESETS[preset])
        if finest_scale is not None:
            if not 0 <= finest_scale <= 4:
                raise ValueError(f"finest_scale must be in 0..4, got {finest_scale}")
            self._dis.setFinestScale(int(finest_scale))
        self._prev: np.ndarray | None = None

    def reset(self) -> None:
        """Forget the previous frame (call at a cut, a seek or a new stream)."""
        self._prev = None

    def prepare(self, frame: np.ndarray) -> np.ndarray:
        """The grey working-size image the flow is computed on."""
        gray = _as_gray(frame)
        h, w = self.size
        if gray.shape != (h, w):
            gray = cv2.resize(gray, (w, h), interpolation=cv2.INTER_AREA)
        return np.ascontiguousarray(gray)

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        """Flow from the previous frame to this one: float32 [h, w, 2] (dx, dy), pixels/frame."""
        gray = self.prepare(frame)
        if self._prev is None:
            flow = np.zeros((*self.size, 2), np.float32)
        else:
            # flow=None: OpenCV allocates the output; its stubs type the argument as required
            flow = self._dis.calc(self._prev, gray, None)  # type: ignore[call-overload]
        self._prev = gray
        return flow


def encode_flow(flow: np.ndarray, bound: float = FLOW_BOUND) -> np.ndarray:
    """[h, w, 2] flow -> float32 [2, h, w] in [-1, 1]: clipped to +-``bound``, divided by it.

    A fixed bound (not per-clip min/max) keeps one scale across clips and cameras, so a static
    scene stays all-zero instead of having its noise stretched to full range; the rare flow
    beyond the bound is an outlier or a cut. Zero motion maps to zero, which suits the network's
    zero padding.
    """
    flow = np.asarray(flow)
    if flow.ndim != 3 or flow.shape[2] != 2:
        raise ValueError(f"flow must be [H, W, 2] (dx, dy), got shape {flow.shape}")
    if not np.issubdtype(flow.dtype, np.floating):
        raise ValueError(f"flow must be a float array, got dtype {flow.dtype}")
    if not bound > 0:
        raise ValueError(f"bound must be > 0, got {bound}")
    out = np.clip(flow, -bound, bound).astype(np.float32) / np.float32(bound)
    return np.ascontiguousarray(out.transpose(2, 0, 1))


def flow_clip(
    frames: Iterable[np.ndarray],
    *,
    estimator: FlowEstimator | None = None,
    bound: float = FLOW_BOUND,
) -> np.ndarray:
    """Encoded flow of a clip, float32 [2, T, h, w], one map per frame (offline use).

    With a fresh estimator the first map is zero; pass the estimator of the previous clip to
    continue a stream exactly as live inference does.
    """
    est = estimator if estimator is not None else FlowEstimator()
    maps = [encode_flow(est(frame), bound) for frame in frames]
    if not maps:
        raise ValueError("flow_clip needs at least one frame")
    return np.stack(maps, axis=1)


def flow_magnitude(flow: np.ndarray) -> np.ndarray:
    """Per-pixel speed (float32 [h, w]) of [h, w, 2] flow."""
    flow = np.asarray(flow, dtype=np.float32)
    if flow.ndim != 3 or flow.shape[2] != 2:
        raise ValueError(f"flow must be [H, W, 2] (dx, dy), got shape {flow.shape}")
    return np.sqrt(flow[..., 0] ** 2 + flow[..., 1] ** 2)


STATISTIC_PERCENTILES: tuple[float, ...] = (50.0, 90.0, 95.0, 99.0, 99.9)
"""Percentiles of a frame's flow magnitude that :func:`flow_statistics` reports, in order."""

FLOW_STATISTICS: tuple[str, ...] = (
    *(f"p{q:g}" for q in STATISTIC_PERCENTILES), "max", "mean")
"""Names of :func:`flow_statistics`' columns, in order (``p50 ... p99.9, max, mean``); an
artifact's manifest records them and the runtime refuses any other list."""


def flow_statistics(magnitude: np.ndarray) -> np.ndarray:
    """Per-frame statistics of flow magnitude: ``[h, w] -> [7]`` or ``[n, h, w] -> [n, 7]``
    float64, the columns of :data:`FLOW_STATISTICS` (working-size pixels per frame).

    The magnitude is read as float32. Percentiles are ``np.percentile``'s default (linear
    interpolation between the two nearest ranks, in float64), taken from one ``np.partition``
    per call and interpolated with numpy's own formula, so the numbers are ``np.percentile``'s
    to the bit (``tests/test_motion.py`` checks it); maximum and mean are float32 reductions.
    """
    mag = np.asarray(magnitude)
    if mag.ndim not in (2, 3) or mag.shape[-1] < 1 or mag.shape[-2] < 1:
        raise ValueError(f"magnitude must be [H, W] or [N, H, W], got shape {mag.shape}")
    if not np.issubdtype(mag.dtype, np.floating):
        raise ValueError(f"magnitude must be a float array, got dtype {mag.dtype}")
    flat = mag.reshape(-1, mag.shape[-2] * mag.shape[-1]).astype(np.float32, copy=False)
    n = flat.shape[1]
    pos = np.asarray(STATISTIC_PERCENTILES, dtype=np.float64) / 100.0 * (n - 1)
    lo = np.floor(pos).astype(np.intp)
    hi = np.minimum(lo + 1, n - 1)
    t = pos - lo
    part = np.partition(flat, np.unique(np.concatenate([lo, hi])), axis=1)
    a, b = part[:, lo].astype(np.float64), part[:, hi].astype(np.float64)
    diff = b - a
    # numpy's _lerp: a + diff * t, or b - diff * (1 - t) from t >= 0.5 (monotone, exact ends)
    pct = np.where(t >= 0.5, b - diff * (1 - t), a + diff * t)
    out = np.concatenate([pct, flat.max(axis=1, keepdims=True),
                          flat.mean(axis=1, keepdims=True)], axis=1)
    return out[0] if mag.ndim == 2 else out


@dataclass(frozen=True)
class MotionBox:
    """A moving region in frame pixels: ``x1, y1`` inclusive, ``x2, y2`` exclusive."""

    x1: int
    y1: int
    x2: int
    y2: int
    magnitude: float
    """Mean flow magnitude inside the region, in working-size pixels per frame."""
    area: int
    """Moving pixels of the region, in frame pixels (at most the box's area)."""

    @property
    def width(self) -> int:
        return self.x2 - self.x1

    @property
    def height(self) -> int:
        return self.y2 - self.y1

    def to_dict(self) -> dict:
        return asdict(self)


def motion_boxes(
    flow_or_magnitude: np.ndarray,
    frame_shape: tuple[int, ...],
    *,
    min_magnitude: float = 0.25,
    rel_threshold: float = 0.4,
    min_area: float = 0.002,
    max_boxes: int = 10,
    sort_by: str = "area",
) -> list[MotionBox]:
    """Boxes around moving objects, in the coordinates of a frame of shape ``frame_shape``.

    A pixel moves when its flow magnitude exceeds ``max(min_magnitude, rel_threshold * peak)``
    (flow-map pixels per frame): the absolute floor ignores DIS noise in static scenes (static
    areas of Ped2 stay below ~0.2 at 112x112, where walkers reach 0.3-0.7), the relative part
    keeps one fast object from merging with its slower surroundings. The mask is closed (joins
    an object's fragments) then opened (drops specks), split into connected components, and
    components smaller than ``min_area`` (a fraction of the frame area, so it does not depend
    on the map's resolution) are dropped. Sorted by ``area`` or ``magnitude``, largest first,
    at most ``max_boxes``.
    """
    mag = np.asarray(flow_or_magnitude)
    if mag.ndim == 3 and mag.shape[2] == 2:
        mag = flow_magnitude(mag)
    elif mag.ndim != 2:
        raise ValueError(
            f"expected flow [H, W, 2] or magnitude [H, W], got shape {mag.shape}"
            + (" (encoded [2, H, W] flow: transpose to [H, W, 2] and multiply by the bound)"
               if mag.ndim == 3 and mag.shape[0] == 2 else "")
        )
    if not np.issubdtype(mag.dtype, np.floating):
        raise ValueError(f"flow/magnitude must be a float array, got dtype {mag.dtype}")
    if len(frame_shape) not in (2, 3) or min(frame_shape[:2]) < 1:
        raise ValueError(f"frame_shape must be (H, W) or (H, W, C), got {tuple(frame_shape)}")
    if not 0.0 <= min_area < 1.0:
        raise ValueError(f"min_area is a fraction of the frame area in [0, 1), got {min_area}")
    if sort_by not in ("area", "magnitude"):
        raise ValueError(f"sort_by must be 'area' or 'magnitude', got {sort_by!r}")
    if max_boxes < 1:
        raise ValueError(f"max_boxes must be >= 1, got {max_boxes}")
    mag = np.nan_to_num(mag.astype(np.float32, copy=False), nan=0.0, posinf=0.0, neginf=0.0)
    h, w = mag.shape
    peak = float(mag.max()) if mag.size else 0.0
    threshold = max(float(min_magnitude), float(rel_threshold) * peak)
    if peak <= threshold:
        return []
    mask: np.ndarray = (mag > threshold).astype(np.uint8)
    k = max(3, (min(h, w) // 32) | 1)  # odd kernel, ~3% of the map: 3 px at 112x112
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, kernel)
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, kernel)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    mean_mag = np.bincount(labels.ravel(), weights=mag.ravel(), minlength=n) / np.maximum(
        stats[:, cv2.CC_STAT_AREA], 1)
    H, W = int(frame_shape[0]), int(frame_shape[1])
    sx, sy = W / w, H / h
    boxes = []
    for i in range(1, n):
        x, y, bw, bh, pixels = (int(v) for v in stats[i])
        if pixels < min_area * h * w:
            continue
        boxes.append(MotionBox(
            x1=int(np.floor(x * sx)), y1=int(np.floor(y * sy)),
            x2=min(W, int(np.ceil((x + bw) * sx))), y2=min(H, int(np.ceil((y + bh) * sy))),
            magnitude=float(mean_mag[i]),
            area=int(round(pixels * sx * sy)),
        ))
    key = (lambda b: b.area) if sort_by == "area" else (lambda b: b.magnitude)
    return sorted(boxes, key=key, reverse=True)[:max_boxes]
