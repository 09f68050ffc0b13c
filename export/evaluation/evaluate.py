"""Evaluate a trained head on a feature-bag file under the frame-level protocol.

``evaluate(checkpoint_dir_or_model, bags, out_dir=...)`` scores every usable video, computes
frame AUC, AP, FAR at the threshold, video AUC and per-class AUC
(:func:`edgevad_export.evaluation.metrics.frame_report`), and for the ``joint`` head the video
classification accuracy and confusion matrix over :data:`edgevad.artifact.zoo.UCF_CRIME_CLASSES`. It says
how many videos could not be scored and why (empty bags from failed extraction, refused bags).

Written to ``out_dir`` when given: ``report.json``, ``roc.png``, ``curves/<video>.png`` (scores
over frames, annotated intervals shaded) and, with ``scores_out``, an ``.npz`` of the raw segment
scores (``name``, ``scores [N, S_max]`` NaN-padded, ``n_segments``, plus ``label``, ``category``,
``n_frames``, ``anomaly_intervals``) from which anyone can recompute the metrics.

Scoring: heads that score segments independently or online (mil, mrm, mil-ctx, dam) score a bag at
its own segment count, so segment i covers exactly frames ``[i*F/S, (i+1)*F/S)``; heads built for
a fixed count (joint) score the bag resampled to that count.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from edgevad.artifact import protocols, zoo
from edgevad.artifact.segments import resample_segments
from edgevad.errors import EdgevadError
from edgevad.fetch.hashing import sha256_file
from edgevad_export.data.bags import FeatureBags, frame_labels, load_bags
from edgevad_export.evaluation.metrics import (
    VideoScores,
    false_alarm_rate,
    frame_report,
    frame_roc,
)


class ProtocolError(protocols.ProtocolMismatchError):
    """A head and a feature file do not share a protocol (feature size, backbone, geometry...)."""


class EvaluationError(EdgevadError):
    """The bags cannot be evaluated (no frame annotations, no anomalous frames...)."""


def check_protocol(meta_or_model: dict | nn.Module, bags: FeatureBags, *,
                   head: str = "head") -> None:
    """Raise ProtocolError unless the head's training features and the bags share a protocol:
    with a checkpoint's meta and a bag file, every field both record
    (:func:`edgevad.artifact.protocols.differences`: backbone, weights, clip length and stride, geometry,
    segments); always the feature size.

    ``meta_or_model``: a checkpoint's meta (its ``protocol``) or a head module (its
    ``feature_dim``/``appearance_dim``).
    """
    if isinstance(meta_or_model, dict):
        proto = meta_or_model.get("protocol", {})
        want, backbone = proto.get("feature_dim"), proto.get("backbone")
        head = meta_or_model.get("head", head)
    else:
        want = getattr(meta_or_model, "appearance_dim", None) or getattr(meta_or_model, "feature_dim", None)
        backbone = None
    got = bags.feature_dim
    if want is not None and int(want) != int(got):
        made = f" (made by backbone {backbone!r})" if backbone else ""
        raise ProtocolError(
            f"Protocol mismatch: head {head!r} takes {want}-D features{made}, but "
            f"{bags.source or 'the feature bags'} hold {got}-D features. Evaluate on features from "
            "the backbone the head was trained on, or train a head on these features."
        )
    if isinstance(meta_or_model, dict) and bags.source and Path(bags.source).is_file():
        try:
            protocols.check_compatible(
                protocols.head_protocol(meta_or_model), protocols.feature_file_protocol(bags.source),
                head_what=f"head {head!r}", other_what=str(bags.source),
                hint="Evaluate on features extracted the way the head's training features were "
                     "(edgevad extract with the same backbone, weights, clip length, stride and "
                     "segments), or train a head on these features.")
        except protocols.ProtocolMismatchError as exc:
            raise ProtocolError(str(exc)) from None


def score_bags(model: nn.Module, name: str, bags: FeatureBags, *, segments: int | None = None,
               motion_bags: FeatureBags | None = None, batch: int = 64
               ) -> tuple[list[np.ndarray], np.ndarray | None]:
    """Segment scores of every bag (a list of [S_i] arrays) and, for joint, class logits [N, C]."""
    from edgevad_export.training.trainer import forward_scores

    fixed = segments if name == "joint" else None
    motion_index = ({n: i for i, n in enumerate(motion_bags.names)} if motion_bags is not None
                    else None)
    model.eval()
    scores: list[np.ndarray] = []
    logits: list[np.ndarray] = []
    with torch.inference_mode():
        groups: dict[int, list[int]] = {}
        for i, f in enumerate(bags.features):
            groups.setdefault(fixed or len(f), []).append(i)
        out_scores: dict[int, np.ndarray] = {}
        out_logits: dict[int, np.ndarray] = {}
        for s, members in groups.items():
            for lo in range(0, len(members), batch):
                part = members[lo:lo + batch]
                x = torch.from_numpy(np.stack([resample_segments(bags.features[i], s) for i in part])
                                     .astype(np.float32))
                m = None
                if motion_index is not None:
                    m = torch.from_numpy(np.stack([
                        resample_segments(motion_bags.features[motion_index[bags.names[i]]], s)
                        for i in part]).astype(np.float32))
                out = forward_scores(name, model, x, m)
                for j, i in enumerate(part):
                    out_scores[i] = out["scores"][j].float().numpy()
                    if "class_logits" in out:
                        out_logits[i] = out["class_logits"][j].float().numpy()
        scores = [out_scores[i] for i in range(len(bags))]
        if out_logits:
            logits = [out_logits[i] for i in range(len(bags))]
    return scores, (np.stack(logits) if logits else None)


def evaluate(checkpoint: str | Path | nn.Module, bags: FeatureBags | str | Path, *,
             out_dir: str | Path | None = None, threshold: float | None = None,
             scores_out: str | Path | None = None, head: str | None = None,
             segments: int = 32, motion_bags: FeatureBags | str | Path | None = None,
             curves: bool | int = True, plots: bool = True) -> dict[str, Any]:
    """Evaluate a checkpoint folder (or a head module, then ``head`` names it) on ``bags``.

    ``threshold``: for FAR; default the head's (0.5, DAM 1.0 on its [0, 2] scale); FAR at 0.5 is
    always reported too. ``curves``: per-video score-curve PNGs (True: all, an int: the first n,
    False: none). Returns the report dict (also ``out_dir/report.json`` when given).
    """
    if isinstance(checkpoint, nn.Module):
        if head is None:
            raise ValueError("evaluate(model, ...) needs head= (the head's name)")
        model, meta = checkpoint, {"head": head, "protocol": {}}
        name = head
    else:
        from edgevad_export.training.checkpoint import load_checkpoint

        model, meta = load_checkpoint(checkpoint)
        name = meta["head"]
        segments = meta.get("protocol", {}).get("segments", segments)
    bags = load_bags(bags) if not isinstance(bags, FeatureBags) else bags
    if motion_bags is not None and not isinstance(motion_bags, FeatureBags):
        motion_bags = load_bags(motion_bags)
    check_protocol(meta if meta.get("protocol") else model, bags, head=name)
    if name == "dmrm" and motion_bags is None:
        raise EvaluationError("dmrm needs the motion features of the evaluated videos (motion_bags)")
    if bags.n_frames is None or bags.anomaly_intervals is None:
        raise EvaluationError(f"{bags.source or 'the bags'} lack n_frames/anomaly_intervals: frame-level "
                              "evaluation needs the temporal annotations (a test split)")
    spec = zoo.get_head(name)
    score_range = tuple(spec.score_range)
    thr = float(spec.default_threshold if threshold is None else threshold)

    seg_scores, logits = score_bags(model, name, bags, segments=segments, motion_bags=motion_bags)
    videos = [VideoScores(str(n), s, frame_labels(int(f), iv), str(c))
              for n, s, f, iv, c in zip(bags.names, seg_scores, bags.n_frames,
                                        bags.anomaly_intervals, bags.categories)]
    classes = {int(v) for vs in videos for v in np.unique(vs.frame_labels)}
    if classes != {0, 1}:  # a frame AUC needs both kinds of frame
        kind = "anomalous" if 1 not in classes else "normal"
        raise EvaluationError(f"{bags.source or 'the bags'} hold no {kind} frames (from "
                              "n_frames and anomaly_intervals): frame AUC needs both; evaluate "
                              "on a split with normal and anomalous videos")
    rep = frame_report(videos, threshold=thr)
    report: dict[str, Any] = {
        "head": name,
        **_named_inputs(bags.source, None if isinstance(checkpoint, nn.Module) else checkpoint,
                        meta),
        **{k: _clean(v) for k, v in rep.to_dict().items()},
        "far_at_0.5": _clean(rep.far if thr == 0.5 else false_alarm_rate(videos, 0.5)),
        "score_range": list(score_range),
        "not_scored": {
            "count": len(bags.skipped_empty) + len(bags.refused),
            "empty": {"count": len(bags.skipped_empty), "names": list(bags.skipped_empty),
                      "reason": "n_segments == 0: feature extraction failed upstream, no features"},
            "refused": {"count": len(bags.refused), "why": dict(bags.refused)},
        },
        "n_anomalous_videos": int(sum(v.is_anomalous for v in videos)),
        "n_normal_videos": int(sum(not v.is_anomalous for v in videos)),
    }
    if logits is not None:
        report["classification"] = classification_report(logits, bags.categories)

    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        if plots:
            from edgevad_export.evaluation.plots import (
                plot_roc,
                plot_video_curve,
                safe_filename,
            )

            fpr, tpr = frame_roc(videos)
            plot_roc(fpr, tpr, rep.frame_auc, out / "roc.png", title=f"{name}: frame-level ROC")
            report["roc_png"] = "roc.png"
            n_curves = len(videos) if curves is True else int(curves or 0)
            if n_curves:
                (out / "curves").mkdir(exist_ok=True)
            for v, iv in list(zip(videos, bags.anomaly_intervals))[:n_curves]:
                plot_video_curve(v.frame_scores(), iv, out / "curves" / f"{safe_filename(v.name)}.png",
                                 title=f"{v.name} ({v.category})", threshold=thr,
                                 score_range=score_range)
            report["curves_dir"] = "curves" if n_curves else None
        (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    if scores_out is not None:
        save_scores(scores_out, bags, seg_scores)
        report["scores_npz"] = str(scores_out)
    return report


def _named_inputs(feature_file: str | None, checkpoint, meta: dict) -> dict[str, Any]:
    """The report's inputs, named as :mod:`edgevad.artifact.records` names files (never the machine's
    absolute paths unless asked for), each with its SHA-256."""
    from edgevad.artifact.records import record_path

    parts = feature_file.split(" + ") if feature_file else []
    return {
        "feature_file": " + ".join(record_path(p) for p in parts) or None,
        "feature_file_sha256": (sha256_file(parts[0]) if len(parts) == 1
                                and Path(parts[0]).is_file() else None),
        "checkpoint": None if checkpoint is None else record_path(checkpoint),
        "checkpoint_weights_sha256": None if checkpoint is None else meta.get("weights_sha256"),
    }


def save_scores(path: str | Path, bags: FeatureBags, seg_scores: list[np.ndarray]) -> Path:
    """Per-video segment scores as ``.npz``: ``name``, ``scores [N, S_max]`` (NaN padding),
    ``n_segments``, and the ground truth needed to recompute the metrics."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    width = max(len(s) for s in seg_scores)
    arr = np.full((len(seg_scores), width), np.nan, dtype=np.float32)
    for i, s in enumerate(seg_scores):
        arr[i, :len(s)] = s
    extra = {}
    if bags.n_frames is not None:
        extra["n_frames"] = bags.n_frames
    if bags.anomaly_intervals is not None:
        extra["anomaly_intervals"] = bags.anomaly_intervals
    np.savez_compressed(path, name=np.asarray(bags.names, dtype=str), scores=arr,
                        n_segments=np.array([len(s) for s in seg_scores], dtype=np.int64),
                        label=np.asarray(bags.labels, dtype=bool),
                        category=np.asarray(bags.categories, dtype=str), **extra)
    return path


