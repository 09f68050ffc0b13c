"""Small video files for tests: one writer; which frames go in is each test's business.

Tests decode what they wrote, so the container matters: ``.avi`` is written as MJPG (every
frame a keyframe, quick to seek), anything else as MPEG-4 (``mp4v``), as the shared clips are.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import chain
from pathlib import Path

import cv2
import numpy as np


def write_video(path: str | Path, frames: Iterable[np.ndarray], fps: float = 10.0) -> Path:
    """Write BGR uint8 frames (all one size) to ``path``; returns the path."""
    path = Path(path)
    it = iter(frames)
    first = next(it)
    h, w = first.shape[:2]
    fourcc = cv2.VideoWriter_fourcc(*("MJPG" if path.suffix.lower() == ".avi" else "mp4v"))
    writer = cv2.VideoWriter(str(path), fourcc, fps, (w, h))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {path}")
    try:
        for frame in chain([first], it):
            writer.write(frame)
    finally:
        writer.release()
    return path


def noise_frames(n: int, size: tuple[int, int] = (48, 64), seed: int = 0) -> Iterator[np.ndarray]:
    """``n`` frames of uniform noise, ``size`` = (height, width)."""
    rng = np.random.default_rng(seed)
    for _ in range(n):
        yield rng.integers(0, 256, (*size, 3), dtype=np.uint8)
