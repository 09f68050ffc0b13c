"""One camera's state: its clip buffers, flow, head state, frames waiting for a score, events.

A model whose head is fed runtime-computed features (the manifest's ``features``, kind
``"flow-statistics"``: ``motion-prior``) has no pixel clips: the stream runs its own
:class:`~edgevad.media.motion.FlowEstimator` at the manifest's size/preset/finest scale on every
frame, buffers each frame's :func:`~edgevad.media.motion.flow_statistics` in the clip buffer
(one ``[statistics, 1, 1]`` slot per frame) and hands out a clip's feature as the mean over its
frames, the tail clip padded like any other (its last frame repeated).

A :class:`StreamSession` is owned by the Detector and touched under its lock, one thread at a
time. Frame checks happen
in :meth:`StreamSession.check` before anything changes, so a bad frame leaves the stream (and
every other stream) exactly as it was.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from edgevad.artifact.manifest import ManifestError
from edgevad.artifact.zoo import InputGeometry
from edgevad.errors import EdgevadError
from edgevad.media.motion import (
    FLOW_STATISTICS,
    PRESETS,
    FlowEstimator,
    MotionBox,
    encode_flow,
    flow_magnitude,
    flow_statistics,
    motion_boxes,
)
from edgevad.media.preprocess import check_frame, preprocess_frame
from edgevad.runtime.clip_buffer import ClipBuffer
from edgevad.runtime.events import EventTracker
from edgevad.runtime.pipeline import ClipOutput, ClipState
from edgevad.runtime.results import FrameResult

__all__ = ["FrameError", "StreamSession", "check_feature_record", "clip_feature",
           "flow_statistics_clips"]


class FrameError(EdgevadError, ValueError):
    """A frame or timestamp the Detector cannot use; the stream's state is unchanged."""


def check_feature_record(features: dict) -> None:
    """Refuse (:class:`ManifestError`) a manifest ``features`` record this runtime cannot compute
    exactly: another kind, a preset OpenCV's DIS lacks, statistics other than
    :data:`~edgevad.media.motion.FLOW_STATISTICS` in that order."""
    kind = features.get("kind")
    if kind != "flow-statistics":
        raise ManifestError(f"features kind {kind!r}: this runtime computes only "
                            "'flow-statistics'")
    if features.get("preset") not in PRESETS:
        raise ManifestError(f"features preset {features.get('preset')!r} is not a DIS preset "
                            f"({', '.join(PRESETS)})")
    if tuple(features.get("statistics") or ()) != FLOW_STATISTICS:
        raise ManifestError(f"features statistics {features.get('statistics')} differ from what "
                            f"this runtime computes per frame, in order: {list(FLOW_STATISTICS)}")


def clip_feature(clip: np.ndarray) -> np.ndarray:
    """A buffered clip of per-frame statistics ``[D, T, 1, 1]`` -> its feature, float32 ``[D]``:
    the mean over its frames (float64 sum)."""
    return clip.mean(axis=1, dtype=np.float64)[:, 0, 0].astype(np.float32)


def _stats_fill(mag: np.ndarray):
    """The clip buffer's fill callback for one frame's flow magnitude: its statistics."""
    def fill(slot: np.ndarray) -> None:
        slot[:, 0, 0] = flow_statistics(mag)
    return fill


def statistics_stream(features: dict, clip_len: int, stride: int
                      ) -> tuple[FlowEstimator, ClipBuffer]:
    """The flow estimator and clip buffer of one stream of a flow-statistics model (one place,
    so ``fit-prior`` and the Detector cannot drift apart)."""
    est = FlowEstimator(tuple(features["size"]), features["preset"], features.get("finest_scale"))
    return est, ClipBuffer((len(features["statistics"]), 1, 1), int(clip_len), int(stride))


def push_statistics(est: FlowEstimator, buf: ClipBuffer, frame: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray | None]:
    """One checked frame through a statistics stream: ``(flow magnitude, completed clip or
    None)``. The flow runs on every frame (it is between neighbours); the statistics are
    computed only for frames a clip will hold."""
    mag = flow_magnitude(est(frame))
    return mag, buf.push(_stats_fill(mag) if buf.needs(buf.frames) else None)


