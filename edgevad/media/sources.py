"""Where frames come from: a video file, a folder of videos, a camera index or a network stream.

:func:`open_sources` turns what the user typed into :class:`FrameSource` objects, each an
iterator of ``(frame, timestamp)``. Files decode through :class:`edgevad.media.video.VideoReader`
(corrupt files are a :class:`~edgevad.media.video.VideoError` naming the file); cameras and
RTSP/HTTP URLs through ``cv2.VideoCapture`` with wall-clock timestamps. Decoding runs on its own
thread with a bounded queue, so decode and inference overlap (two cores do both).

A live source that drops or stalls (``cap.read()`` fails, or no frame within
:attr:`Reconnect.read_timeout_s`) is reopened with doubling back-off up to
:attr:`Reconnect.attempts` times in a row; timestamps keep counting from the first open, so the
frames after a reconnect continue the stream. ``attempts=0`` ends the source at the first drop.

The decode thread is always stopped and joined when iteration ends (normally, on an error, or
when the caller's ``stop`` event is set by a signal handler): a capture still decoding at
interpreter exit can abort the process (``terminate called without an active exception``).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from edgevad.errors import EdgevadError
from edgevad.media.video import VIDEO_EXTENSIONS, VideoError, VideoReader, list_videos

__all__ = ["FrameSource", "Reconnect", "SourceError", "open_sources", "unique_names"]

log = logging.getLogger(__name__)

URL_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://")


class SourceError(EdgevadError):
    """A source cannot be opened (no such file or folder, no camera, unreachable stream)."""


@dataclass(frozen=True)
class Reconnect:
    """What a live source does when it drops: reopen up to ``attempts`` times in a row (a frame
    read resets the count), waiting ``delay_s``, doubled after each failed try up to
    ``max_delay_s``. ``read_timeout_s``: a stream that gives no frame for this long has stalled
    (passed to OpenCV's FFmpeg back-end as its open and read timeouts)."""

    attempts: int = 5
    delay_s: float = 1.0
    max_delay_s: float = 30.0
    read_timeout_s: float = 10.0

    def __post_init__(self):
        if self.attempts < 0 or not (self.delay_s >= 0 and self.max_delay_s >= 0
                                     and self.read_timeout_s > 0):
            raise SourceError(f"reconnect settings must be >= 0 (timeout > 0), got {self}")


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
    reconnect: Reconnect = field(default_factory=Reconnect)
    reconnects: int = 0
    """Times a live source was reopened after a drop (set by the decode thread)."""

    @property
    def live(self) -> bool:
        return self.kind != "file"

    def frames(self, queue_size: int = 32, stop: threading.Event | None = None
               ) -> Iterator[tuple[np.ndarray, float | None]]:
        """Yield (BGR frame, timestamp in seconds) decoded on a background thread. Setting
        ``stop`` ends the iteration within 0.1 s, even while the source gives no frame."""
        join_s = 10.0 + (self.reconnect.read_timeout_s if self.live else 0.0)  # a read may block
        return _threaded(self._decode, queue_size, stop, join_s)

    def _decode(self, stop: threading.Event) -> Iterator[tuple[np.ndarray, float | None]]:
        if self.kind == "file":
            reader = VideoReader(self.spec)
            try:
                for i, frame in enumerate(reader):
                    yield frame, (i / self.fps if self.fps else None)
            finally:
                reader.close()
            return
        yield from self._decode_live(stop)

    def _decode_live(self, stop: threading.Event) -> Iterator[tuple[np.ndarray, float]]:
        rc = self.reconnect
        cap = _capture(self.spec, self.kind, rc.read_timeout_s)
        t0 = time.monotonic()
        failed_tries = 0  # reopen attempts since the last frame read
        try:
            while not stop.is_set():
                ok, frame = cap.read()
                if ok and frame is not None:
                    failed_tries = 0
                    yield frame, time.monotonic() - t0
                    continue
                cap.release()
                if rc.attempts == 0:
                    raise SourceError(f"{self.spec} stopped giving frames (dropped or stalled); "
                                      "not reopened (--reconnect 0)")
                while True:
                    if failed_tries >= rc.attempts:
                        raise SourceError(f"{self.spec} dropped and did not come back after "
                                          f"{rc.attempts} reconnect attempt(s)")
                    delay = min(rc.delay_s * 2 ** failed_tries, rc.max_delay_s)
                    failed_tries += 1
                    log.warning("%s: no frame, reconnecting in %.1f s (attempt %d of %d)",
                                self.spec, delay, failed_tries, rc.attempts)
                    if stop.wait(delay):
                        return
                    try:
                        cap = _capture(self.spec, self.kind, rc.read_timeout_s)
                    except SourceError as exc:
                        log.warning("%s: reconnect failed: %s", self.spec, exc)
                        continue
                    self.reconnects += 1
                    break
        finally:
            cap.release()


def _capture(spec: str, kind: str, timeout_s: float | None = None) -> cv2.VideoCapture:
    if kind == "camera":
        cap = cv2.VideoCapture(int(spec))
    elif timeout_s is not None and spec.lower().startswith(URL_SCHEMES):
        ms = int(timeout_s * 1000)
        cap = cv2.VideoCapture(spec, cv2.CAP_FFMPEG, [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms,
                                                      cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms])
    else:
        cap = cv2.VideoCapture(spec)
    if not cap.isOpened():
        cap.release()
        what = f"camera {spec}" if kind == "camera" else f"stream {spec}"
        raise SourceError(f"cannot open {what} (OpenCV finds no device or the stream does not "
                          "answer)")
    return cap


_END = object()


def _threaded(make, size: int, stop: threading.Event | None = None,
              join_s: float = 10.0) -> Iterator:
    """Run the generator ``make(stop)`` on a thread; re-raise its exception in the consumer.

    The thread is told to stop and joined when the consumer finishes, fails or is closed, and
    the generator is closed on the thread that ran it (releasing its capture)."""
    q: queue.Queue = queue.Queue(maxsize=size)
    done = threading.Event()  # set by the consumer when it leaves
    external = stop if stop is not None else threading.Event()

    def work() -> None:
        it = make(done)
        try:
            for item in it:
                _put(q, item, done)
                if done.is_set():
                    return
            _put(q, _END, done)
        except BaseException as exc:  # handed to the consumer
            _put(q, exc, done)
        finally:
            it.close()

    thread = threading.Thread(target=work, name="edgevad-decode", daemon=True)
    thread.start()
    try:
        while not external.is_set():
            try:
                item = q.get(timeout=0.1)
            except queue.Empty:
                continue
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        done.set()
        thread.join(timeout=join_s)
        if thread.is_alive():  # a capture blocked in a read that has no timeout
            log.warning("the decode thread did not stop within %.0f s", join_s)


def _put(q: queue.Queue, item, done: threading.Event) -> None:
    while not done.is_set():
        try:
            q.put(item, timeout=0.1)
            return
        except queue.Full:
            continue


def open_sources(spec: str, reconnect: Reconnect | None = None) -> list[FrameSource]:
    """Sources for a file, a folder (its videos, sorted), a camera index or a URL.

    A folder's unreadable videos come back too (``kind="file"``, ``fps`` 0) so that the caller
    can name each; they fail when read."""
    spec = str(spec)
    rc = reconnect or Reconnect()
    if spec.isdigit():
        cap = _capture(spec, "camera")
        src = FrameSource(spec, f"camera{spec}", "camera", fps=_fps(cap),
                          width=int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
                          height=int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)), reconnect=rc)
        cap.release()
        return [src]
    if spec.lower().startswith(URL_SCHEMES):
        host = spec.split("://", 1)[1].split("/", 1)[0].rsplit("@", 1)[-1]  # no credentials
        name = host.replace(":", "_") or "stream"
        return [FrameSource(spec, name, "url", reconnect=rc)]
    path = Path(spec)
    if path.is_dir():
        videos = list_videos(path)
        if not videos:
            raise SourceError(f"folder {path} holds no videos ({', '.join(VIDEO_EXTENSIONS)})")
        return [_file_source(p, strict=False) for p in videos]
    if not path.exists():
        raise SourceError(f"source {spec} is not a file, a folder, a camera index or a URL")
    return [_file_source(path)]


def unique_names(sources: list[FrameSource]) -> None:
    """Give every source of one run its own output name: sources whose stems collide
    (``01.mp4``, ``01.avi``) take their file name, and any name still taken gets ``-2``, ``-3``."""
    stems: dict[str, int] = {}
    for s in sources:
        stems[s.name] = stems.get(s.name, 0) + 1
    taken: set[str] = set()
    for s in sources:
        name = Path(s.spec).name if s.kind == "file" and stems[s.name] > 1 else s.name
        base, k = name, 2
        while name in taken:
            name, k = f"{base}-{k}", k + 1
        taken.add(name)
        s.name = name


def _file_source(path: Path, strict: bool = True) -> FrameSource:
    try:
        reader = VideoReader(path)
    except VideoError as exc:
        if strict:
            raise SourceError(str(exc)) from exc
        return FrameSource(str(path), path.stem, "file")
    info = reader.info
    reader.close()
    return FrameSource(str(path), path.stem, "file", fps=info.fps, frames_declared=info.n_frames,
                       width=info.width, height=info.height)


def _fps(cap: cv2.VideoCapture) -> float:
    fps = float(cap.get(cv2.CAP_PROP_FPS))
    return fps if np.isfinite(fps) and fps > 0 else 0.0
