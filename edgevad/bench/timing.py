"""Timing proxies: measure the Detector's stages without changing the Detector.

- :class:`TimedEngine` implements the :class:`~edgevad.runtime.engines.Engine` interface around
  a real engine and records each ``run`` (wall time, batch size). Swapped into
  ``Detector.engines`` (the dict its pipeline reads), it times every engine call as it happens.
- :func:`timed_stream_stages` wraps, for the length of a ``with`` block, the per-frame functions
  a :class:`~edgevad.runtime.stream.StreamSession` calls through its module (pre-processing,
  optical flow, motion boxes, flow encoding), and puts them back afterwards.

Each proxy costs about a microsecond a call, small against the milliseconds being measured.
"""

from __future__ import annotations

import functools
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np

from edgevad.runtime.engines import StageRunner

__all__ = ["StageClock", "TimedEngine", "clock", "cpu_clock", "timed_stream_stages",
           "wrap_engines"]

clock = time.perf_counter
cpu_clock = time.thread_time
"""CPU time of the calling thread: unlike wall time, not inflated while other processes run."""


class StageClock:
    """Named lists of durations (seconds)."""

    def __init__(self) -> None:
        self.samples: dict[str, list[float]] = defaultdict(list)
        self.totals: dict[str, float] = defaultdict(float)
        """Running sums, never cleared: differences give one tick's share."""
        self.cpu_totals: dict[str, float] = defaultdict(float)
        """Running sums of the calling thread's CPU time, where measured."""

    def add(self, name: str, seconds: float) -> None:
        self.samples[name].append(seconds)
        self.totals[name] += seconds

    def timed(self, name: str, fn: Callable) -> Callable:
        """``fn`` with each call's duration added under ``name``."""
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            t0 = clock()
            try:
                return fn(*args, **kwargs)
            finally:
                self.add(name, clock() - t0)
        return wrapper

    def clear(self) -> None:
        self.samples.clear()


class TimedEngine(StageRunner):
    """An Engine that times its inner engine's ``run`` (wall clock, batch size per call)."""

    def __init__(self, inner, clock_: StageClock | None = None):
        self.inner = inner
        self.stage = inner.stage
        self.backend = inner.backend
        self.device = inner.device
        self.graph = getattr(inner, "graph", inner.stage.file)
        self.clock = clock_ or StageClock()
        self.key = f"engine:{self.stage.name}"
        self.batches: list[int] = []
        self.last_feeds: dict[str, np.ndarray] | None = None

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        c0, t0 = cpu_clock(), clock()
        out = self.inner.run(feeds)
        dt = clock() - t0
        self.clock.cpu_totals[self.key] += cpu_clock() - c0
        self.clock.add(self.key, dt)
        first = next(iter(feeds.values()), None)
        self.batches.append(int(first.shape[0]) if first is not None and first.ndim else 1)
        self.last_feeds = feeds
        return out


def wrap_engines(engines: dict, clock_: StageClock) -> dict[str, TimedEngine]:
    """Replace each engine of ``engines`` (a Detector's dict, shared with its pipeline) in place."""
    for name in list(engines):
        engines[name] = TimedEngine(engines[name], clock_)
    return engines


class _TimedFlow:
    """A FlowEstimator whose calls are timed; everything else passes through."""

    def __init__(self, inner, clock_: StageClock):
        self._inner = inner
        self._call = clock_.timed("flow", inner.__call__)

    def __call__(self, frame):
        return self._call(frame)

    def __getattr__(self, name):
        return getattr(self._inner, name)


@contextmanager
def timed_stream_stages(clock_: StageClock) -> Iterator[StageClock]:
    """Time the per-frame stages of every StreamSession created or used inside the block:
    ``preprocess`` (resize, crop, colour, normalise into the ring slot), ``flow`` (DIS optical
    flow), ``flow_magnitude``, ``motion_boxes`` and ``flow_encode``."""
    from edgevad.runtime import stream

    originals = {n: getattr(stream, n) for n in
                 ("preprocess_frame", "encode_flow", "flow_magnitude", "motion_boxes",
                  "FlowEstimator")}

    def flow_estimator(*args, **kwargs):
        return _TimedFlow(originals["FlowEstimator"](*args, **kwargs), clock_)

    stream.preprocess_frame = clock_.timed("preprocess", originals["preprocess_frame"])
    stream.encode_flow = clock_.timed("flow_encode", originals["encode_flow"])
    stream.flow_magnitude = clock_.timed("flow_magnitude", originals["flow_magnitude"])
    stream.motion_boxes = clock_.timed("motion_boxes", originals["motion_boxes"])
    stream.FlowEstimator = flow_estimator  # type: ignore[misc,assignment]  # a timed factory
    try:
        yield clock_
    finally:
        for name, value in originals.items():
            setattr(stream, name, value)