def classification_report(logits: np.ndarray, categories: np.ndarray) -> dict[str, Any]:
    """Video classification accuracy and confusion matrix (rows: true class, columns: predicted),
    over :data:`edgevad.artifact.zoo.UCF_CRIME_CLASSES`; videos of unknown categories are left out."""
    classes = list(zoo.UCF_CRIME_CLASSES)
    known = [i for i, c in enumerate(categories) if str(c) in classes]
    true = np.array([classes.index(str(categories[i])) for i in known], dtype=np.int64)
    pred = np.asarray(logits)[known].argmax(axis=1) if known else np.zeros(0, dtype=np.int64)
    conf = np.zeros((len(classes), len(classes)), dtype=np.int64)
    np.add.at(conf, (true, pred), 1)
    anomalous = true != 0
    return {
        "classes": classes,
        "n_videos": len(true),
        "accuracy": float((pred == true).mean()) if len(true) else math.nan,
        "accuracy_anomalous": (float((pred[anomalous] == true[anomalous]).mean())
                               if anomalous.any() else math.nan),
        "accuracy_normal": float((pred[~anomalous] == 0).mean()) if (~anomalous).any() else math.nan,
        "confusion": conf.tolist(),
        "left_out": int(len(categories) - len(known)),
    }


def _clean(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    return value
