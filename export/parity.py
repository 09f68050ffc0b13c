"""Export parity: run each stage in PyTorch and in ONNX Runtime on real inputs and compare.

The backbone sees clips decoded from a sample video (or, without one, deterministic synthetic
frames, and the report says ``"synthetic"``) and preprocessed exactly as the manifest's geometry
says (:func:`edgevad.media.preprocess.preprocess_frame`); DMRM's motion stage sees encoded DIS flow of
the same frames (:mod:`edgevad.media.motion`); the head sees the backbone's (PyTorch) outputs arranged
the way the runtime will feed them: segment bags for MIL-type heads, ``(this clip's map,
previous clip's map)`` pairs for DAM. Each comparison uses :func:`edgevad.artifact.compare.compare_outputs`.
The symbolic axes are exercised too: the backbone also runs with batch 1, a segment head with
batch 1 and a different segment count.

The report is ``parity.json`` in the artifact; a failure is a :class:`ParityError`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edgevad.artifact import zoo
from edgevad.artifact.compare import ComparisonResult, Tolerance, compare_outputs, tolerance_for
from edgevad.artifact.segments import resample_segments
from edgevad.errors import EdgevadError
from edgevad.fetch.hashing import sha256_file

log = logging.getLogger(__name__)

__all__ = ["ParityError", "StageRun", "make_clips", "make_flow_clips", "read_frames",
           "run_parity", "synthetic_frames"]

PROVIDER = "CPUExecutionProvider"


class ParityError(EdgevadError):
    """The exported graphs do not reproduce PyTorch within tolerance."""


@dataclass
class StageRun:
    """One exported stage: the module that was exported and the file it became."""

    name: str
    module: nn.Module
    path: Path
    input_names: Sequence[str]
    output_names: Sequence[str]
    segments_symbolic: bool = False


# --- Inputs ---------------------------------------------------------------------------------------

def synthetic_frames(n: int, height: int = 240, width: int = 320, seed: int = 0) -> list[np.ndarray]:
    """``n`` deterministic BGR uint8 frames: a textured background with a bright square moving
    across it (so flow and clip differences are not zero) plus seeded noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([(xx * 255 // max(width - 1, 1)), (yy * 255 // max(height - 1, 1)),
                     ((xx + yy) * 3) % 256], axis=-1).astype(np.int16)
    frames = []
    for i in range(n):
        frame = base + rng.integers(-20, 21, size=base.shape, dtype=np.int16)
        x0 = (i * 7) % max(width - 40, 1)
        y0 = height // 3 + int(20 * np.sin(i / 5))
        frame[y0:y0 + 40, x0:x0 + 40] = 230
        frames.append(np.clip(frame, 0, 255).astype(np.uint8))
    return frames


def read_frames(path: str | Path, n: int) -> tuple[list[np.ndarray], dict]:
    """The first ``n`` frames of a video (the last one repeated if it is shorter, as extraction
    pads a tail clip) and a record of where they came from."""
    from edgevad.media.video import VideoReader

    path = Path(path)
    frames: list[np.ndarray] = []
    reader = VideoReader(path, strict=False)
    with reader:
        for frame in reader:
            frames.append(frame)
            if len(frames) == n:
                break
    if not frames:
        raise ParityError(f"sample video {path} decoded no frames")
    decoded = len(frames)
    frames += [frames[-1]] * (n - decoded)
    return frames, {"source": "video", "video": path.name, "video_sha256": sha256_file(path),
                    "frames": n, "frames_decoded": decoded, "padded": n - decoded}


def _preprocess(frame: np.ndarray, geometry: zoo.InputGeometry) -> np.ndarray:
    from edgevad.media.preprocess import preprocess_frame

    return preprocess_frame(frame, geometry)


def make_clips(frames: Sequence[np.ndarray], geometry: zoo.InputGeometry,
               starts: Sequence[int]) -> np.ndarray:
    """float32 [len(starts), C, T, H, W] clips of ``geometry.clip_len`` frames."""
    T = geometry.clip_len
    cache: dict[int, np.ndarray] = {}
    clips = []
    for s in starts:
        planes = [cache.setdefault(i, _preprocess(frames[i], geometry)) for i in range(s, s + T)]
        clips.append(np.stack(planes, axis=1))
    return np.ascontiguousarray(np.stack(clips), dtype=np.float32)


def make_flow_clips(frames: Sequence[np.ndarray], geometry: zoo.InputGeometry,
                    starts: Sequence[int], bound: float) -> np.ndarray:
    """float32 [len(starts), 2, T, h, w] encoded DIS flow, one estimator over the whole stream
    (as live inference runs it)."""
    from edgevad.media.motion import FlowEstimator, encode_flow

    est = FlowEstimator(size=tuple(geometry.size))
    maps = [encode_flow(est(f), bound) for f in frames]
    T = geometry.clip_len
    clips = [np.stack(maps[s:s + T], axis=1) for s in starts]
    return np.ascontiguousarray(np.stack(clips), dtype=np.float32)


# --- Running --------------------------------------------------------------------------------------

def _run_torch(stage: StageRun, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    with torch.no_grad():
        out = stage.module.eval()(*(torch.from_numpy(feeds[n]) for n in stage.input_names))
    if isinstance(out, torch.Tensor):
        out = (out,)
    return {n: o.detach().cpu().numpy() for n, o in zip(stage.output_names, out)}


class _Sessions:
    def __init__(self) -> None:
        self._sessions: dict[Path, object] = {}

    def run(self, stage: StageRun, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import onnxruntime as ort

        sess = self._sessions.get(stage.path)
        if sess is None:
            sess = ort.InferenceSession(str(stage.path), providers=[PROVIDER])
            self._sessions[stage.path] = sess
        out = sess.run(list(stage.output_names), {n: feeds[n] for n in stage.input_names})
        return dict(zip(stage.output_names, out))


def _segment_bag(features: np.ndarray, segments: int) -> np.ndarray:
    """[n_clips, D] clip features -> [2, S, D]: the clips resampled in order and in reverse."""
    rows = [resample_segments(features, segments), resample_segments(features[::-1], segments)]
    return np.ascontiguousarray(np.stack(rows), dtype=np.float32)


def run_parity(
    stages: dict[str, StageRun],
    *,
    geometry: zoo.InputGeometry,
    head_inputs: Sequence[str],
    segments: int | None,
    motion_geometry: zoo.InputGeometry | None = None,
    flow_bound: float | None = None,
    sample_video: str | Path | None = None,
    tolerance: Tolerance | None = None,
    n_clips: int = 2,
) -> dict:
    """Compare every stage in ``stages`` (keys ``backbone``, optional ``motion``, ``head``);
    return the ``parity.json`` report. Does not raise on a mismatch: see ``report["passed"]``."""
    tolerance = tolerance or tolerance_for("fp32")
    t0 = time.perf_counter()
    starts = [i * geometry.stride for i in range(n_clips)]
    T = geometry.clip_len
    if motion_geometry is not None:
        T = max(T, motion_geometry.clip_len)
    n_frames = starts[-1] + T
    if sample_video is not None:
        frames, source = read_frames(sample_video, n_frames)
    else:
        frames = synthetic_frames(n_frames)
        source = {"source": "synthetic", "frames": n_frames,
                  "generator": "edgevad_export.parity.synthetic_frames(seed=0, 240x320)"}
    tol = {"atol": tolerance.atol, "rtol": tolerance.rtol}
    sessions = _Sessions()
    checks: dict[str, ComparisonResult] = {}
    shapes: dict[str, dict[str, list[int]]] = {}

    def check(label: str, stage: StageRun, feeds: dict[str, np.ndarray],
              reference: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        ref = _run_torch(stage, feeds) if reference is None else reference
        got = sessions.run(stage, feeds)
        checks[label] = compare_outputs(ref, got, atol=tolerance.atol, rtol=tolerance.rtol)
        shapes[label] = {n: list(v.shape) for n, v in feeds.items()}
        log.info("parity %s: %s", label, "ok" if checks[label] else checks[label].summary())
        return ref

    backbone = stages["backbone"]
    clips = make_clips(frames, geometry, starts)
    feeds = {backbone.input_names[0]: clips}
    bb_ref = check("backbone", backbone, feeds)
    check("backbone[batch=1]", backbone, {backbone.input_names[0]: clips[:1]},
          reference={k: v[:1] for k, v in bb_ref.items()})

    motion_ref = None
    if "motion" in stages:
        motion = stages["motion"]
        flows = make_flow_clips(frames, motion_geometry, starts, flow_bound)
        motion_ref = check("motion", motion, {motion.input_names[0]: flows})

    head = stages["head"]
    if "clip_map" in head_inputs:
        fmap = bb_ref["feature_map"]
        # clip 1 against clip 0, and clip 0 as a stream's first clip (compared with itself)
        feeds = {"clip_map": np.ascontiguousarray(fmap[[1, 0]]),
                 "prev_map": np.ascontiguousarray(fmap[[0, 0]])}
        check("head", head, feeds)
        check("head[batch=1]", head, {k: v[:1] for k, v in feeds.items()})
    else:
        streams = {"features": bb_ref["features"], "appearance": bb_ref["features"]}
        if motion_ref is not None:
            streams["motion"] = motion_ref["features"]
        S = segments or 32
        feeds = {name: _segment_bag(streams[name], S) for name in head_inputs}
        check("head", head, feeds)
        if head.segments_symbolic:
            check("head[batch=1,segments=5]", head,
                  {name: _segment_bag(streams[name], 5)[:1] for name in head_inputs})
        else:
            check("head[batch=1]", head, {k: v[:1] for k, v in feeds.items()})

    passed = all(checks.values())
    worst = max((c.max_abs for c in checks.values() if c.max_abs is not None), default=None)
    return {
        "passed": passed,
        "max_abs": worst,
        "tolerance": tol,
        "reference": f"torch {torch.__version__} (CPU, eval, no_grad)",
        "candidate": _ort_version(),
        "input": {**source, "clip_starts": starts},
        "seconds": round(time.perf_counter() - t0, 3),
        "checks": {label: {"inputs": shapes[label], **c.to_dict()} for label, c in checks.items()},
    }


def _ort_version() -> str:
    import onnxruntime as ort

    return f"onnxruntime {ort.__version__} ({PROVIDER})"


def failure_message(report: dict) -> str:
    """One paragraph naming the failing checks and outputs (for :class:`ParityError`)."""
    parts = []
    for label, check in report["checks"].items():
        if check["passed"]:
            continue
        bad = [f"{name} max_abs={o['max_abs']}" + (f" ({o['error']})" if o.get("error") else "")
               for name, o in check["outputs"].items() if not o["passed"]]
        parts.append(f"{label}: {', '.join(bad)}")
    tol = report["tolerance"]
    return (f"ONNX Runtime does not reproduce PyTorch within atol={tol['atol']}, "
            f"rtol={tol['rtol']}: " + "; ".join(parts))
