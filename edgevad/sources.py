"""Where frames come from: a video file, a folder of videos, a camera index or a network stream.

:func:`open_sources` turns what the user typed into :class:`FrameSource` objects, each an
iterator of ``(frame, timestamp)``. Files decode through :class:`edgevad.video.VideoReader`
(corrupt files are a :class:`~edgevad.video.VideoError` naming the file); cameras and
RTSP/HTTP URLs through ``cv2.VideoCapture`` with wall-clock timestamps. Decoding runs on its own
thread with a bounded queue, so decode and inference overlap (two cores do both).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edgevad.errors import EdgevadError
from edgevad.video import VIDEO_EXTENSIONS, VideoError, VideoReader, list_videos

__all__ = ["FrameSource", "SourceError", "open_sources"]

URL_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://")


class SourceError(EdgevadError):
    """A source cannot be opened (no such file or folder, no camera, unreachable stream)."""


@dataclass
class FrameSource:
    """One input: ``name`` (a file stem, ``camera0``, the URL's host), ``fps`` (0 if unknown),
    ``live`` (a camera or stream: no end, wall-clock timestamps)."""

    spec: str
    name: str
    kind: str
    """``"file"``, ``"camera"`` or ``"url"``."""
    fps: float = 0.0
    frames_declared: int = 0
    width: int = 0
    height: int = 0

    @property
    def live(self) -> bool:
        return self.kind != "file"

    def frames(self, queue_size: int = 32) -> Iterator[tuple[np.ndarray, float | None]]:
        """Yield (BGR frame, timestamp in seconds) decoded on a background thread."""
        return _threaded(self._decode(), queue_size)

    def _decode(self) -> Iterator[tuple[np.ndarray, float | None]]:
        if self.kind == "file":
            for i, frame in enumerate(VideoReader(self.spec)):
                yield frame, (i / self.fps if self.fps else None)
            return
        cap = _capture(self.spec, self.kind)
        t0 = time.monotonic()
        try:
            while True:
                ok, frame = cap.read()
                if not ok or frame is None:
                    break
                yield frame, time.monotonic() - t0
        finally:
            cap.release()


def _capture(spec: str, kind: str) -> cv2.VideoCapture:
    cap = cv2.VideoCapture(int(spec)) if kind == "camera" else cv2.VideoCapture(spec)
    if not cap.isOpened():
        cap.release()
        what = f"camera {spec}" if kind == "camera" else f"stream {spec}"
        raise SourceError(f"cannot open {what} (OpenCV finds no device or the stream does not "
                          "answer)")
    return cap


_END = object()


def _threaded(it: Iterator, size: int) -> Iterator:
    """Run ``it`` on a daemon thread; re-raise its exception in the consumer."""
    q: queue.Queue = queue.Queue(maxsize=size)
    stop = threading.Event()

    def work() -> None:
        try:
            for item in it:
                while not stop.is_set():
                    try:
                        q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(_END)
        except BaseException as exc:  # handed to the consumer
            q.put(exc)

    thread = threading.Thread(target=work, name="edgevad-decode", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()


def open_sources(spec: str) -> list[FrameSource]:
    """Sources for a file, a folder (its videos, sorted), a camera index or a URL."""
    spec = str(spec)
    if spec.isdigit():
        cap = _capture(spec, "camera")
        src = FrameSource(spec, f"camera{spec}", "camera", fps=_fps(cap),
                          width=int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
                          height=int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
        cap.release()
        return [src]
    if spec.lower().startswith(URL_SCHEMES):
        name = spec.split("://", 1)[1].split("/", 1)[0].replace(":", "_") or "stream"
        return [FrameSource(spec, name, "url")]
    path = Path(spec)
    if path.is_dir():
        videos = list_videos(path)
        if not videos:
            raise SourceError(f"folder {path} holds no videos ({', '.join(VIDEO_EXTENSIONS)})")
        return [_file_source(p) for p in videos]
    if not path.exists():
        raise SourceError(f"source {spec} is not a file, a folder, a camera index or a URL")
    return [_file_source(path)]


def _file_source(path: Path) -> FrameSource:
    try:
        reader = VideoReader(path)
    except VideoError as exc:
        raise SourceError(str(exc)) from exc
    info = reader.info
    reader.close()
    return FrameSource(str(path), path.stem, "file", fps=info.fps, frames_declared=info.n_frames,
                       width=info.width, height=info.height)


def _fps(cap: cv2.VideoCapture) -> float:
    fps = float(cap.get(cv2.CAP_PROP_FPS))
    return fps if np.isfinite(fps) and fps > 0 else 0.0
