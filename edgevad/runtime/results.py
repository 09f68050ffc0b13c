"""What the Detector hands back: small validated records with ``to_dict()`` (JSON-ready)."""

from __future__ import annotations

from dataclasses import dataclass, field

from edgevad.media.motion import MotionBox

__all__ = ["AnomalyEvent", "FrameResult"]


@dataclass(frozen=True)
class FrameResult:
    """One frame's verdict, emitted as soon as the clip that scores it has run.

    ``clip``: index of the clip whose score this frame carries (clip k starts at frame
    ``k * stride``; the stream's last, padded clip may start later). ``label`` and
    ``probabilities`` (class name -> probability) only for models with a classifier; ``boxes``
    only for models with a motion stream (moving regions in this frame's pixels).
    """

    stream: str
    index: int
    timestamp: float | None
    score: float
    clip: int
    label: str | None = None
    probabilities: dict[str, float] | None = None
    boxes: tuple[MotionBox, ...] = ()

    def to_dict(self) -> dict:
        d = {"stream": self.stream, "frame": self.index, "timestamp": self.timestamp,
             "score": self.score, "clip": self.clip}
        if self.label is not None:
            d["label"] = self.label
        if self.probabilities is not None:
            d["probabilities"] = dict(self.probabilities)
        if self.boxes:
            d["boxes"] = [b.to_dict() for b in self.boxes]
        return d


@dataclass(frozen=True)
class AnomalyEvent:
    """A run of anomalous frames: it opens when the score reaches the threshold and closes when
    it falls below the (lower) release threshold; shorter runs than the minimum are dropped.
    ``end`` is the last anomalous frame (inclusive)."""

    stream: str
    start: int
    end: int
    peak_score: float
    peak_frame: int
    start_time: float | None = None
    end_time: float | None = None
    label: str | None = None
    """The class at the peak frame, for models with a classifier."""
    mean_score: float = 0.0
    closed_by: str = "score"
    """``"score"`` (fell below the release threshold) or ``"flush"`` (the stream ended)."""
    extra: dict = field(default_factory=dict)

    @property
    def frames(self) -> int:
        return self.end - self.start + 1

    def to_dict(self) -> dict:
        d = {"stream": self.stream, "start_frame": self.start, "end_frame": self.end,
             "frames": self.frames, "start_time": self.start_time, "end_time": self.end_time,
             "peak_score": self.peak_score, "peak_frame": self.peak_frame,
             "mean_score": self.mean_score, "closed_by": self.closed_by}
        if self.label is not None:
            d["label"] = self.label
        d.update(self.extra)
        return d
