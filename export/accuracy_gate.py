"""The accuracy gate of a reduced-precision export: fp32 graphs vs the exported ones, end to end.

Two measurements, both with ONNX Runtime on CPU over the whole pipeline (pixels -> backbone
[-> motion] -> head), each graph set run on its own (a quantized backbone feeds the quantized
head, as on the device):

- **per-clip score difference** on real clips: the sample video's first clips (consecutive, so
  DAM's state chains as it does live), else the calibration clips; for the exported precision
  and, where fp16 graphs exist, for fp16. A segment head scores each video's clips as one bag
  (one segment per clip when its segment axis is free). Reported; fails only past
  ``max_score_diff`` when that is set.
- **OpenVINO** (when installed), in the per-clip measurement: the fp32 graphs at OpenVINO's
  ``bf16`` inference precision (``openvino-bf16``) and the exported graphs at ``f32``
  (``openvino-int8`` / ``openvino-fp16``; for int8, OpenVINO's own NNCF graph where the export
  made one), i.e. what ``--backend openvino`` would run, each
  with the precision OpenVINO really compiled (``ran``: a CPU without bf16 runs f32). They count
  against ``max_score_diff`` like the exported precision.
- **frame AUC change** on labelled data (``--val``): a feature-bag file with frame annotations
  (head only: the bags are features already), or a folder of videos with a ``*labels*.json``
  (``{"video stem": [0/1 per frame]}``, the UCSD Ped2 layout) run from pixels. Fails when the
  AUC falls by more than ``max_auc_drop`` points (default 1).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np

from edgevad.artifact.manifest import Manifest
from edgevad.artifact.segments import resample_segments, segment_scores_to_frames
from edgevad.errors import EdgevadError

log = logging.getLogger(__name__)

__all__ = ["AccuracyGateError", "run_gate"]

GATE_CLIPS = 8


class AccuracyGateError(EdgevadError):
    """The reduced-precision artifact is less accurate than the gate allows."""


def _views(manifest: Manifest) -> dict[str, dict[str, str]]:
    """Graph files per precision: fp32 reference, the exported one, fp16 where it exists."""
    views = {"fp32": {s.name: s.variants.get("fp32", s.file) for s in manifest.stages},
             manifest.precision: {s.name: s.file for s in manifest.stages}}
    if all("fp16" in s.variants for s in manifest.stages):
        views.setdefault("fp16", {s.name: s.variants["fp16"] for s in manifest.stages})
    return views


class _Pipeline:
    """The artifact's stages run with one graph per stage (one view)."""

    def __init__(self, folder: Path, manifest: Manifest, files: dict[str, str], sessions):
        self.folder, self.m, self.files, self.sessions = folder, manifest, files, sessions

    def _run(self, stage: str, feeds: dict) -> dict:
        from edgevad_export.precision import run_graph

        return run_graph(self.sessions, self.files[stage], feeds)

    def clip_outputs(self, clips: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Per-clip outputs of the pixel stages, keyed ``"stage/output"`` ([n, ...] each)."""
        out: dict[str, list] = {}
        for stage, x in clips.items():
            name = self.m.stage(stage).input_names[0]
            for i in range(len(x)):
                for k, v in self._run(stage, {name: x[i:i + 1]}).items():
                    out.setdefault(f"{stage}/{k}", []).append(v[0])
        return {k: np.stack(v) for k, v in out.items()}

    def head_scores(self, outs: dict[str, np.ndarray], segments: int | None = None) -> np.ndarray:
        """Scores of one video's clips: a bag (segment heads) or a chain of clips (DAM)."""
        head = self.m.stage("head")
        score = head.output_names[0]
        feeds_from = {link.target.split("/", 1)[1]: link.source for link in self.m.links
                      if link.target.startswith("head/") and link.via != "state"}
        if self.m.protocol.mode == "online":
            state = self.m.protocol.state or {}
            cur, prev_name = head.input_names[0], state.get("input", "prev_map")
            maps = outs[feeds_from[cur]]
            prev, scores = maps[0:1], []
            for i in range(len(maps)):
                y = self._run("head", {cur: maps[i:i + 1], prev_name: prev})
                scores.append(float(np.ravel(y[score])[0]))
                prev = y[state.get("output", "next_prev_map")]
            return np.asarray(scores)
        S = segments
        axis = head.inputs[0].shape[1]
        if isinstance(axis, int):
            S = axis
        feeds = {}
        for name in head.input_names:
            x = outs[feeds_from[name]]
            feeds[name] = (x if S is None else resample_segments(x, S))[None].astype(np.float32)
        return np.ravel(self._run("head", feeds)[score])


# --- Clips ----------------------------------------------------------------------------------------

def _video_clips(manifest: Manifest, frames: list[np.ndarray], starts: list[int]
                 ) -> dict[str, np.ndarray]:
    """Pixel-stage inputs for clips at ``starts`` of one stream (flow from one running
    estimator, as live)."""
    from edgevad.media.motion import FLOW_BOUND, FlowEstimator, encode_flow
    from edgevad.media.preprocess import preprocess_frame

    clips = {}
    for stage in ("backbone", "motion"):
        if not manifest.has_stage(stage):
            continue
        g = manifest.geometry(stage)
        T = g.clip_len
        if stage == "backbone":
            planes = [preprocess_frame(f, g) for f in frames]
        else:
            est = FlowEstimator(size=tuple(int(s) for s in g.size))
            planes = [encode_flow(est(f), float(g.flow_bound or FLOW_BOUND)) for f in frames]
        last = len(planes) - 1
        clips[stage] = np.stack([np.stack([planes[min(s + t, last)] for t in range(T)], axis=1)
                                 for s in starts]).astype(np.float32)
    return clips


def _read(path: Path, limit: int | None = None) -> list[np.ndarray]:
    from edgevad.media.video import VideoReader

    frames = []
    with VideoReader(path, strict=False) as reader:
        for frame in reader:
            frames.append(frame)
            if limit is not None and len(frames) >= limit:
                break
    return frames


def _gate_clips(manifest: Manifest, sample_video, calib_clips) -> tuple[list[dict], dict]:
    """[(clips per stage) per video], source record."""
    g = manifest.geometry("backbone")
    if sample_video is not None:
        n = GATE_CLIPS
        frames = _read(Path(sample_video), (n - 1) * g.stride + g.clip_len)
        starts = list(range(0, max(len(frames) - g.clip_len, 0) + 1, g.stride))[:n] or [0]
        return [_video_clips(manifest, frames, starts)], {
            "source": "sample video", "video": Path(sample_video).name, "clip_starts": starts}
    if calib_clips is None:
        raise AccuracyGateError("the accuracy gate needs real clips: pass --sample-video")
    index = np.asarray(calib_clips.sampler.get("video_index") or [0] * calib_clips.n_samples)
    groups = []
    for v in np.unique(index):
        ids = np.flatnonzero(index == v)
        arrays = calib_clips.batch(ids)  # input name -> [n, C, T, H, W]
        clip_input = manifest.stage("backbone").inputs[0].name
        groups.append({"backbone": arrays.get(clip_input, next(iter(arrays.values())))})
    if manifest.has_stage("motion"):
        raise AccuracyGateError("the accuracy gate of a model with a motion stream needs "
                                "--sample-video (consecutive frames for the flow)")
    return groups, {"source": "calibration clips (not held out)", "clips": calib_clips.n_samples}


# --- AUC on labelled data -------------------------------------------------------------------------

def _labels_file(folder: Path) -> Path:
    for d in (folder, folder.parent):
        found = sorted(d.glob("*labels*.json"))
        if found:
            return found[0]
    raise AccuracyGateError(f"--val {folder}: no *labels*.json (video stem -> 0/1 per frame) in "
                            f"it or beside it")


def _auc(scores: list[np.ndarray], labels: list[np.ndarray]) -> float:
    from sklearn.metrics import roc_auc_score

    y = np.concatenate(labels)
    if y.min() == y.max():
        raise AccuracyGateError("the --val data has frames of one class only: AUC is undefined")
    return float(roc_auc_score(y, np.concatenate(scores)))


def _ties(auc: dict, scores: dict[str, list[np.ndarray]]) -> dict:
    """Record how many distinct frame scores each precision gave: a head whose scores saturate
    (ONNX Runtime's CPU Sigmoid returns exactly 0 below a logit of about -17) ranks nothing,
    and an unchanged AUC then says nothing about the quantization."""
    distinct = {k: int(np.unique(np.concatenate(v)).size) for k, v in scores.items()}
    auc["distinct_scores"] = distinct
    if min(distinct.values()) <= max(2, auc["frames"] // 100):
        auc["note"] = ("scores are (almost) all tied: the head saturates on this data, so the "
                       "AUC change cannot show a quantization error")
    return auc


def _val_videos(folder: Path, manifest: Manifest, pipes: dict) -> dict:
    from edgevad.media.video import VIDEO_EXTENSIONS

    labels_path = _labels_file(folder)
    labels = json.loads(labels_path.read_text())
    videos = sorted(p for p in folder.iterdir() if p.suffix.lower() in VIDEO_EXTENSIONS
                    and p.stem in labels)
    if not videos:
        raise AccuracyGateError(f"--val {folder}: no video named in {labels_path.name}")
    g = manifest.geometry("backbone")
    segments = manifest.protocol.segments
    scores = {k: [] for k in pipes}
    truth = []
    for path in videos:
        lab = np.asarray(labels[path.stem], dtype=np.int64)
        frames = _read(path)
        n = len(lab)
        starts = list(range(0, max(n - g.clip_len, 0) + 1, g.stride))
        clips = _video_clips(manifest, frames[:n] or frames, starts)
        for kind, pipe in pipes.items():
            s = pipe.head_scores(pipe.clip_outputs(clips), segments)
            if manifest.protocol.mode == "online":
                per = np.repeat(s, g.stride)[:n]
                per = np.concatenate([per, np.full(n - len(per), s[-1])])
            else:
                per = segment_scores_to_frames(s, n)
            scores[kind].append(per)
        truth.append(lab)
    return _ties({"val": folder.name, "labels": labels_path.name, "videos": len(videos),
                  "frames": int(sum(len(t) for t in truth)),
                  **{kind: _auc(s, truth) for kind, s in scores.items()}}, scores)


def _val_bags(path: Path, manifest: Manifest, pipes: dict) -> dict:
    from edgevad_export.data.bags import frame_labels, load_bags

    head = manifest.stage("head")
    if manifest.protocol.mode != "segments" or len(head.input_names) != 1:
        raise AccuracyGateError(f"--val {path.name}: feature bags can only check a single-input "
                                f"segment head; {manifest.head} needs --val VIDEOS")
    bags = load_bags(path)
    if bags.n_frames is None or bags.anomaly_intervals is None:
        raise AccuracyGateError(f"--val {path.name} has no n_frames / anomaly_intervals")
    D = head.inputs[0].shape[-1]
    if bags.feature_dim != D:
        raise AccuracyGateError(f"--val {path.name} holds {bags.feature_dim}-D features, the "
                                f"head takes {D}-D")
    S = manifest.protocol.segments or 32
    scores = {k: [] for k in pipes}
    truth = []
    for f, n, iv in zip(bags.features, bags.n_frames, bags.anomaly_intervals):
        for kind, pipe in pipes.items():
            s = pipe.head_scores({manifest.links[0].source: resample_segments(f, S)}, S)
            scores[kind].append(segment_scores_to_frames(s, int(n)))
        truth.append(frame_labels(int(n), iv))
    return _ties({"val": path.name, "videos": len(bags),
                  "frames": int(sum(len(t) for t in truth)), "head_only": True,
                  **{kind: _auc(s, truth) for kind, s in scores.items()}}, scores)


# --- The gate -------------------------------------------------------------------------------------

def _openvino_pipes(folder: Path, manifest: Manifest, views: dict, pipes: dict) -> dict:
    """Add the OpenVINO views to ``pipes`` (module doc) when openvino is installed; returns
    their sessions by view name (to read back the precision that ran)."""
    from edgevad.runtime.openvino_engine import openvino_available, openvino_graph
    from edgevad_export.precision import _OvSessions

    if not openvino_available():
        return {}
    out = {"openvino-bf16": (_OvSessions(folder, "bf16"), views["fp32"])}
    if manifest.precision != "fp32":  # the graphs --backend openvino opens (its int8 graph)
        out[f"openvino-{manifest.precision}"] = (_OvSessions(folder, "f32"), {
            s.name: openvino_graph(s) for s in manifest.stages})
    for kind, (sess, files) in out.items():
        pipes[kind] = _Pipeline(folder, manifest, files, sess)
    return {k: v[0] for k, v in out.items()}


def run_gate(folder: Path, manifest: Manifest, opts, *, sample_video=None, calib_clips=None) -> dict:
    """Measure and check (module doc); returns the report, raises :class:`AccuracyGateError`
    (with the report's numbers) when a threshold is passed."""
    from edgevad_export.precision import _Sessions

    t0 = time.perf_counter()
    sessions = _Sessions(folder)
    views = _views(manifest)
    pipes = {k: _Pipeline(folder, manifest, files, sessions) for k, files in views.items()}
    ov_sessions = _openvino_pipes(folder, manifest, views, pipes)
    groups, source = _gate_clips(manifest, sample_video, calib_clips)
    per_clip = {k: [] for k in pipes}
    for clips in groups:
        for kind, pipe in pipes.items():
            per_clip[kind].append(pipe.head_scores(pipe.clip_outputs(clips)))
    ref = np.concatenate(per_clip["fp32"])
    diffs = {}
    for kind in pipes:
        if kind == "fp32":
            continue
        d = np.abs(np.concatenate(per_clip[kind]) - ref)
        diffs[kind] = {"max_abs": float(d.max()), "mean_abs": float(d.mean()),
                       "scores": int(d.size)}
        if kind in ov_sessions:
            diffs[kind]["backend"] = "openvino"
            diffs[kind]["ran"] = ov_sessions[kind].ran()
    report = {"precision": manifest.precision, "clips": source, "score_diff": diffs,
              "max_score_diff": opts.max_score_diff, "max_auc_drop_points": opts.max_auc_drop}
    failures = []
    if opts.max_score_diff is not None:
        for kind, d in diffs.items():
            if d["max_abs"] > opts.max_score_diff:
                failures.append(f"{kind} per-clip score differs from fp32 by {d['max_abs']:.4f} "
                                f"(> {opts.max_score_diff})")
    if opts.val:
        val = Path(opts.val)
        auc_pipes = {k: p for k, p in pipes.items() if k in ("fp32", manifest.precision)}
        auc = (_val_videos(val, manifest, auc_pipes) if val.is_dir()
               else _val_bags(val, manifest, auc_pipes))
        drop = 100.0 * (auc["fp32"] - auc[manifest.precision])
        auc["drop_points"] = round(drop, 4)
        report["auc"] = auc
        if drop > opts.max_auc_drop:
            failures.append(f"frame AUC on {auc['val']} falls from {100 * auc['fp32']:.2f} "
                            f"(fp32) to {100 * auc[manifest.precision]:.2f} "
                            f"({manifest.precision}): {drop:.2f} points > {opts.max_auc_drop}")
    report["passed"] = not failures
    report["failures"] = failures
    report["seconds"] = round(time.perf_counter() - t0, 2)
    log.info("accuracy gate: %s", report)
    if failures:
        raise AccuracyGateError("accuracy gate failed: " + "; ".join(failures)
                                + " (raise --max-auc-drop / --max-score-diff to accept, or "
                                "calibrate on more representative clips)")
    return report
