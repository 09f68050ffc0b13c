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


def gradient_frames(n: int, size: tuple[int, int] = (120, 160), seed: int = 0, *,
                    drift: int = 3, noise: int = 20) -> Iterator[np.ndarray]:
    """``n`` colour gradients whose blue channel drifts ``drift`` levels a frame, with uniform
    noise below ``noise`` added: smooth, changing content for calibration and export tests."""
    h, w = size
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    for i in range(n):
        frame = np.stack([xx * 255 // w, yy * 255 // h, (xx + yy + drift * i) % 256], -1)
        yield (frame + rng.integers(0, noise, frame.shape)).clip(0, 255).astype(np.uint8)


def noise_frames(n: int, size: tuple[int, int] = (48, 64), seed: int = 0) -> Iterator[np.ndarray]:
    """``n`` frames of uniform noise, ``size`` = (height, width)."""
    rng = np.random.default_rng(seed)
    for _ in range(n):
        yield rng.integers(0, 256, (*size, 3), dtype=np.uint8)