def flow_statistics_clips(frames: Iterable[np.ndarray], features: dict) -> tuple[np.ndarray, int]:
    """``(clip features [K, D] float32, frames)`` of a whole video, exactly as a stream of the
    Detector computes them (the same estimator settings, buffer, clip schedule and tail clip):
    what ``edgevad fit-prior`` fits the normality prior on."""
    check_feature_record(features)
    est, buf = statistics_stream(features, features["clip_len"], features["stride"])
    out = []
    for frame in frames:
        _, clip = push_statistics(est, buf, check_frame(frame))
        if clip is not None:
            out.append(clip_feature(clip))
    tail = buf.tail()
    if tail is not None:
        out.append(clip_feature(tail[0]))
    if not out:
        raise ValueError("no frames: a video needs at least one frame")
    return np.stack(out), buf.frames


@dataclass
class _Pending:
    index: int
    timestamp: float | None
    boxes: tuple[MotionBox, ...]


class StreamSession:
    """Per-stream buffers and bookkeeping (see the module doc)."""

    def __init__(self, stream: str, geometry: InputGeometry, *, flow: dict | None,
                 flow_geometry: InputGeometry | None, events: EventTracker,
                 class_names: tuple[str, ...], fps: float | None, features: dict | None = None):
        self.stream = stream
        self.geometry = geometry
        self.stats_estimator: FlowEstimator | None = None  # features' flow (no pixel clips)
        if features is not None:
            self.stats_estimator, self.buffer = statistics_stream(features, geometry.clip_len,
                                                                  geometry.stride)
        else:
            self.buffer = ClipBuffer((geometry.channels, *geometry.size), geometry.clip_len,
                                     geometry.stride)
        self.flow_buffer: ClipBuffer | None = None  # the motion stream's three, all or none
        self.flow_estimator: FlowEstimator | None = None
        self.flow_bound: float | None = None
        if flow is not None and flow_geometry is not None:
            self.flow_buffer = ClipBuffer((2, *flow_geometry.size), geometry.clip_len,
                                          geometry.stride)
            self.flow_estimator = FlowEstimator(tuple(flow["size"]), flow.get("preset", "ultrafast"),
                                                flow.get("finest_scale", 1))
            self.flow_bound = float(flow["bound"])
        self.events = events
        self.class_names = class_names
        self.fps = fps
        self.clip_state = ClipState()
        self.pending: deque[_Pending] = deque()
        self.frame_shape: tuple[int, ...] | None = None
        self.last_timestamp: float | None = None
        self.last_seen = time.monotonic()
        self.last_clip: tuple[int, ClipOutput] | None = None  # (clip index, output)
        self.scored_until = 0  # frames [0, scored_until) have been emitted
        self.finished = False

    # -- input -------------------------------------------------------------------------------------
    def check(self, frame: object, timestamp: float | None) -> np.ndarray:
        """Validate without changing state; returns the frame. Raises :class:`FrameError`."""
        try:
            frame = check_frame(frame)
        except ValueError as exc:
            raise FrameError(f"stream {self.stream!r} frame {self.buffer.frames}: {exc}") from None
        if self.finished:
            raise FrameError(f"stream {self.stream!r} was flushed; call reset({self.stream!r}) "
                             "before pushing new frames")
        if self.frame_shape is None:  # the first frame: can the geometry take this size at all?
            try:
                if self.stats_estimator is None:
                    preprocess_frame(frame, self.geometry)
                else:
                    self.stats_estimator.prepare(frame)
            except ValueError as exc:
                raise FrameError(f"stream {self.stream!r}: {exc}") from None
        elif frame.shape != self.frame_shape:
            raise FrameError(
                f"stream {self.stream!r} changed resolution at frame {self.buffer.frames}: "
                f"{self.frame_shape[1]}x{self.frame_shape[0]} -> {frame.shape[1]}x{frame.shape[0]}; "
                f"flush({self.stream!r}) and reset({self.stream!r}) to start it afresh at the new "
                "resolution (or use another stream id)")
        if timestamp is not None:
            if isinstance(timestamp, (bool, np.bool_)) or not isinstance(
                    timestamp, (int, float, np.integer, np.floating)):
                raise FrameError(f"stream {self.stream!r}: timestamp must be a number of seconds "
                                 f"or None, got {type(timestamp).__name__} {timestamp!r}")
            if not np.isfinite(timestamp):
                raise FrameError(f"stream {self.stream!r}: timestamp {timestamp!r} is not finite")
            if self.last_timestamp is not None and timestamp < self.last_timestamp:
                raise FrameError(f"stream {self.stream!r}: timestamp went backwards at frame "
                                 f"{self.buffer.frames} ({timestamp} < {self.last_timestamp})")
        return frame

    def add(self, frame: np.ndarray, timestamp: float | None
            ) -> tuple[np.ndarray, np.ndarray | None] | None:
        """Buffer a checked frame; returns (clip, flow clip) when it completes a clip."""
        i = self.buffer.frames
        if timestamp is None and self.fps:
            timestamp = i / self.fps
        boxes: tuple[MotionBox, ...] = ()
        flow_clip = None
        if self.flow_estimator is not None:
            flow_buffer, bound = self.flow_buffer, self.flow_bound
            assert flow_buffer is not None and bound is not None  # set with the estimator
            flow = self.flow_estimator(frame)  # every frame: flow is between neighbours
            boxes = tuple(motion_boxes(flow_magnitude(flow), frame.shape))
            flow_clip = flow_buffer.push(
                (lambda slot: np.copyto(slot, encode_flow(flow, bound)))
                if flow_buffer.needs(i) else None)
        if self.stats_estimator is not None:
            mag, clip = push_statistics(self.stats_estimator, self.buffer, frame)
            boxes = tuple(motion_boxes(mag, frame.shape))
        else:
            clip = self.buffer.push((lambda slot: preprocess_frame(frame, self.geometry, out=slot))
                                    if self.buffer.needs(i) else None)
        self.frame_shape = frame.shape
        if timestamp is not None:
            self.last_timestamp = float(timestamp)
        self.last_seen = time.monotonic()
        self.pending.append(_Pending(i, timestamp, boxes))
        return None if clip is None else (self.clip_input(clip), flow_clip)

    def clip_input(self, clip: np.ndarray) -> np.ndarray:
        """What the pipeline takes for a buffered clip: the pixel clip itself, or for
        flow-statistics features their mean over the clip's frames (float32 ``[statistics]``)."""
        return clip if self.stats_estimator is None else clip_feature(clip)

    # -- output ------------------------------------------------------------------------------------
    def scored(self, clip_index: int, output: ClipOutput, covers_until: int | None) -> list:
        """A clip's output arrived: emit the pending frames it scores (up to ``covers_until``,
        exclusive; None: every pending frame)."""
        self.last_clip = (clip_index, output)
        if covers_until is not None:
            self.scored_until = max(self.scored_until, covers_until)
        return self.emit(everything=covers_until is None)

    def emit(self, everything: bool = False) -> list[FrameResult]:
        """Frames the latest clip already covers (or all pending ones at the end)."""
        results: list[FrameResult] = []
        if self.last_clip is None:
            return results
        k, out = self.last_clip
        label = probs = None
        if out.probabilities is not None and self.class_names:
            p = out.probabilities
            label = self.class_names[int(np.argmax(p))]
            probs = {name: float(v) for name, v in zip(self.class_names, p)}
        while self.pending and (everything or self.pending[0].index < self.scored_until):
            f = self.pending.popleft()
            r = FrameResult(self.stream, f.index, f.timestamp, out.score, k, label, probs, f.boxes)
            results.append(r)
        return results

    def reset(self) -> None:
        self.buffer.reset()
        if self.flow_buffer is not None:
            self.flow_buffer.reset()
        if self.flow_estimator is not None:
            self.flow_estimator.reset()
        if self.stats_estimator is not None:
            self.stats_estimator.reset()
        self.clip_state.reset()
        self.events.reset()
        self.pending.clear()
        self.frame_shape = self.last_timestamp = self.last_clip = None
        self.scored_until = 0
        self.finished = False
