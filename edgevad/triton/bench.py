"""N cameras at once, served by Triton or in-process: per-camera latency and total frames/s.

Each camera is a thread with its own detector (as each camera box would have its own client),
pushing its frames as fast as they are scored. A clip's latency is the time of the ``push``
that completed it (pre-processing of that frame, the request or engine run, the results);
frames that complete no clip are counted in frames/s but are not latency samples. The served
mode uses one :class:`~edgevad.triton.client.TritonDetector` per camera; the in-process mode
one :class:`~edgevad.runtime.detector.Detector` per camera over shared ONNX Runtime sessions
(one process serving every camera, as a Triton server does). Same frames, same driver, so the
two rows compare. No timed assertions anywhere: figures only.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from edgevad.bench.stats import LatencyStats
from edgevad.runtime.detector import Detector

__all__ = ["CamerasResult", "bench_cameras", "in_process_factory", "served_factory"]


@dataclass
class CamerasResult:
    mode: str
    cameras: int
    frames_per_camera: int
    wall_s: float
    frames_per_s: float
    """All cameras' frames over the wall time."""
    clip_latency: LatencyStats | None
    """Every camera's clip latencies pooled."""
    per_camera_p50_ms: list[float] = field(default_factory=list)
    per_camera_p99_ms: list[float] = field(default_factory=list)
    clips: int = 0
    errors: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["clip_latency"] = None if self.clip_latency is None else self.clip_latency.to_dict()
        return d


def in_process_factory(artifact: str | Path, **load) -> Callable[[], Detector]:
    """Detectors over one set of ONNX Runtime sessions (``Detector.load``'s ``backend``,
    ``providers``, ``threads`` pass through)."""
    base = Detector.load(artifact, **load)

    def make() -> Detector:
        return Detector(base.manifest, base.engines, artifact_dir=base.artifact_dir)

    return make


def served_factory(url: str, model: str, protocol: str = "grpc") -> Callable[[], Detector]:
    from edgevad.triton.client import TritonDetector

    def make() -> Detector:
        return TritonDetector.connect(url, model, protocol=protocol, timeout_s=600)

    return make


def bench_cameras(make: Callable[[], Detector], frames: list[np.ndarray], cameras: int, *,
                  mode: str, warmup: bool = True) -> CamerasResult:
    """Drive ``cameras`` threads, each with ``make()``'s detector, through ``frames`` (camera
    ``i`` starts ``i`` frames later in the list, wrapping, so clips differ between cameras)."""
    if cameras < 1 or not frames:
        raise ValueError("need at least one camera and one frame")
    if warmup:  # first requests pay for connections and lazy allocations
        det = make()
        for f in frames[:max(1, det.geometry.clip_len)]:
            det.push(f, "warmup")
        det.flush("warmup")
        _close(det)
    detectors = [make() for _ in range(cameras)]
    samples: list[list[float]] = [[] for _ in range(cameras)]
    errors: list[str] = []
    start = threading.Barrier(cameras + 1)

    def camera(i: int) -> None:
        det, n = detectors[i], len(frames)
        mine = [frames[(i + j) % n] for j in range(n)]
        start.wait()
        try:
            for f in mine:
                t0 = time.perf_counter()
                results = det.push(f, f"cam{i}")
                dt = time.perf_counter() - t0
                if results:
                    samples[i].append(dt)
            t0 = time.perf_counter()
            if det.flush(f"cam{i}"):
                samples[i].append(time.perf_counter() - t0)
        except Exception as exc:  # reported, never hidden
            errors.append(f"cam{i}: {exc}")

    threads = [threading.Thread(target=camera, args=(i,), daemon=True) for i in range(cameras)]
    for t in threads:
        t.start()
    start.wait()
    t_start = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t_start
    for det in detectors:
        _close(det)
    pooled = [s for cam in samples for s in cam]
    return CamerasResult(
        mode=mode, cameras=cameras, frames_per_camera=len(frames), wall_s=wall,
        frames_per_s=cameras * len(frames) / wall if wall > 0 else 0.0,
        clip_latency=LatencyStats.from_seconds(pooled) if pooled else None,
        per_camera_p50_ms=[LatencyStats.from_seconds(c).p50_ms if c else float("nan")
                           for c in samples],
        per_camera_p99_ms=[LatencyStats.from_seconds(c).p99_ms if c else float("nan")
                           for c in samples],
        clips=len(pooled), errors=errors)


def _close(det: Detector) -> None:
    close = getattr(det, "close", None)
    if close is not None:
        close()
