"""``edgevad.Detector``: frames in, per-frame anomaly scores and events out, for many cameras.

    det = edgevad.Detector.load("artifacts/mil-i3d")
    for frame in camera:                      # H x W x 3 uint8 BGR, as OpenCV gives them
        for r in det.push(frame, stream="gate", timestamp=t):
            print(r.index, r.score, r.label)  # as soon as the frame's clip has run
    det.flush("gate")                         # the frames still in the buffer at the end

**Latency.** A clip of ``clip_len`` frames starts every ``stride`` frames; clip ``k`` scores
frames ``[k * stride, (k + 1) * stride)`` and runs when its last frame arrives, so a frame's
score comes ``clip_len - stride`` to ``clip_len - 1`` frames after it (:attr:`latency_frames`;
I3D at 16/16: 0-15 frames, about 0.5 s at 30 fps). Frames after the last full clip are scored
by :meth:`flush` with one more clip padded by repeating the last frame (as ``edgevad extract``
does), so streaming a video and :meth:`score_video` agree exactly.

**Many streams.** Each stream id has its own :class:`~edgevad.runtime.stream.StreamSession`
(clip buffer, flow, DAM state, pending frames, events); the engines are shared. :meth:`process`
takes one frame per stream and runs every clip completed in that call in one engine batch.
Streams idle for ``idle_timeout_s`` are evicted (flushed, results returned) by
:meth:`evict_idle`, which :meth:`process` and :meth:`push` also call; :meth:`push` returns only
its own stream's results, so the final results of streams it evicts wait in :meth:`evicted`
(nothing is dropped).

**Events** closed so far are drained by :meth:`events`; with ``on_event`` they go to the callback
instead and are not also queued (a callback-only app would otherwise grow the queue forever).

**Threads.** One Detector may be shared by threads: every public method holds one re-entrant
lock around the session state, so calls are serialised (the engines run one batch at a time;
for parallel inference, give each thread its own Detector, or batch streams in :meth:`process`).

**Bad input** is a :class:`~edgevad.runtime.stream.FrameError` raised before any state changes:
the stream and all others continue as if the call had not happened. A resolution change needs
``flush(s)`` + ``reset(s)`` (or a new stream id); timestamps must not go backwards.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from edgevad.artifact.manifest import Manifest, ManifestError, load_manifest
from edgevad.errors import ConfigError, EdgevadError
from edgevad.media.video import VideoReader
from edgevad.runtime.engines import BackendChoice, Engine, EngineError, open_engines
from edgevad.runtime.events import EventConfig, EventTracker
from edgevad.runtime.pipeline import Pipeline
from edgevad.runtime.results import AnomalyEvent, FrameResult
from edgevad.runtime.stream import FrameError, StreamSession, check_feature_record

__all__ = ["Detector", "VideoScores"]

log = logging.getLogger(__name__)

DEFAULT_STREAM = "0"


@dataclass
class VideoScores:
    """:meth:`Detector.score_video`'s result: one entry per decoded frame."""

    path: str
    fps: float
    scores: np.ndarray
    results: list[FrameResult]
    events: list[AnomalyEvent] = field(default_factory=list)

    @property
    def labels(self) -> list[str | None]:
        return [r.label for r in self.results]


