"""Frames for the benchmark: a real video (decoded live, so decoding is measured) or synthetic.

Each stream reads its own copy of the source, as separate cameras would; a video restarts at its
first frame when it ends. Synthetic frames are a textured image drifting a few pixels a frame
(so optical flow has motion to find), made once: handing one out costs nothing measurable.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from edgevad.errors import EdgevadError
from edgevad.media.video import VideoReader

__all__ = ["FrameSource", "SyntheticSource", "VideoSource", "open_source", "parse_size"]


class FrameSource:
    """``frame(stream)`` -> the stream's next H x W x 3 uint8 BGR frame."""

    kind: str
    fps: float
    width: int
    height: int

    def frame(self, stream: int) -> np.ndarray:
        raise NotImplementedError

    def describe(self) -> dict:
        return {"kind": self.kind, "fps": self.fps, "width": self.width, "height": self.height}

    def close(self) -> None:
        pass


class SyntheticSource(FrameSource):
    kind = "synthetic"

    def __init__(self, width: int = 480, height: int = 360, fps: float = 30.0, pool: int = 32,
                 seed: int = 0):
        if width < 1 or height < 1 or fps <= 0:
            raise EdgevadError(f"synthetic source needs a positive size and fps, got "
                               f"{width}x{height} at {fps}")
        self.width, self.height, self.fps = int(width), int(height), float(fps)
        rng = np.random.default_rng(seed)
        base: np.ndarray = rng.integers(0, 256, size=(height // 8 + 1, width // 8 + 1, 3),
                                        dtype=np.uint8)
        import cv2

        base = cv2.resize(base, (width + 8 * pool, height), interpolation=cv2.INTER_LINEAR)
        noise = rng.integers(0, 8, size=(height, width, 3), dtype=np.uint8)
        self._pool = [np.ascontiguousarray(base[:, 4 * i:4 * i + width] + noise)
                      for i in range(pool)]
        self._next: dict[int, int] = {}

    def frame(self, stream: int) -> np.ndarray:
        i = self._next.get(stream, stream * 7)
        self._next[stream] = i + 1
        return self._pool[i % len(self._pool)]


class VideoSource(FrameSource):
    kind = "video"

    def __init__(self, path: str | Path):
        self.path = Path(path)
        probe = VideoReader(self.path)
        probe.close()
        info = probe.info
        self.fps = info.fps or 30.0
        self.width, self.height = info.width, info.height
        self._iters: dict[int, Iterator[np.ndarray]] = {}

    def _open(self):
        return iter(VideoReader(self.path, strict=False))

    def frame(self, stream: int) -> np.ndarray:
        it = self._iters.get(stream) or self._iters.setdefault(stream, self._open())
        try:
            return next(it)
        except StopIteration:  # loop: a camera never ends
            it = self._iters[stream] = self._open()
            return next(it)

    def describe(self) -> dict:
        return {**super().describe(), "path": str(self.path)}

    def close(self) -> None:
        for it in self._iters.values():
            close = getattr(it, "close", None)
            if close:
                close()
        self._iters.clear()


def parse_size(text: str) -> tuple[int, int]:
    """``"480x360"`` -> (480, 360) (width x height)."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise EdgevadError(f"frame size must be WIDTHxHEIGHT (e.g. 480x360), got "
                           f"{text!r}") from None
    if w < 1 or h < 1:
        raise EdgevadError(f"frame size must be positive, got {text!r}")
    return w, h


def open_source(source: str, size: str = "480x360", fps: float = 30.0) -> FrameSource:
    """``"synthetic"`` or a video file path."""
    if source.strip().lower() == "synthetic":
        return SyntheticSource(*parse_size(size), fps=fps)
    path = Path(source)
    if not path.is_file():
        raise EdgevadError(f"source {source!r} is neither 'synthetic' nor a video file")
    return VideoSource(path)
