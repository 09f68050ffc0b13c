"""One camera's state: its clip buffers, flow, head state, frames waiting for a score, events.

A :class:`StreamSession` is owned by the Detector and touched under its lock, one thread at a
time. Frame checks happen
in :meth:`StreamSession.check` before anything changes, so a bad frame leaves the stream (and
every other stream) exactly as it was.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

import numpy as np

from edgevad.artifact.zoo import InputGeometry
from edgevad.errors import EdgevadError
from edgevad.media.motion import FlowEstimator, MotionBox, encode_flow, flow_magnitude, motion_boxes
from edgevad.media.preprocess import check_frame, preprocess_frame
from edgevad.runtime.clip_buffer import ClipBuffer
from edgevad.runtime.events import EventTracker
from edgevad.runtime.pipeline import ClipOutput, ClipState
from edgevad.runtime.results import FrameResult

__all__ = ["FrameError", "StreamSession"]


class FrameError(EdgevadError, ValueError):
    """A frame or timestamp the Detector cannot use; the stream's state is unchanged."""


@dataclass
class _Pending:
    index: int
    timestamp: float | None
    boxes: tuple[MotionBox, ...]


class StreamSession:
    """Per-stream buffers and bookkeeping (see the module doc)."""

    def __init__(self, stream: str, geometry: InputGeometry, *, flow: dict | None,
                 flow_geometry: InputGeometry | None, events: EventTracker,
                 class_names: tuple[str, ...], fps: float | None):
        self.stream = stream
        self.geometry = geometry
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
                preprocess_frame(frame, self.geometry)
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
        clip = self.buffer.push((lambda slot: preprocess_frame(frame, self.geometry, out=slot))
                                if self.buffer.needs(i) else None)
        self.frame_shape = frame.shape
        if timestamp is not None:
            self.last_timestamp = float(timestamp)
        self.last_seen = time.monotonic()
        self.pending.append(_Pending(i, timestamp, boxes))
        return None if clip is None else (clip, flow_clip)

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
        self.clip_state.reset()
        self.events.reset()
        self.pending.clear()
        self.frame_shape = self.last_timestamp = self.last_clip = None
        self.scored_until = 0
        self.finished = False