class Detector:
    """Runs an exported artifact on live frames (module doc). Build it with :meth:`load`."""

    def __init__(self, manifest: Manifest, engines: dict[str, Engine], *, artifact_dir: Path,
                 events: EventConfig | None = None,
                 on_event: Callable[[AnomalyEvent], object] | None = None,
                 fps: float | None = None, max_batch: int = 16,
                 idle_timeout_s: float | None = None):
        self.manifest = manifest
        self.artifact_dir = artifact_dir
        self.engines = engines
        for stage in ("head",) if manifest.features is not None else ("backbone", "head"):
            if not manifest.has_stage(stage):
                raise ManifestError(f"the manifest has no {stage!r} stage (stages: "
                                    f"{[s.name for s in manifest.stages]}); re-export the model")
        if manifest.features is not None:  # no backbone: the streams compute the head's input
            check_feature_record(manifest.features)
        self.pipeline = Pipeline(manifest, engines)
        self.geometry = manifest.input_geometry()
        self.flow_geometry = manifest.geometry("motion") if manifest.has_stage("motion") else None
        if manifest.features is None:
            _check_geometry(manifest, self.geometry)
            from edgevad.artifact.protocols import check_manifest_protocol

            check_manifest_protocol(manifest)  # the head's training features = this backbone's
        self.event_config = events or EventConfig()
        self.threshold, self.release = self.event_config.resolve(
            manifest.default_threshold, manifest.score_range)
        self.on_event = on_event
        self.fps = fps
        if not isinstance(max_batch, int) or max_batch < 1:
            raise ConfigError(f"max_batch must be an int >= 1, got {max_batch!r}")
        self.max_batch = int(max_batch)
        self.idle_timeout_s = idle_timeout_s
        self._streams: dict[str, StreamSession] = {}
        self._events: deque[AnomalyEvent] = deque()
        self._evicted: dict[str, list[FrameResult]] = {}
        self._capture: dict[str, list[AnomalyEvent]] = {}  # score_video's private streams
        self._lock = threading.RLock()
        self.backend_choice: BackendChoice | None = None

    # -- construction ------------------------------------------------------------------------------
    @classmethod
    def load(cls, artifact_dir: str | Path, backend: str = "auto",
             providers: Sequence | None = None, threads: int | None = None, *,
             device: str | None = None, precision: str | None = None, **options
             ) -> Detector:
        """Read and verify ``artifact_dir``'s manifest (hashes, versions, graph signatures) and
        open one engine per stage. ``backend``: ``"auto"`` (TensorRT engines when TensorRT and
        engines for this GPU are there, else OpenVINO when installed, else ONNX Runtime; the
        choice and its reason are :attr:`backend_choice`), ``"onnxruntime"``, ``"openvino"``
        or ``"tensorrt"``. ``providers``: ONNX Runtime execution providers (default CPU).
        ``device`` / ``precision``: OpenVINO's (``CPU``/``GPU``/``NPU``/``AUTO``;
        ``f32`` default, ``bf16``, ``f16``). ``options``: ``events`` (:class:`EventConfig`),
        ``on_event``, ``fps``, ``max_batch``, ``idle_timeout_s``."""
        unknown = set(options) - {"events", "on_event", "fps", "max_batch", "idle_timeout_s"}
        if unknown:
            raise TypeError(f"Detector.load() got unknown options {sorted(unknown)}")
        folder = Path(artifact_dir)
        manifest = load_manifest(folder, verify=True)
        try:
            return cls._load(folder, manifest, backend, providers, threads, device, precision,
                             options)
        except (TypeError, ValueError, KeyError, AttributeError, IndexError) as exc:
            if isinstance(exc, EdgevadError):
                raise
            # the manifest passed its checks but a value in it cannot be used (a state that is
            # not a mapping, a tensor spec of the wrong kind): name the file, not a traceback
            raise ManifestError(f"malformed manifest {folder / 'manifest.json'}: "
                                f"{type(exc).__name__}: {exc}") from exc

    @classmethod
    def _load(cls, folder: Path, manifest: Manifest, backend: str, providers, threads,
              device: str | None, precision: str | None, options: dict) -> Detector:
        engines, choice = open_engines(folder, manifest, backend, providers, threads,
                                       device=device, precision=precision)
        det = cls(manifest, engines, artifact_dir=folder, **options)
        det.backend_choice = choice
        return det

    # -- facts -------------------------------------------------------------------------------------
    @property
    def backend(self) -> str:
        return next(iter(self.engines.values())).backend

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(self.manifest.class_names)

    @property
    def latency_frames(self) -> tuple[int, int]:
        """Fewest and most frames between a frame's arrival and its score (before flush)."""
        g = self.geometry
        return max(0, g.clip_len - g.stride), g.clip_len - 1

    @property
    def streams(self) -> list[str]:
        with self._lock:
            return list(self._streams)

    def frames_seen(self, stream: str = DEFAULT_STREAM) -> int:
        with self._lock:
            s = self._streams.get(str(stream))
            return 0 if s is None else s.buffer.frames

    # -- frames in ---------------------------------------------------------------------------------
    def push(self, frame: np.ndarray, stream: str = DEFAULT_STREAM,
             timestamp: float | None = None) -> list[FrameResult]:
        """Add one frame of ``stream``; returns the frame results that became known."""
        stream = str(stream)
        ts = None if timestamp is None else {stream: timestamp}
        with self._lock:
            results = self.process({stream: frame}, ts)
            mine = results.pop(stream, [])
            for sid, lst in results.items():  # streams this call evicted: kept for evicted()
                if lst:
                    self._evicted.setdefault(sid, []).extend(lst)
            return mine

    def process(self, frames: Mapping[str, np.ndarray],
                timestamps: Mapping[str, float] | None = None) -> dict[str, list[FrameResult]]:
        """One frame for each of several streams; clips completed in this call run in one
        batch. Every frame is checked first: one bad frame raises :class:`FrameError` (naming
        its stream) and no stream changes. Stream ids are strings (other keys are converted,
        in ``timestamps`` too)."""
        with self._lock:
            return self._process(frames, timestamps)

    def _process(self, frames: Mapping[str, np.ndarray],
                 timestamps: Mapping[str, float] | None) -> dict[str, list[FrameResult]]:
        frames = _by_stream(frames, "frames")
        timestamps = _by_stream(timestamps or {}, "timestamps")
        checked = []
        for sid, frame in frames.items():
            session = self._streams.get(sid) or self._new_session(sid)
            checked.append((sid, session, session.check(frame, timestamps.get(sid))))
        jobs = []
        for sid, session, frame in checked:
            self._streams.setdefault(sid, session)
            done = session.add(frame, timestamps.get(sid))
            if done is not None:
                jobs.append((session, session.buffer.clips - 1, *done,
                             (session.buffer.clips) * session.buffer.stride))
        results: dict[str, list[FrameResult]] = {sid: [] for sid, _, _ in checked}
        for sid, lst in self._run(jobs).items():
            results[sid].extend(lst)
        for sid, session, _ in checked:  # frames an earlier clip already covers (stride > len)
            results[sid].extend(self._track(session, session.emit()))
        if self.idle_timeout_s is not None:  # not the streams fed now, however long this took
            for sid, lst in self._evict_idle(self.idle_timeout_s, keep=frames).items():
                results.setdefault(sid, []).extend(lst)
        return results

    def flush(self, stream: str | None = None) -> list[FrameResult]:
        """Score every frame still waiting in ``stream`` (all streams when None), closing open
        events; the stream then needs :meth:`reset` before new frames."""
        with self._lock:
            return self._flush(stream)

    def _flush(self, stream: str | None) -> list[FrameResult]:
        sessions = list(self._streams.values()) if stream is None else [self._session(stream)]
        jobs = []
        for s in sessions:
            if s.finished:
                continue
            tail = s.buffer.tail()
            if tail is not None:
                clip, start, _ = tail
                flow = None
                if s.flow_buffer is not None:
                    ftail = s.flow_buffer.tail()
                    flow = None if ftail is None else ftail[0]
                jobs.append((s, s.buffer.clips, s.clip_input(clip), flow, None))
        out = self._run(jobs)
        results = []
        for s in sessions:
            if s.finished:
                continue
            results.extend(out.get(s.stream, []))
            results.extend(self._track(s, s.emit(everything=True)))
            event = s.events.finish()
            if event is not None:
                self._deliver(event)
            s.finished = True
        return results

    def reset(self, stream: str = DEFAULT_STREAM) -> None:
        """Forget a stream's frames and state (a camera restarted, a cut, a new resolution)."""
        with self._lock:
            self._session(stream).reset()

    def remove(self, stream: str) -> None:
        """Drop a stream without scoring its pending frames."""
        with self._lock:
            self._streams.pop(str(stream), None)
            self._evicted.pop(str(stream), None)

    def evict_idle(self, max_idle_s: float) -> dict[str, list[FrameResult]]:
        """Flush and drop streams without a frame for ``max_idle_s`` seconds."""
        with self._lock:
            return self._evict_idle(max_idle_s)

    def _evict_idle(self, max_idle_s: float, keep=()) -> dict[str, list[FrameResult]]:
        now = time.monotonic()
        out = {}
        for sid in [sid for sid, s in self._streams.items()
                    if now - s.last_seen > max_idle_s and sid not in keep]:
            out[sid] = self._flush(sid)
            del self._streams[sid]
        return out

    def evicted(self) -> dict[str, list[FrameResult]]:
        """Drain the final results of streams that :meth:`push` evicted (``idle_timeout_s``)
        while pushing another stream's frame: {stream: results}."""
        with self._lock:
            out, self._evicted = self._evicted, {}
            return out

    # -- events ------------------------------------------------------------------------------------
    def events(self) -> Iterator[AnomalyEvent]:
        """Drain the events closed so far (all streams, in the order they closed). Empty when
        the Detector has an ``on_event`` callback: events go there instead."""
        while True:
            with self._lock:
                if not self._events:
                    return
                event = self._events.popleft()
            yield event

    # -- offline -----------------------------------------------------------------------------------
    def score_video(self, path: str | Path, *, strict: bool = True,
                    progress: Callable[[int], object] | None = None) -> VideoScores:
        """Score every frame of a video file: exactly what streaming its frames gives.

        Runs on a private stream id, so live streams are untouched; timestamps are frame / fps.
        """
        reader = VideoReader(path, strict=strict)
        fps = reader.info.fps or (self.fps or 0.0)
        with self._lock:
            sid, n = str(path), 1
            while sid in self._streams or sid in self._capture:
                sid, n = f"{path}#{n}", n + 1
            events: list[AnomalyEvent] = []
            self._capture[sid] = events
        results: list[FrameResult] = []
        try:
            for i, frame in enumerate(reader):
                results.extend(self.push(frame, sid, i / fps if fps else None))
                if progress is not None:
                    progress(i + 1)
            results.extend(self.flush(sid))
        finally:
            with self._lock:
                self._streams.pop(sid, None)
                self._capture.pop(sid, None)
                results.extend(self._evicted.pop(sid, []))
            reader.close()
        return VideoScores(str(path), fps, np.array([r.score for r in results]), results, events)

    # -- internals ---------------------------------------------------------------------------------
    def _new_session(self, sid: str) -> StreamSession:
        tracker = EventTracker(sid, self.threshold, self.release, self.event_config.min_frames,
                               self.event_config.max_gap)
        return StreamSession(sid, self.geometry, flow=self.manifest.flow,
                             flow_geometry=self.flow_geometry, events=tracker,
                             class_names=self.class_names, fps=self.fps,
                             features=self.manifest.features)

    def _session(self, stream: str) -> StreamSession:
        try:
            return self._streams[str(stream)]
        except KeyError:
            raise EdgevadError(f"unknown stream {stream!r}; streams: {self.streams}") from None

    def _run(self, jobs: list) -> dict[str, list[FrameResult]]:
        """Run (session, clip index, clip, flow, covers_until) jobs in batches of max_batch."""
        results: dict[str, list[FrameResult]] = {}
        for b in range(0, len(jobs), self.max_batch):
            batch = jobs[b:b + self.max_batch]
            flows = [j[3] for j in batch] if self.pipeline.has_motion else None
            outputs = self.pipeline.run([j[2] for j in batch], flows,
                                        [j[0].clip_state for j in batch])
            for (session, k, _, _, covers), output in zip(batch, outputs):
                emitted = session.scored(k, output, covers)
                results.setdefault(session.stream, []).extend(self._track(session, emitted))
        return results

    def _track(self, session: StreamSession, results: list[FrameResult]) -> list[FrameResult]:
        for r in results:
            event = session.events.update(r)
            if event is not None:
                self._deliver(event)
        return results

    def _deliver(self, event: AnomalyEvent) -> None:
        captured = self._capture.get(event.stream)
        if captured is not None:  # score_video's stream: its result holds them
            captured.append(event)
        elif self.on_event is None:
            self._events.append(event)
        if self.on_event is not None:
            self.on_event(event)


