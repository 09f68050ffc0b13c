"""Reading video files with OpenCV, failing loudly on corrupt input (numpy + OpenCV, no torch).

:func:`read_video` yields every frame (H x W x 3 uint8 BGR) of a file and raises
:class:`VideoError`, naming the file, when it cannot be opened, decodes no frame at all, or stops
decoding well before the frame count its container declares (a truncated or damaged file), so a
feature bag is never silently built from part of a video.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from edgevad.errors import EdgevadError

__all__ = ["VIDEO_EXTENSIONS", "VideoError", "VideoInfo", "VideoReader", "read_video", "video_info"]

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".mpg")
"""File endings treated as videos when a folder is given."""


class VideoError(EdgevadError):
    """A video file cannot be opened or decoded (missing, corrupt, truncated)."""


@dataclass(frozen=True)
class VideoInfo:
    """What the container declares. ``n_frames`` is OpenCV's estimate (0 when unknown); the
    frames actually decoded are counted by :class:`VideoReader`."""

    fps: float
    n_frames: int
    width: int
    height: int

    def to_dict(self) -> dict:
        return asdict(self)


def short_fall_tolerance(declared: int) -> int:
    """Frames a decode may fall short of the declared count without being an error.

    Containers' counts are estimates (an edit list, a missing last frame), so a shortfall of
    ``max(2, 1 %)`` is accepted; anything more means the file is damaged or truncated.
    """
    return max(2, declared // 100)


class VideoReader:
    """An opened video: ``info`` at once, frames by iterating (once).

    After iteration ``decoded`` is the number of frames read. Iterating raises ``VideoError`` if
    no frame decodes or decoding stops short of the declared count by more than
    :func:`short_fall_tolerance`, unless ``strict=False``.
    """

    def __init__(self, path: str | Path, *, strict: bool = True):
        self.path = Path(path)
        self.strict = strict
        self.decoded = 0
        if not self.path.exists():
            raise VideoError(f"Video {self.path} does not exist")
        if not self.path.is_file():
            raise VideoError(f"Video {self.path} is not a file")
        self._cap = cv2.VideoCapture(str(self.path))
        if not self._cap.isOpened():
            self._cap.release()
            raise VideoError(f"Cannot open video {self.path}: OpenCV finds no decodable stream "
                             "(corrupt file or unsupported format)")
        declared = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT))
        fps = float(self._cap.get(cv2.CAP_PROP_FPS))
        self.info = VideoInfo(
            fps=fps if np.isfinite(fps) and fps > 0 else 0.0,
            n_frames=max(declared, 0),
            width=int(self._cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
            height=int(self._cap.get(cv2.CAP_PROP_FRAME_HEIGHT)),
        )
        self._used = False

    def __iter__(self) -> Iterator[np.ndarray]:
        if self._used:
            raise VideoError(f"Video {self.path} was already read; open it again")
        self._used = True
        try:
            while True:
                try:
                    ok, frame = self._cap.read()
                except cv2.error as exc:
                    raise VideoError(f"Decoding {self.path} failed after {self.decoded} frames: "
                                     f"{exc}") from exc
                if not ok or frame is None:
                    break
                if frame.ndim == 2:  # some backends give grey frames
                    frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
                self.decoded += 1
                yield frame
        finally:
            self._cap.release()
        self._check_complete()

    def _check_complete(self) -> None:
        declared = self.info.n_frames
        if self.decoded == 0:
            raise VideoError(f"Video {self.path} decoded zero frames "
                             f"(declares {declared}): corrupt or empty file")
        if self.strict and declared > 0 and declared - self.decoded > short_fall_tolerance(declared):
            raise VideoError(f"Decoding {self.path} stopped early: {self.decoded} frames decoded of "
                             f"{declared} declared (truncated or damaged file)")

    def close(self) -> None:
        self._cap.release()

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def list_videos(folder: str | Path) -> list[Path]:
    """The video files of ``folder`` (by extension, :data:`VIDEO_EXTENSIONS`), sorted by name."""
    return sorted(p for p in Path(folder).iterdir()
                  if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS)


def read_video(path: str | Path, *, strict: bool = True) -> Iterator[np.ndarray]:
    """Yield each frame of ``path`` (H x W x 3 uint8 BGR); raise ``VideoError`` on a bad file.

    The file is opened at the first ``next()`` (a generator); open a :class:`VideoReader` to get
    :class:`VideoInfo` first or to count decoded frames.
    """
    yield from VideoReader(path, strict=strict)


def video_info(path: str | Path) -> VideoInfo:
    """The container's fps, frame count, width and height, without decoding frames."""
    reader = VideoReader(path)
    reader.close()
    return reader.info
