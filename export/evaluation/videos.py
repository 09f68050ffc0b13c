"""Evaluate an exported artifact on labelled videos, live: what the Detector says frame by frame.

``edgevad eval --checkpoint`` measures a trained head on a feature-bag file; a model that has no
feature bags (``motion-prior``: its input is computed per stream from optical flow), or a
deployment's own artifact at its own precision and backend, is measured here instead, on the
videos themselves: every video goes through :meth:`edgevad.Detector.score_video` (exactly what
``edgevad run`` computes), and the frames of all videos are pooled into the weakly-supervised
protocol's metrics (:func:`edgevad_export.evaluation.metrics.frame_report`: frame AUC, AP, false
alarm rate at the model's threshold, video AUC), beside the alarms a user would see: frames at or
above the threshold and the videos that raise an event.

Ground truth: ``frame_labels``, a JSON object naming each labelled video by file stem, with
either one 0/1 per frame (UCSD Ped2's ``test_frame_labels.json``) or inclusive ``[start, end]``
frame intervals (UCF-Crime's annotation, ``[]`` for none); ``normal`` videos are all normal and
need no entry. A video that cannot be decoded, or whose frame count differs from its labels, is
reported with the reason and left out; the others are still scored.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgevad.errors import EdgevadError
from edgevad_export.data.bags import frame_labels as intervals_to_frames
from edgevad_export.evaluation.evaluate import EvaluationError, _clean
from edgevad_export.evaluation.metrics import VideoScores, frame_report
from edgevad_export.extraction.extract import collect_videos

__all__ = ["evaluate_videos", "load_frame_labels"]


def load_frame_labels(path: str | Path) -> dict[str, list]:
    """The labels file (module doc) as ``{stem: per-frame list or intervals}``, checked."""
    path = Path(path)
    try:
        table = json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise EvaluationError(f"frame labels file {path} does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EvaluationError(f"frame labels file {path} is not readable JSON: {exc}") from None
    if not isinstance(table, dict) or not all(isinstance(v, list) for v in table.values()):
        raise EvaluationError(f"{path}: expected a JSON object of video name -> list (one 0/1 "
                              "per frame, or [start, end] frame intervals)")
    return table


def _frames_of(entry: list, n_frames: int, name: str) -> np.ndarray:
    """0/1 per frame of one video from its labels entry; raises ValueError naming the problem."""
    if all(isinstance(x, list) for x in entry):  # intervals (or none)
        if any(len(x) != 2 or not all(isinstance(v, int) for v in x) for x in entry):
            raise ValueError(f"{name}: intervals must be [start, end] frame numbers")
        flat = np.asarray(entry, dtype=np.int64).reshape(-1)
        return intervals_to_frames(n_frames, flat)
    if not all(v in (0, 1) for v in entry):
        raise ValueError(f"{name}: per-frame labels must be 0 or 1")
    if len(entry) != n_frames:
        raise ValueError(f"{name}: {n_frames} frames decoded, {len(entry)} labelled")
    return np.asarray(entry, dtype=np.int8)


def evaluate_videos(artifacts: str | Path, videos: Sequence[str | Path] = (), *,
                    frame_labels: str | Path | None = None, normal: Sequence[str | Path] = (),
                    backend: str = "auto", threshold: float | None = None,
                    out_dir: str | Path | None = None,
                    progress: Callable[[str, dict], object] | None = None) -> dict[str, Any]:
    """Score ``videos`` (labelled in ``frame_labels``) and ``normal`` videos with the artifact
    and return the report (module doc; also ``out_dir/report.json``). ``progress(name, row)`` is
    called after each video."""
    from edgevad import Detector
    from edgevad.artifact.records import record_path

    labelled = collect_videos(videos) if videos else []
    normals = collect_videos(normal) if normal else []
    if not labelled and not normals:
        raise EvaluationError("no videos to evaluate: give labelled VIDEOS with --frame-labels, "
                              "and/or --normal videos")
    table = load_frame_labels(frame_labels) if frame_labels is not None else {}
    if labelled and frame_labels is None:
        raise EvaluationError("labelled videos need --frame-labels (a JSON file: video name -> "
                              "0/1 per frame or [start, end] intervals); all-normal videos go "
                              "under --normal")
    missing = [it.name for it in labelled if it.name not in table]
    if missing:
        raise EvaluationError(f"{record_path(frame_labels)} names no labels for "
                              f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}; "
                              "all-normal videos go under --normal")
    det = Detector.load(artifacts, backend=backend)
    thr = float(det.threshold if threshold is None else threshold)
    scored: list[VideoScores] = []
    rows: list[dict] = []
    not_scored: dict[str, str] = {}
    for item, entry in [(it, table[it.name]) for it in labelled] + [(it, None) for it in normals]:
        name = item.name if entry is not None else f"{item.name} (normal)"
        try:
            out = det.score_video(item.path)
            y = (np.zeros(len(out.scores), np.int8) if entry is None
                 else _frames_of(entry, len(out.scores), item.name))
        except (EdgevadError, ValueError, OSError) as exc:
            not_scored[name] = str(exc)
            continue
        scores = np.asarray(out.scores, dtype=np.float64)
        scored.append(VideoScores(name, scores, y))
        row = {"video": record_path(item.path), "frames": int(len(scores)),
               "anomalous_frames": int(y.sum()), "max_score": round(float(scores.max()), 4),
               "mean_score": round(float(scores.mean()), 4), "events": len(out.events),
               "event_on_anomaly": (any(y[e.start:e.end + 1].any() for e in out.events)
                                    if y.any() else None)}
        rows.append(row)
        if progress is not None:
            progress(name, row)
    if not scored:
        raise EvaluationError("no video could be scored: " + "; ".join(
            f"{k}: {v}" for k, v in not_scored.items()))
    frames = np.concatenate([v.frame_labels for v in scored])
    if frames.min() == frames.max():
        kind = "anomalous" if frames.max() == 0 else "normal"
        raise EvaluationError(f"the scored videos hold no {kind} frames: frame AUC needs both")
    rep = frame_report(scored, threshold=thr)
    alarmed = {"anomalous": [0, 0], "normal": [0, 0]}
    for v in scored:
        on = v.scores >= thr
        for kind, mask in (("anomalous", v.frame_labels == 1), ("normal", v.frame_labels == 0)):
            alarmed[kind][0] += int(on[mask].sum())
            alarmed[kind][1] += int(mask.sum())
    anomalous_rows = [r for r in rows if r["anomalous_frames"]]
    normal_rows = [r for r in rows if not r["anomalous_frames"]]
    m = det.manifest
    report: dict[str, Any] = {
        "artifacts": record_path(artifacts),
        "model": {"name": m.model.get("name"), "version": m.model.get("version"),
                  "precision": m.precision},
        "backend": det.backend_choice.describe() if det.backend_choice else backend,
        "protocol": "live: Detector.score_video (what edgevad run computes), every frame scored "
                    "by its clip; frames of all videos pooled",
        **{k: _clean(v) for k, v in rep.to_dict().items() if k != "per_class_auc"},
        "alarms": {
            "threshold": thr,
            "anomalous_frames_alarmed": alarmed["anomalous"][0] / max(alarmed["anomalous"][1], 1),
            "normal_frames_alarmed": alarmed["normal"][0] / max(alarmed["normal"][1], 1),
            "anomalous_videos": len(anomalous_rows),
            "anomalous_videos_with_event_on_anomaly": sum(bool(r["event_on_anomaly"])
                                                          for r in anomalous_rows),
            "normal_videos": len(normal_rows),
            "normal_videos_with_event": sum(r["events"] > 0 for r in normal_rows),
        },
        "videos": rows,
        "not_scored": not_scored,
    }
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report