def _by_stream(mapping: Mapping, what: str) -> dict:
    """``mapping`` keyed by stream id strings; two keys naming one stream (1 and "1") clash."""
    if not isinstance(mapping, Mapping):
        raise FrameError(f"{what} must be a mapping of stream id to value, got "
                         f"{type(mapping).__name__}")
    out = {}
    for key, value in mapping.items():
        sid = str(key)
        if sid in out:
            raise FrameError(f"{what}: stream {sid!r} is given twice ({key!r} and {sid!r})")
        out[sid] = value
    return out


def _check_geometry(manifest: Manifest, g) -> None:
    """The manifest's pixel geometry must be usable and agree with its clip protocol."""
    from edgevad.media.preprocess import frame_plan

    try:
        frame_plan(g)
    except ValueError as exc:
        raise ManifestError(f"backbone geometry in the manifest is unusable: {exc}") from None
    p = manifest.protocol
    if (p.clip_len, p.stride) != (g.clip_len, g.stride):
        raise ManifestError(f"protocol clips ({p.clip_len} frames every {p.stride}) differ from "
                            f"the backbone geometry's ({g.clip_len} every {g.stride})")
    clip = manifest.stage("backbone").inputs[0]
    want = (g.channels, g.clip_len, *g.size)
    if tuple(clip.shape[1:]) != want:
        raise ManifestError(f"backbone input {clip.name!r} is {list(clip.shape)}, the geometry "
                            f"says [batch, {', '.join(map(str, want))}]")


__all__ += ["EngineError", "EventConfig", "FrameError"]
