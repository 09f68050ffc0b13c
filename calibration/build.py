"""Build calibration sets from videos (pixel and motion stages) or feature bags (heads).

Clips are sampled across the videos: the requested number of clips is shared out as evenly as
the videos allow, and within a video the clip starts are spread evenly from its first to its last
full clip, so a set sees every scene and every part of it rather than the first seconds of one.
Pixels go through the runtime's own preprocessing (:mod:`edgevad.media.preprocess`); flow goes through
the runtime's :class:`edgevad.media.motion.FlowEstimator`, started one frame before each clip so its
first frame has real flow, as in a running stream (a clip at frame 0 starts with zero flow, as a
stream does).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from pathlib import Path

import cv2
import numpy as np

from edgevad.artifact.records import file_record
from edgevad.artifact.zoo import InputGeometry
from edgevad.errors import EdgevadError
from edgevad.media.preprocess import preprocess_frame, resized_shape
from edgevad.media.video import VIDEO_EXTENSIONS, VideoError, VideoReader, list_videos
from edgevad_calibration.dataset import FLOAT, FRAMES, CalibrationError, CalibrationSet

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_SAMPLES", "build_from_bags", "build_from_videos", "collect_videos",
           "head_set_from_features", "spread_starts"]

DEFAULT_SAMPLES = 32
"""Clips per set by default: 512 frames at 16 frames a clip. More samples help Entropy and
Percentile little on one camera and cost calibration time on the CPU."""
LIST_EXTENSIONS = (".txt", ".lst", ".list", ".csv")


def collect_videos(inputs: Iterable[str | Path]) -> list[Path]:
    """Videos from files, folders (their video files, sorted) and list files (first column of
    each line, relative to the list; ``#`` comments)."""
    return [path for path, _ in _collect_named(inputs)]


def _collect_named(inputs: Iterable[str | Path]) -> list[tuple[Path, Path]]:
    """:func:`collect_videos`, each video with the input the user named that led to it (the
    root its record's path is taken from, :func:`edgevad.artifact.records.record_path`)."""
    out: list[tuple[Path, Path]] = []
    for raw in inputs:
        path = Path(raw)
        if path.is_dir():
            found = list_videos(path)
            if not found:
                raise CalibrationError(f"folder {path} holds no video "
                                       f"({', '.join(VIDEO_EXTENSIONS)})")
            out += [(p, path) for p in found]
        elif path.suffix.lower() in LIST_EXTENSIONS:
            if not path.is_file():
                raise CalibrationError(f"video list {path} does not exist")
            for line in path.read_text("utf-8").splitlines():
                line = line.split(",")[0].strip()
                if line and not line.startswith("#"):
                    p = Path(line)
                    out.append((p if p.is_absolute() else path.parent / p, path))
        elif path.is_file():
            out.append((path, path))
        else:
            raise CalibrationError(f"calibration input {path} does not exist")
    if not out:
        raise CalibrationError("no calibration video given")
    return out


def spread_starts(n_frames: int, clip_len: int, k: int) -> list[int]:
    """``k`` clip starts spread evenly over a video of ``n_frames`` (distinct where possible)."""
    last = max(n_frames - clip_len, 0)
    if k <= 0:
        return []
    if k == 1:
        return [last // 2]
    return sorted(set(int(round(i * last / (k - 1))) for i in range(k)))


def _share(total: int, n: int) -> list[int]:
    base, extra = divmod(total, n)
    return [base + (1 if i < extra else 0) for i in range(n)]


def resize_crop(frame: np.ndarray, geometry: InputGeometry) -> np.ndarray:
    """The uint8 BGR frame after the geometry's resize and centre crop: the same steps, in the same
    order, as :func:`edgevad.media.preprocess.preprocess_frame` (checked against it at build time)."""
    th, tw = (int(s) for s in geometry.size)
    h, w = frame.shape[:2]
    rh, rw = resized_shape(h, w, geometry)
    img = frame if (rh, rw) == (h, w) else cv2.resize(frame, (rw, rh),
                                                      interpolation=cv2.INTER_LINEAR)
    if (rh, rw) != (th, tw):
        if geometry.crop != "center" or rh < th or rw < tw:
            raise CalibrationError(f"a {h}x{w} frame does not fit geometry {geometry.size} "
                                   f"(resize {geometry.resize}, crop {geometry.crop})")
        top, left = int(round((rh - th) / 2.0)), int(round((rw - tw) / 2.0))
        img = img[top:top + th, left:left + tw]
    return np.ascontiguousarray(img)


def _check_exact(frame: np.ndarray, stored: np.ndarray, geometry: InputGeometry) -> None:
    from dataclasses import replace

    want = preprocess_frame(frame, geometry)
    got = preprocess_frame(stored, replace(geometry, resize=None, crop="none"))
    if not np.array_equal(want, got):
        raise CalibrationError("internal error: stored calibration frames do not reproduce the "
                               "runtime's preprocessing exactly")


def _is_flow(geometry: InputGeometry) -> bool:
    return geometry.flow_bound is not None or geometry.channels == 2


def _windows(path: Path, starts: Sequence[int], before: int, length: int) -> list[list[np.ndarray]]:
    """Frames ``[s - before, s + length)`` for each start (clamped at 0; a short video's last
    frame repeated, as extraction pads a tail clip), in one sequential decode."""
    wanted = {}
    for k, s in enumerate(starts):
        for i in range(max(s - before, 0), s + length):
            wanted.setdefault(i, []).append(k)
    windows: list[list[np.ndarray]] = [[] for _ in starts]
    last = None
    reader = VideoReader(path, strict=False)
    stop = max(wanted) if wanted else -1
    with reader:
        for i, frame in enumerate(reader):
            last = frame
            for k in wanted.get(i, ()):
                windows[k].append(frame)
            if i >= stop:
                break
    for k, s in enumerate(starts):
        need = s + length - max(s - before, 0)
        windows[k] += [last] * (need - len(windows[k]))
    return windows


def build_from_videos(
    videos: Iterable[str | Path],
    geometry: InputGeometry,
    *,
    samples: int = DEFAULT_SAMPLES,
    input_name: str | None = None,
    method: str = "minmax",
    progress: bool = False,
) -> CalibrationSet:
    """A set of ``samples`` clips of ``geometry`` sampled across ``videos`` (files, folders or
    list files). A flow geometry (``flow_bound`` set, 2 channels) gives motion-stage samples
    (encoded DIS flow), any other a backbone set. A video that cannot be decoded is an error
    naming it."""
    named = _collect_named(videos)
    if samples < 1:
        raise CalibrationError(f"samples must be >= 1, got {samples}")
    flow = _is_flow(geometry)
    role = "motion" if flow else "backbone"
    name = input_name or ("flow" if flow else "clip")
    if len(named) > samples:  # more videos than clips: take videos spread over the list
        pick = sorted(set(int(round(i * (len(named) - 1) / max(samples - 1, 1)))
                          for i in range(samples)))
        named = [named[i] for i in pick]
    paths = [path for path, _ in named]
    T = int(geometry.clip_len)
    clips, sources, video_index = [], [], []
    for vi, (path, k) in enumerate(zip(paths, _share(samples, len(paths)))):
        try:
            reader = VideoReader(path, strict=False)
            reader.close()
        except VideoError as exc:
            raise CalibrationError(f"calibration video {path}: {exc}") from exc
        declared = reader.info.n_frames
        starts = spread_starts(declared if declared > 0 else T, T, k)
        try:
            windows = _windows(path, starts, 1 if flow else 0, T)
        except VideoError as exc:
            raise CalibrationError(f"calibration video {path}: {exc}") from exc
        for s, frames in zip(starts, windows):
            clips.append(_flow_clip(frames, s, geometry) if flow
                         else np.stack([resize_crop(f, geometry) for f in frames]))
            video_index.append(vi)
        if not flow and windows:
            _check_exact(windows[0][0], clips[-len(windows)][0], geometry)
        sources.append(file_record(path, named=named[vi][1], frames_declared=declared,
                                   clip_starts=starts))
        if progress:
            log.info("calibration: %s, %d clip(s)", path.name, len(starts))
    arrays = {name: np.ascontiguousarray(np.stack(clips))}
    return CalibrationSet(
        role=role, arrays=arrays, encodings={name: FLOAT if flow else FRAMES},
        geometry=geometry.to_dict(), sources=sources, method=method,
        sampler={"kind": "videos", "clips_per_video": _share(samples, len(paths)),
                 "clip_len": T, "spread": "even starts from the first to the last full clip",
                 "video_index": video_index,
                 **({"flow": {"estimator": "opencv-dis", "preset": "ultrafast", "finest_scale": 1,
                              "bound": geometry.flow_bound, "warmup_frames": 1}} if flow else {})},
    )


def _flow_clip(frames: list[np.ndarray], start: int, geometry: InputGeometry) -> np.ndarray:
    from edgevad.media.motion import FLOW_BOUND, FlowEstimator, encode_flow

    est = FlowEstimator(size=tuple(int(s) for s in geometry.size))
    bound = float(geometry.flow_bound or FLOW_BOUND)
    if start > 0:  # the frame before the clip: the clip's first flow is real, as in a stream
        est(frames[0])
        frames = frames[1:]
    return np.stack([encode_flow(est(f), bound) for f in frames], axis=1).astype(np.float32)


def build_from_bags(
    path: str | Path,
    *,
    segments: int = 32,
    samples: int = 64,
    input_name: str = "features",
    method: str = "minmax",
) -> CalibrationSet:
    """A head set from a feature-bag file (``export/data/bags.py`` format): ``samples`` bags
    spread over the file (anomalous and normal alike), each resampled to ``segments``."""
    from edgevad.artifact.segments import resample_segments

    path = Path(path)
    from edgevad_export.data.bags import load_bags  # numpy only

    try:
        bags = load_bags(path)
    except (EdgevadError, OSError, ValueError, KeyError) as exc:
        raise CalibrationError(f"feature-bag file {path}: {exc}") from exc
    if len(bags) == 0:
        raise CalibrationError(f"feature-bag file {path} holds no usable bag")
    idx = sorted(set(int(round(i * (len(bags) - 1) / max(samples - 1, 1)))
                     for i in range(min(samples, len(bags)))))
    x = np.stack([resample_segments(bags.features[i], segments) for i in idx]).astype(np.float32)
    return CalibrationSet(
        role="head", arrays={input_name: x}, encodings={input_name: FLOAT}, method=method,
        sources=[file_record(path, bags=[str(bags.names[i]) for i in idx])],
        sampler={"kind": "feature-bags", "segments": segments, "bags": len(idx),
                 "labels": {"anomalous": int(np.sum(bags.labels[idx])),
                            "normal": int(len(idx) - np.sum(bags.labels[idx]))}},
    )


def head_set_from_features(
    streams: dict[str, np.ndarray],
    video_index: Sequence[int],
    *,
    segments: int,
    sources: list[dict],
    method: str = "minmax",
) -> CalibrationSet:
    """A segment-head set from per-clip features of a backbone set (``streams``: head input
    name -> [n_clips, D]): per video, its clips in order resampled to ``segments`` (as a window is
    pooled), then one bag per clip holding that clip in every segment, so the head's ranges see
    every calibration clip's features however few videos there are."""
    from edgevad.artifact.segments import resample_segments

    index = np.asarray(video_index)
    arrays = {}
    for name, feats in streams.items():
        bags = [resample_segments(feats[index == v], segments) for v in np.unique(index)]
        bags += [np.repeat(f[None], segments, axis=0) for f in feats]
        arrays[name] = np.stack(bags).astype(np.float32)
    return CalibrationSet(
        role="head", arrays=arrays, encodings={n: FLOAT for n in arrays}, method=method,
        sources=sources, sampler={"kind": "backbone-features", "segments": segments,
                                  "videos": int(len(np.unique(index))),
                                  "bags": "one per video (its clips) + one per clip"})
