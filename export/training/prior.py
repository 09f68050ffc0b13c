"""``edgevad fit-prior``: fit the ``motion-prior`` head on a scene's normal videos.

The normality prior (:mod:`edgevad_export.models.heads.normality`) learns nothing by gradient:
it is the mean and standard deviation of the normal videos' per-clip flow statistics. So it is
fitted straight from videos, not through ``edgevad extract`` + ``edgevad train``: a feature-bag
file pools clips into a video's segments and carries anomaly labels, while the prior wants every
16-frame clip of footage that is all normal, computed exactly as the camera will compute it.
Each video is streamed through :func:`edgevad.runtime.stream.flow_statistics_clips` (the
Detector's own estimator, buffer and clip schedule), the clips of all videos are pooled, and
the head's two buffers are set from them.

The checkpoint folder is an ordinary ``edgevad train`` folder (``head.pt`` + ``checkpoint.json``,
so ``edgevad export --model motion-prior --checkpoint DIR`` reads it like any other) whose record
names every normal video by file name and SHA-256 (never a machine path), with its frame and clip
counts, and the fitted statistics themselves.

The alarm threshold comes from the same footage, by leave-one-video-out: each normal video is
held out in turn, the prior fitted on the others scores its clips, and the highest held-out score
becomes the checkpoint's ``default_threshold`` (footage like the normal videos raises no alarm;
a prior fitted on one video keeps the zoo's default and says so). Recorded per video.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from edgevad.artifact import zoo
from edgevad.errors import EdgevadError
from edgevad.fetch.hashing import sha256_file
from edgevad.media.video import VIDEO_EXTENSIONS, VideoReader, list_videos

__all__ = ["PriorError", "fit_prior", "held_out_threshold", "normal_videos"]


class PriorError(EdgevadError):
    """``edgevad fit-prior`` cannot run as asked (no videos, a head that is not a prior)."""


def normal_videos(inputs: Sequence[str | Path]) -> list[Path]:
    """Video files named by ``inputs`` (files or folders of videos), in order, each once."""
    out: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = list_videos(path)
            if not found:
                raise PriorError(f"{path} holds no videos ({', '.join(VIDEO_EXTENSIONS)})")
            out.extend(found)
        elif path.is_file():
            out.append(path)
        else:
            raise PriorError(f"normal video {path} does not exist")
    seen: set[Path] = set()
    unique = [p for p in out if not (p.resolve() in seen or seen.add(p.resolve()))]
    if not unique:
        raise PriorError("no normal videos given")
    return unique


def fit_prior(inputs: Sequence[str | Path], out: str | Path, *, model: str = "motion-prior",
              progress: Callable[[str, int], object] | None = None) -> Path:
    """Fit ``model``'s normality prior on the normal videos ``inputs`` and write a checkpoint
    folder ``out``; ``progress(video name, clips)`` is called after each video. Returns ``out``."""
    from edgevad.runtime.stream import flow_statistics_clips
    from edgevad_export.training.checkpoint import build_head, save_checkpoint

    spec = zoo.get_head(model)
    backbone = zoo.get_backbone(spec.default_backbone)
    if backbone.kind != "flow-statistics":
        raise PriorError(f"model {model!r} is not a normality prior on flow statistics; "
                         "fit-prior fits motion-prior")
    features = dict(zoo.FLOW_STATISTICS_FEATURES)
    videos = normal_videos(inputs)
    clips, records = [], []
    for path in videos:
        with VideoReader(path) as reader:
            feats, n = flow_statistics_clips(reader, features)
        clips.append(feats)
        records.append({"file": path.name, "sha256": sha256_file(path), "frames": int(n),
                        "clips": len(feats)})
        if progress is not None:
            progress(path.name, len(feats))
    normal = np.concatenate(clips)
    kwargs = {**spec.builder_kwargs, "feature_dim": backbone.feature_dim}

    def new_head():
        return build_head(model, backbone=backbone.name, builder_kwargs=kwargs)

    head = new_head().fit(normal)
    threshold = held_out_threshold(clips, [r["file"] for r in records], new_head)
    meta = {
        "head": model,
        "builder_kwargs": kwargs,
        "config": {"model": model, "backbone": backbone.name, "segments": spec.segments,
                   **spec.builder_kwargs},
        "protocol": {"backbone": backbone.name, "feature_dim": backbone.feature_dim,
                     "clip_len": features["clip_len"], "stride": features["stride"],
                     "features": features},
        "normal_videos": records,
        "fit": {"clips": int(len(normal)), "statistics": list(features["statistics"]),
                "mean": [float(v) for v in head.mean], "std": [float(v) for v in head.std],
                "std_note": "population standard deviation + 1e-6"},
        "score_range": list(spec.score_range),
        "default_threshold": (spec.default_threshold if threshold["value"] is None
                              else threshold["value"]),
        "threshold": threshold,
    }
    return save_checkpoint(out, head, meta)


def held_out_threshold(clips: Sequence[np.ndarray], names: Sequence[str],
                       new_head: Callable[[], object]) -> dict:
    """Leave-one-video-out alarm threshold (module doc): ``value`` is the highest clip score of
    any held-out video under the prior fitted on the other videos, or None for one video."""
    import torch

    rule = ("highest clip score of a held-out normal video under the prior fitted on the other "
            "normal videos, each video held out in turn")
    if len(clips) < 2:
        return {"value": None, "rule": rule, "note": "one normal video: nothing to hold out, "
                "the zoo's default threshold is kept; fit on two or more videos"}
    per_video = []
    for i, held in enumerate(clips):
        rest = np.concatenate([c for j, c in enumerate(clips) if j != i])
        if len(rest) < 2:
            return {"value": None, "rule": rule, "note": "too few clips to hold a video out"}
        head = new_head().fit(rest)  # type: ignore[attr-defined]
        with torch.no_grad():
            scores = head(torch.from_numpy(np.asarray(held, np.float32))[None])[0].numpy()
        per_video.append({"file": names[i], "max": round(float(scores.max()), 4),
                          "p95": round(float(np.percentile(scores, 95)), 4)})
    value = max(v["max"] for v in per_video)
    return {"value": value, "rule": rule, "held_out": per_video}
