"""UCSD Ped2 on the standard weak split, end to end on pixels, beside the published peers.

    nice -n 10 python benchmarks/ped2_clips.py --work WORK          # I3D clip features (resumable)
    nice -n 10 python benchmarks/ped2_flow.py --work WORK           # flow magnitude maps (~1 min)
    nice -n 10 python benchmarks/ped2_weak_split.py --work WORK --json WORK/weak_split.json

The split of GCN-Anomaly (Zhong et al., CVPR 2019) and the RTFM / BN-WVAD tables: **train** on
ped2/testing 02, 06, 09, 10, 11, 12 (anomalous bags, video labels only) and ped2/training 07, 08,
14, 15 (normal); **test** on the other 18 videos (testing 01, 03, 04, 05, 07, 08 and the 12 other
training videos, all normal), frame AUC pooled over their frames, each frame taking its segment's
score (``edgevad eval``'s protocol).

Features: the registry's Kinetics-400 I3D, 16-frame clips every 8 frames at 224x224, pooled into
segments by ``edgevad extract``'s own ``pool_segments`` (``benchmarks/ped2_clips.py`` keeps the
clips so that the pooling can vary; pooled as below they are what ``edgevad extract --stride 8
--segments 16`` writes). Heads are trained by ``edgevad train``'s function and scored as
``edgevad eval`` does. Motion candidates add (or use alone) 7 flow-magnitude statistics per clip
from ``benchmarks/ped2_flow.py`` (edgevad's live DIS flow estimator), pooled the same way;
``normality`` candidates train no head (BN-WVAD's distance from the normal training bags'
statistics, :func:`normality_scores`) and ``ensemble`` candidates combine other candidates' runs.

Choosing a recipe never sees the 18 test videos: every candidate in ``CANDIDATES`` (written down
before any run) is scored by 3-fold cross-validation inside the 10 training videos (``INNER``:
train on two folds, score the third with its frame labels, pooled frame AUC over the 10
videos, mean over ``--val-seeds``); the candidate with the best validation AUC is the choice.
Every candidate's test AUC (mean ± std over ``--seeds``) is printed beside its validation AUC,
marked as not used for the choice. Test videos are always scored from the original
(unaugmented) view, clip by clip, as a live camera would feed them.

Runs are cached in ``<work>/weak_split_runs.json`` (one entry per candidate, fold and seed), so an
interrupted study resumes and adding a candidate costs only its own runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ped2_clips import (  # noqa: E402
    PED2,
    TRAIN_NORMAL,
    TRAIN_VIDEOS,
    clip_file,
    select_clips,
)

TEST_VIDEOS = ([("testing", n) for n in ("01", "03", "04", "05", "07", "08")]
               + [("training", f"{i:02d}") for i in range(1, 17)
                  if f"{i:02d}" not in TRAIN_NORMAL])
INNER = [[("testing", "02"), ("testing", "09"), ("training", "07")],
         [("testing", "06"), ("testing", "10"), ("training", "08")],
         [("testing", "11"), ("testing", "12"), ("training", "14"), ("training", "15")]]
"""Inner folds over the 10 training videos: two anomalous videos each, one anomalous throughout
(09, 10, 11) and one with normal frames too (02, 06, 12), and one or two normal videos."""

PEERS = [
    ("Sultani et al. MIL ranking (CVPR 2018)", 92.3,
     "not in the original paper: re-run on this split in later papers' tables; C3D features"),
    ("GCN-Anomaly (Zhong et al., CVPR 2019)", 93.2,
     "action-classifier features, label-noise-cleaning graph over the whole video; own table"),
    ("RTFM (Tian et al., ICCV 2021)", 98.6,
     "I3D features with 10 crops, 32 segments, attention over the whole video; own table"),
]
"""Published frame AUCs on this split, cited as published: different features and
pre-processing, several select their checkpoint on the test videos."""

RECIPE = {"model": "mil-ctx", "backbone": "i3d", "segments": 16, "steps": 1000, "topk": 3,
          "threads": 1}
"""The shipped mil-ctx recipe (``edgevad/checkpoints/mil-ctx``, the default model before this
study): the baseline candidate."""

CANDIDATES: dict[str, dict] = {
    "mil-ctx": {"train": {}},
    "mil": {"train": {"model": "mil", "topk": 1}},
    "mil-dis": {"train": {"model": "mil-dis", "topk": 3, "self_training": True,
                          "head_kwargs": {"hidden": 128}}},
    "mil-ctx+meanmax": {"train": {"backbone": None}, "pool": "meanmax"},
    "mil-ctx+flip": {"train": {}, "augment": ["flip"]},
    "mil-dis+flip": {"train": {"model": "mil-dis", "topk": 3, "self_training": True,
                               "head_kwargs": {"hidden": 128}}, "augment": ["flip"]},
    "mil-ctx+flip+shift": {"train": {}, "augment": ["flip", "shift"]},
    # motion cue (benchmarks/ped2_flow.py): per-clip flow-magnitude statistics
    "motion-mil": {"train": {"model": "mil", "backbone": None, "topk": 3,
                             "head_kwargs": {"standardize": True, "hidden": 32,
                                             "bottleneck": 8}},
                   "pool": "none+120x180"},
    "motion-mil@112": {"train": {"model": "mil", "backbone": None, "topk": 3,
                                 "head_kwargs": {"standardize": True, "hidden": 32,
                                                 "bottleneck": 8}},
                       "pool": "none+112"},
    "motion-mil@240x360": {"train": {"model": "mil", "backbone": None, "topk": 3,
                                     "head_kwargs": {"standardize": True, "hidden": 32,
                                                     "bottleneck": 8}},
                           "pool": "none+240x360"},
    "motion-mil+self": {"train": {"model": "mil", "backbone": None, "topk": 3,
                                  "self_training": True,
                                  "head_kwargs": {"standardize": True, "hidden": 32,
                                                  "bottleneck": 8}},
                        "pool": "none+120x180"},
    "motion-mil@240x360+self": {"train": {"model": "mil", "backbone": None, "topk": 3,
                                          "self_training": True,
                                          "head_kwargs": {"standardize": True, "hidden": 32,
                                                          "bottleneck": 8}},
                                "pool": "none+240x360"},
    "normality": {"normality": "both"},
    "motion-normality": {"normality": "both", "pool": "none+120x180"},
    "motion-normality-upper": {"normality": "upper", "pool": "none+120x180"},
    "motion-normality@240x360": {"normality": "both", "pool": "none+240x360"},
    "motion-normality-upper@240x360": {"normality": "upper", "pool": "none+240x360"},
    "motion-normality@240x360 (32 segments)": {"normality": "both", "pool": "none+240x360",
                                               "train": {"segments": 32}},
    "motion-mil+self (32 segments)": {"train": {"model": "mil", "backbone": None, "topk": 3,
                                                "segments": 32, "self_training": True,
                                                "head_kwargs": {"standardize": True,
                                                                "hidden": 32, "bottleneck": 8}},
                                      "pool": "none+120x180"},
    "motion-normality@240x360|motion-mil@240x360+self": {
        "ensemble": ["motion-normality@240x360", "motion-mil@240x360+self"],
        "combine": "geomean"},
    "mil-ctx|motion-mil": {"ensemble": ["mil-ctx", "motion-mil"], "combine": "mean"},
    "mil-ctx|motion-mil (geomean)": {"ensemble": ["mil-ctx", "motion-mil"],
                                     "combine": "geomean"},
    "motion-normality@240x360|mil-ctx": {"ensemble": ["motion-normality@240x360", "mil-ctx"],
                                         "combine": "geomean"},
    "mil+motion": {"train": {"model": "mil", "backbone": None, "topk": 3,
                             "head_kwargs": {"standardize": True, "hidden": 128}},
                   "pool": "mean+120x180"},
    "mil-dis+motion": {"train": {"model": "mil-dis", "backbone": None, "topk": 3,
                                 "self_training": True, "head_kwargs": {"hidden": 128}},
                       "pool": "mean+120x180"},
}
"""Candidate name -> ``train``: TrainConfig settings over ``RECIPE``; ``augment``: extra training
views of every training video (``flip``: mirrored frames; ``shift``: the clips a stride-4 cut adds,
i.e. the clip grid moved by 4 frames); ``pool``: ``mean`` (I3D's ``forward_features``, default),
``max`` (spatial maximum) or ``meanmax`` (both, 2048-D), ``+SIZE`` appends the 7 motion
statistics of :func:`motion_clip_features` at a ``benchmarks/ped2_flow.py`` size (``none+SIZE``:
motion alone); ``ensemble``: no training of its own, the members' segment scores combined
(``combine``: ``mean``, ``geomean`` or ``max``), i.e. both heads running side by side;
``normality``: no head, :func:`normality_scores` (BN-WVAD's distance from normal statistics)."""
MEASURED = ["mil-ctx", "mil-dis", "mil-ctx+meanmax", "mil", "mil-ctx+flip", "mil-dis+flip",
            "normality", "motion-mil@112", "motion-mil", "motion-mil@240x360", "motion-mil+self",
            "motion-mil@240x360+self", "mil+motion", "mil-dis+motion", "mil-ctx|motion-mil",
            "mil-ctx|motion-mil (geomean)", "motion-normality", "motion-normality-upper",
            "motion-normality@240x360", "motion-normality@240x360|mil-ctx",
            "motion-normality@240x360 (32 segments)", "motion-mil+self (32 segments)",
            "motion-normality@240x360|motion-mil@240x360+self", "motion-normality-upper@240x360"]
"""The candidates measured for docs/ped2_weak_split.md (``mil-ctx+flip+shift`` needs job 3 of
``benchmarks/ped2_clips.py``, not run yet; the motion candidates need
``benchmarks/ped2_flow.py``)."""


def video_key(split: str, name: str) -> str:
    return f"{split}/{name}"


def segment_features(work: Path, split: str, name: str, view: str, cut: str, pool: str,
                     segments: int) -> tuple[np.ndarray, int]:
    """[segments, D] features of one video and view, pooled as ``edgevad extract`` pools."""
    from edgevad_export.extraction.extract import clip_centre, pool_segments

    with np.load(clip_file(work, split, name, view, cut)) as d:
        arrays = {k: d[k] for k in d.files}
    idx = select_clips(arrays, cut)
    appearance, _, motion = pool.partition("+")
    feats = {"mean": arrays["mean"], "max": arrays["max"], "none": None,
             "meanmax": np.concatenate([arrays["mean"], arrays["max"]], axis=1)}[appearance]
    if motion:
        flow = motion_clip_features(work, split, name, motion, arrays["start"],
                                    int(arrays["n_frames"]))
        feats = flow if feats is None else np.concatenate([feats, flow], axis=1)
    feats = feats[idx]
    centres = [clip_centre(int(s), int(r)) for s, r in zip(arrays["start"][idx], arrays["real"][idx])]
    n_frames = int(arrays["n_frames"])
    return pool_segments(feats, centres, n_frames, segments), n_frames


_MOTION_CACHE: dict = {}


def motion_clip_features(work: Path, split: str, name: str, size: str, starts: np.ndarray,
                         n_frames: int) -> np.ndarray:
    """[K, 7] motion feature of each clip (``starts``): the runtime's own per-frame statistics
    (``edgevad.media.motion.flow_statistics``) of the flow maps of ``benchmarks/ped2_flow.py``
    at ``size``, averaged over the clip's 16 frames (a padded
    tail clip repeats its last frame, as the I3D clip does). A mirrored view has the same
    magnitudes, so every view of a video shares its motion features."""
    from ped2_clips import CLIP_LEN
    from ped2_flow import flow_file

    from edgevad.media.motion import flow_statistics

    key = (str(work), split, name, size)
    if key not in _MOTION_CACHE:
        with np.load(flow_file(work, split, name, size)) as d:
            _MOTION_CACHE[key] = flow_statistics(d["mag"])
    stats = _MOTION_CACHE[key]
    if len(stats) != n_frames:
        raise ValueError(f"{split}/{name}: {len(stats)} flow frames, {n_frames} video frames")
    return np.stack([stats[np.minimum(np.arange(s, s + CLIP_LEN), n_frames - 1)].mean(axis=0)
                     for s in np.asarray(starts, dtype=int)])


def make_bags(work: Path, videos, candidate: dict, segments: int, *, train: bool):
    """FeatureBags of ``videos`` (``(split, name)``); training bags add the augmented views."""
    from edgevad_export.data.bags import FeatureBags

    pool = candidate.get("pool", "mean")
    views = [("orig", "s8", "")]
    if train:
        views += [{"flip": ("flip", "s8", "#flip"), "shift": ("orig", "o4", "#shift")}[a]
                  for a in candidate.get("augment", [])]
    feats, names, labels, frames = [], [], [], []
    for split, name in videos:
        for view, cut, suffix in views:
            f, n = segment_features(work, split, name, view, cut, pool, segments)
            feats.append(f)
            names.append(video_key(split, name) + suffix)
            labels.append(split == "testing")
            frames.append(n)
    labels = np.asarray(labels, dtype=bool)
    return FeatureBags(features=feats, names=np.asarray(names), labels=labels,
                       categories=np.where(labels, "Anomaly", "Normal"),
                       n_frames=np.asarray(frames, dtype=np.int64))


def frame_labels_of(key: str, n_frames: int, labels: dict) -> np.ndarray:
    split, name = key.split("/")
    lab = np.zeros(n_frames, np.int8) if split == "training" else np.asarray(labels[name], np.int8)
    if len(lab) != n_frames:
        raise SystemExit(f"{key}: {n_frames} frames decoded, {len(lab)} labelled")
    return lab


def config_for(candidate: dict, seed: int, n_anomalous: int) -> dict:
    settings = {**RECIPE, "seed": seed, "batch_anomalous": n_anomalous,
                "batch_normal": n_anomalous}
    settings.update(candidate.get("train", {}))
    return settings


def live_scores(model, head: str, features: np.ndarray) -> np.ndarray:
    """Segment scores as a live runtime reads them: segment i scored from the window of the
    head's ``live_window`` segments that ends at i (the exporter's window; no future segment),
    the newest output taken. Heads without a window score each segment from the bag as is
    (``mil``: one segment; ``mil-dis``: its gate looks back one segment only)."""
    import torch

    from edgevad_export.training.trainer import forward_scores

    window = getattr(model, "live_window", None)
    x = torch.from_numpy(np.asarray(features, dtype=np.float32))[None]
    with torch.inference_mode():
        if not window or head == "mil-dis":
            return forward_scores(head, model, x)["scores"][0].numpy()
        return np.array([float(forward_scores(head, model, x[:, max(0, i - window + 1):i + 1])
                               ["scores"][0, -1]) for i in range(x.shape[1])])


def fit_and_score(settings: dict, train_bags, test_bags, folder: Path) -> dict[str, dict]:
    """Train with ``edgevad train``'s function; segment scores of every test video, ``bag``
    (``edgevad eval``: the whole bag at once) and ``live`` (:func:`live_scores`)."""
    from edgevad_export.evaluation.evaluate import score_bags
    from edgevad_export.training import TrainConfig, load_checkpoint, train

    ckpt = train(TrainConfig.from_dict(settings), train_bags, folder, progress=False)
    model, meta = load_checkpoint(ckpt)
    model.eval()
    scores, _ = score_bags(model, meta["head"], test_bags)
    live = [live_scores(model, meta["head"], f) for f in test_bags.features]
    rounded = lambda s: [round(float(v), 6) for v in s]  # noqa: E731
    return {"bag": {str(n): rounded(s) for n, s in zip(test_bags.names, scores)},
            "live": {str(n): rounded(s) for n, s in zip(test_bags.names, live)}}


def normality_scores(candidate: dict, train_bags, test_bags) -> dict[str, dict]:
    """BN-WVAD's normality prior on its own (Zhou et al., CVPR 2023, without their ranking head):
    a segment's squared distance from the per-dimension statistics of the *normal* training
    bags' segments (what a BatchNorm layer's running mean and variance hold after seeing normal
    features), averaged over dimensions; ``normality: "upper"`` counts only dimensions above the
    normal mean (faster than usual, for motion statistics). Needs only video labels (which
    training videos are normal); a segment's score is its own, so bag and live scores agree."""
    normal = np.concatenate([f for f, y in zip(train_bags.features, train_bags.labels) if not y])
    mean, std = normal.mean(axis=0), normal.std(axis=0) + 1e-6
    out = {}
    for n, f in zip(test_bags.names, test_bags.features):
        z = (np.asarray(f) - mean) / std
        if candidate["normality"] == "upper":
            z = np.maximum(z, 0.0)
        d = (z ** 2).mean(axis=1)
        out[str(n)] = [round(float(v), 6) for v in d / (1.0 + d)]  # monotone, into [0, 1)
    return {"bag": out, "live": out}


def pooled_auc(scores: dict[str, list[float]], n_frames: dict[str, int], labels: dict) -> float:
    from edgevad_export.evaluation.metrics import VideoScores, frame_report

    videos = [VideoScores(k, np.asarray(s), frame_labels_of(k, n_frames[k], labels))
              for k, s in scores.items()]
    return frame_report(videos).frame_auc


class RunCache:
    """``<work>/weak_split_runs.json``: segment scores per (candidate, part, seed); several cache
    files are merged by passing them all (the first one is written)."""

    def __init__(self, path: Path, *more: Path) -> None:
        self.path = path
        self.runs = {}
        for p in (*more, path):
            if p.is_file():
                self.runs.update(json.loads(p.read_text()))

    def get(self, key: str, make) -> dict:
        if key not in self.runs:
            value = make()
            # several studies may share the file (e.g. one per candidate): merge, then replace
            self.runs = {**(json.loads(self.path.read_text()) if self.path.is_file() else {}),
                         **self.runs, key: value}
            tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(self.runs))
            tmp.replace(self.path)
        return self.runs[key]


MODES = ("live", "bag")


def video_frames(work: Path, videos) -> dict[str, int]:
    out = {}
    for split, name in videos:
        with np.load(clip_file(work, split, name, "orig", "s8")) as d:
            out[video_key(split, name)] = int(d["n_frames"])
    return out


def run(name: str, part: str, seed: int, train_videos, test_videos, work: Path,
        cache: RunCache) -> dict:
    """Segment scores of ``test_videos`` by candidate ``name`` trained on ``train_videos``
    (cached under ``name|part|s<seed>``). An ``ensemble`` candidate trains nothing of its own:
    it combines its members' runs of the same part and seed (each trained and cached as the
    member itself), segment by segment, as a runtime running both heads would."""
    cand = CANDIDATES[name]
    if "ensemble" in cand:
        members = [run(m, part, seed, train_videos, test_videos, work, cache)
                   for m in cand["ensemble"]]
        combine = {"mean": lambda a: np.mean(a, axis=0),
                   "geomean": lambda a: np.exp(np.mean(np.log(np.clip(a, 1e-9, 1)), axis=0)),
                   "max": lambda a: np.max(a, axis=0)}[cand.get("combine", "mean")]
        return {m: {k: [round(float(v), 6) for v in combine(np.array([r[m][k] for r in members]))]
                    for k in members[0][m]} for m in MODES}
    seg = config_for(cand, 0, 1)["segments"]
    n_anom = sum(split == "testing" for split, _ in train_videos)
    if "normality" in cand:  # no training and no seed: one run serves every seed
        return cache.get(f"{name}|{part}", lambda: normality_scores(
            cand, make_bags(work, train_videos, cand, seg, train=True),
            make_bags(work, test_videos, cand, seg, train=False)))

    def fit() -> dict:
        return fit_and_score(config_for(cand, seed, n_anom),
                             make_bags(work, train_videos, cand, seg, train=True),
                             make_bags(work, test_videos, cand, seg, train=False),
                             work / "runs" / f"{name}-{part}-s{seed}")
    return cache.get(f"{name}|{part}|s{seed}", fit)


def validate(name: str, work: Path, seeds, cache: RunCache, labels: dict) -> dict:
    """Inner 3-fold cross-validation on the training videos: pooled AUC per seed and mode."""
    per_seed: dict[str, list[float]] = {m: [] for m in MODES}
    for seed in seeds:
        scores, n_frames = {m: {} for m in MODES}, {}
        for k, held in enumerate(INNER):
            rest = [v for v in TRAIN_VIDEOS if v not in held]
            got = run(name, f"val{k}", seed, rest, held, work, cache)
            for m in MODES:
                scores[m].update(got[m])
            n_frames.update(video_frames(work, held))
        for m in MODES:
            per_seed[m].append(pooled_auc(scores[m], n_frames, labels))
    return {m: {"per_seed": per_seed[m], "mean": float(np.mean(per_seed[m]))} for m in MODES}


def leave_one_out(name: str, work: Path, labels: dict) -> float:
    """Leave-one-video-out over the 10 training videos, for ``normality`` candidates only (no
    training, so 10 folds cost nothing): each video scored from the statistics of the normal
    videos among the other 9; pooled frame AUC. A check of the 3-fold choice's fold noise."""
    cand = CANDIDATES[name]
    seg = config_for(cand, 0, 1)["segments"]
    scores = {}
    for video in TRAIN_VIDEOS:
        rest = [v for v in TRAIN_VIDEOS if v != video]
        scores.update(normality_scores(cand, make_bags(work, rest, cand, seg, train=True),
                                       make_bags(work, [video], cand, seg, train=False))["live"])
    return pooled_auc(scores, video_frames(work, TRAIN_VIDEOS), labels)


def clip_level_normality(name: str, work: Path, train_videos, test_videos) -> dict[str, list]:
    """Per-frame scores of ``test_videos`` by a ``normality`` candidate at the granularity a live
    runtime has: statistics fitted on the *clip* features (not segment averages) of the normal
    ``train_videos``, every clip (16 frames, every 8) scored as it completes, and each frame
    taking the score of the first clip that holds it and completes (a delay of at most one
    clip, no future clip). No segments, no pooling over the video."""
    cand = CANDIDATES[name]
    appearance, _, size = cand.get("pool", "mean").partition("+")
    if appearance != "none" or not size:
        raise ValueError(f"{name}: clip-level scoring is for motion-only normality candidates")

    def clips(split: str, video: str) -> tuple[np.ndarray, np.ndarray, int]:
        with np.load(clip_file(work, split, video, "orig", "s8")) as d:
            starts, n = d["start"], int(d["n_frames"])
        return motion_clip_features(work, split, video, size, starts, n), starts, n

    normal = np.concatenate([clips(*v)[0] for v in train_videos if v[0] == "training"])
    mean, std = normal.mean(axis=0), normal.std(axis=0) + 1e-6
    out = {}
    for split, video in test_videos:
        feats, starts, n = clips(split, video)
        z = (feats - mean) / std
        if cand["normality"] == "upper":
            z = np.maximum(z, 0.0)
        d = (z ** 2).mean(axis=1)
        clip_score = d / (1.0 + d)
        frame_clip = np.searchsorted(np.asarray(starts) + 15, np.arange(n))  # first clip ending >= f
        out[video_key(split, video)] = clip_score[np.minimum(frame_clip, len(starts) - 1)].tolist()
    return out


def clip_level_report(name: str, work: Path, labels: dict) -> dict[str, float]:
    """:func:`clip_level_normality` scored like the table: 3-fold validation inside the training
    videos, and the 18 test videos from all 10 training videos."""
    val = {}
    for held in INNER:
        val.update(clip_level_normality(name, work, [v for v in TRAIN_VIDEOS if v not in held],
                                        held))
    test_scores = clip_level_normality(name, work, TRAIN_VIDEOS, TEST_VIDEOS)
    return {"validation": pooled_auc(val, video_frames(work, TRAIN_VIDEOS), labels),
            "test": pooled_auc(test_scores, video_frames(work, TEST_VIDEOS), labels)}


def test(name: str, work: Path, seeds, cache: RunCache, labels: dict) -> dict:
    """Train on the 10 training videos, score the 18 test videos: pooled AUC per seed."""
    n_frames = video_frames(work, TEST_VIDEOS)
    out = {}
    runs = [run(name, "test", seed, TRAIN_VIDEOS, TEST_VIDEOS, work, cache) for seed in seeds]
    for m in MODES:
        aucs = [pooled_auc(r[m], n_frames, labels) for r in runs]
        inside = [pooled_auc({k: v for k, v in r[m].items() if k.startswith("testing/")},
                             n_frames, labels) for r in runs]
        out[m] = {"per_seed": aucs, "mean": float(np.mean(aucs)),
                  "std": float(np.std(aucs, ddof=1)) if len(aucs) > 1 else 0.0,
                  "within_anomalous_videos": float(np.mean(inside)),
                  "normal_video_mean_score": {
                      k: round(float(np.mean([np.mean(r[m][k]) for r in runs])), 4)
                      for k in runs[0][m] if k.startswith("training/")}}
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, required=True, help="Folder of ped2_clips.py.")
    parser.add_argument("--data", type=Path, default=PED2)
    parser.add_argument("--candidates", nargs="+", default=MEASURED, choices=list(CANDIDATES),
                        help=f"Default: the ones docs/ped2_weak_split.md reports ({', '.join(MEASURED)}).")
    parser.add_argument("--val-seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--no-test", action="store_true",
                        help="Validation only (the test videos' features are not needed).")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--cache", type=Path, nargs="+", default=None,
                        help="Run cache files (default <work>/weak_split_runs.json); runs are "
                             "read from all, written to the first.")
    args = parser.parse_args(argv)
    if not (args.data / "test_frame_labels.json").is_file():
        print(f"Ped2 not found at {args.data}", file=sys.stderr)
        return 2
    import torch

    torch.set_flush_denormal(True)
    labels = json.loads((args.data / "test_frame_labels.json").read_text())
    cache = RunCache(*(args.cache or [args.work / "weak_split_runs.json"]))
    result: dict = {"split": {"train": [video_key(*v) for v in TRAIN_VIDEOS],
                              "test": [video_key(*v) for v in TEST_VIDEOS],
                              "inner_folds": [[video_key(*v) for v in f] for f in INNER]},
                    "recipe": RECIPE, "candidates": {}}
    fmt = lambda r: f"{100 * r['mean']:.1f}"  # noqa: E731
    for name in args.candidates:
        t0 = time.perf_counter()
        try:
            val = validate(name, args.work, args.val_seeds, cache, labels)
            entry = {"settings": CANDIDATES[name], "validation": val}
            print(f"{name}: validation live {fmt(val['live'])} "
                  f"({', '.join(f'{100 * a:.1f}' for a in val['live']['per_seed'])}), "
                  f"bag {fmt(val['bag'])}", flush=True)
            if "normality" in CANDIDATES[name]:
                entry["leave_one_out"] = leave_one_out(name, args.work, labels)
                print(f"{name}: leave-one-video-out on the training videos "
                      f"{100 * entry['leave_one_out']:.1f}", flush=True)
                if CANDIDATES[name].get("pool", "mean").startswith("none+"):
                    entry["clip_level"] = clip_level_report(name, args.work, labels)
                    print(f"{name}: clip by clip, as a live runtime scores: validation "
                          f"{100 * entry['clip_level']['validation']:.1f}, test "
                          f"{100 * entry['clip_level']['test']:.1f} (not used for the choice)",
                          flush=True)
            if not args.no_test:
                entry["test"] = test(name, args.work, args.seeds, cache, labels)
                t = entry["test"]
                print(f"{name}: test live {fmt(t['live'])} ± {100 * t['live']['std']:.1f}, bag "
                      f"{fmt(t['bag'])} ± {100 * t['bag']['std']:.1f} (not used for the choice) "
                      f"[{time.perf_counter() - t0:.0f} s]", flush=True)
        except FileNotFoundError as exc:
            print(f"{name}: skipped, its clip features are missing ({exc.filename}): run "
                  "benchmarks/ped2_clips.py to the end", flush=True)
            continue
        result["candidates"][name] = entry
    if not result["candidates"]:
        return 1
    chosen = max(result["candidates"],
                 key=lambda c: result["candidates"][c]["validation"]["live"]["mean"])
    result["chosen"] = chosen

    print(f"\nchosen by live validation AUC on the 10 training videos: {chosen}\n")
    print("| recipe | validation AUC, live (bag) | test frame AUC, live | test frame AUC, bag "
          "(`edgevad eval`) |")
    print("| --- | --- | --- | --- |")
    for name, entry in result["candidates"].items():
        v, t = entry["validation"], entry.get("test")
        mark = " (chosen)" if name == chosen else ""
        cells = ([f"{fmt(t[m])} ± {100 * t[m]['std']:.1f}" for m in MODES] if t
                 else ["not run", "not run"])
        print(f"| {name}{mark} | {fmt(v['live'])} ({fmt(v['bag'])}) | {cells[0]} | {cells[1]} |")
    for peer, auc, caveat in PEERS:
        print(f"| {peer}, published | | | {auc:.1f} ({caveat}) |")
    print("\nwhere the tested recipes fail (bag scores, mean over seeds): frame AUC over the 6 "
          "anomalous test videos alone; mean score of each normal test video")
    for name, entry in result["candidates"].items():
        if "test" in entry:
            t = entry["test"]["bag"]
            worst = sorted(t["normal_video_mean_score"].items(), key=lambda kv: -kv[1])[:4]
            print(f"- {name}: within anomalous videos {100 * t['within_anomalous_videos']:.1f}; "
                  f"highest normal videos {', '.join(f'{k} {v:.2f}' for k, v in worst)}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
