"""Per-frame scores -> anomaly events, by thresholding with hysteresis and a minimum duration.

An event opens at the first frame whose score reaches ``threshold`` and stays open while scores
stay at or above ``release`` (lower, so a score hovering at the threshold does not flicker into
many events). Brief dips shorter than ``max_gap`` frames below ``release`` do not close it. When
it closes, it is reported only if it lasted at least ``min_frames`` frames.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from edgevad.errors import ConfigError
from edgevad.runtime.results import AnomalyEvent, FrameResult

__all__ = ["EventConfig", "EventTracker"]


@dataclass(frozen=True)
class EventConfig:
    """``threshold`` None: the model's default (from the manifest). ``release`` None:
    ``threshold - hysteresis * (score range)``. ``min_frames``: shortest reported event."""

    threshold: float | None = None
    release: float | None = None
    hysteresis: float = 0.1
    min_frames: int = 8
    max_gap: int = 0

    def resolve(self, default_threshold: float, score_range: tuple[float, float]
                ) -> tuple[float, float]:
        """(threshold, release) for a model; raises :class:`ConfigError` (a ``ValueError``) when
        inconsistent or not finite: a NaN threshold would silently never open an event."""
        try:
            on = float(default_threshold if self.threshold is None else self.threshold)
            span = float(score_range[1]) - float(score_range[0])
            off = (float(on - self.hysteresis * span) if self.release is None
                   else float(self.release))
        except (TypeError, ValueError):
            raise ConfigError(f"event thresholds must be numbers, got threshold "
                              f"{self.threshold!r}, release {self.release!r}") from None
        if not (math.isfinite(on) and math.isfinite(off)):
            whose = "the model's default threshold" if self.threshold is None else "threshold"
            raise ConfigError(f"{whose} ({on}) and release ({off}) must be finite numbers")
        if off > on:
            raise ConfigError(f"event release threshold {off} is above the threshold {on}")
        if not (isinstance(self.min_frames, int) and isinstance(self.max_gap, int)) \
                or self.min_frames < 1 or self.max_gap < 0:
            raise ConfigError(f"min_frames must be an int >= 1 and max_gap >= 0, got "
                              f"{self.min_frames!r}, {self.max_gap!r}")
        return on, off


class EventTracker:
    """One stream's event state; feed it every frame result in order.

    An open event keeps running figures (first and last frame, peak, count, score sum), not its
    frame results: a camera whose scene stays anomalous for days would otherwise hold every
    frame's result in memory. Only the dips that ``max_gap`` may still forgive (at most
    ``max_gap`` frames) are kept individually, until a frame decides whether they belong to it.
    """

    def __init__(self, stream: str, threshold: float, release: float, min_frames: int = 8,
                 max_gap: int = 0):
        self.stream = stream
        self.threshold, self.release = float(threshold), float(release)
        self.min_frames, self.max_gap = int(min_frames), int(max_gap)
        self._open: _Run | None = None
        self._dips: list[FrameResult] = []  # trailing frames below release, forgiven so far
        self._below = 0  # consecutive frames below release inside an open event

    @property
    def active(self) -> bool:
        return self._open is not None

    def update(self, result: FrameResult) -> AnomalyEvent | None:
        """Feed one frame; returns an event when this frame closes one that qualifies."""
        if self._open is None:
            if result.score >= self.threshold:
                self._open, self._below = _Run(result), 0
                self._dips = []
            return None
        if result.score >= self.release:
            for dip in self._dips:  # the dips were inside the event after all
                self._open.add(dip)
            self._dips = []
            self._open.add(result)
            self._below = 0
            return None
        self._below += 1
        if self._below <= self.max_gap:
            self._dips.append(result)
            return None
        return self._close("score")

    def finish(self) -> AnomalyEvent | None:
        """End of stream: close an open event (``closed_by="flush"``)."""
        return self._close("flush") if self._open is not None else None

    def reset(self) -> None:
        self._open, self._dips, self._below = None, [], 0

    def _close(self, why: str) -> AnomalyEvent | None:
        run = self._open  # trailing dips are not part of the event
        self.reset()
        if run is None or run.count < self.min_frames:
            return None
        return AnomalyEvent(
            stream=self.stream, start=run.first.index, end=run.last.index,
            peak_score=run.peak.score, peak_frame=run.peak.index,
            start_time=run.first.timestamp, end_time=run.last.timestamp, label=run.peak.label,
            mean_score=float(run.total / run.count), closed_by=why,
        )


class _Run:
    """Running figures of an open event, in constant memory."""

    __slots__ = ("count", "first", "last", "peak", "total")

    def __init__(self, first: FrameResult):
        self.first = self.last = self.peak = first
        self.count = 1
        self.total = 0 + first.score  # summed in frame order, as sum() over the frames would

    def add(self, r: FrameResult) -> None:
        self.last = r
        self.count += 1
        self.total += r.score
        if r.score > self.peak.score:  # the first of equal peaks, as max() picks
            self.peak = r
