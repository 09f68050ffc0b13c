"""UCSD Ped2 on the standard weak split, end to end on pixels, beside the published peers.

    nice -n 10 python benchmarks/ped2_clips.py --work WORK          # I3D clip features (resumable)
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
``edgevad eval`` does.

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
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ped2_clips import (  # noqa: E402
    PED2,
    TRAIN_ANOMALOUS,
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
"""Inner folds over the 10 training videos: two anomalous videos each (one of them anomalous
throughout: 09, 10; 11 and 12 are not) and one or two normal ones."""

PEERS = [
    ("Sultani et al. MIL (CVPR 2018)", 92.3,
     "C3D features; figure as reported on this split by GCN-Anomaly (Zhong et al. 2019)"),
    ("GCN-Anomaly (Zhong et al., CVPR 2019)", 93.2,
     "TSN/C3D features, noise-cleaning GCN over the whole video (offline), own table"),
    ("RTFM (Tian et al., ICCV 2021)", 98.6,
     "I3D 10-crop features, 32 segments, temporal attention over the whole video (offline), "
     "own table"),
]
"""Published frame AUCs on this split, cited as published: different features and
pre-processing, several select their checkpoint on the test videos."""

RECIPE = {"model": "mil-ctx", "backbone": "i3d", "segments": 16, "steps": 1000, "topk": 3,
          "threads": 1}
"""The default model's recipe (``edgevad/default_model``): the baseline candidate."""

CANDIDATES: dict[str, dict] = {
    "mil-ctx": {"train": {}},
    "mil-ctx+flip": {"train": {}, "augment": ["flip"]},
    "mil": {"train": {"model": "mil", "topk": 1}},
    "mil-z+flip": {"train": {"model": "mil", "topk": 3, "head_kwargs": {"standardize": True}},
                   "augment": ["flip"]},
    "mil-ctx+meanmax": {"train": {"backbone": None}, "pool": "meanmax"},
    "mil-ctx+flip+st": {"train": {"self_training": True}, "augment": ["flip"]},
    "mil-ctx+flip+300": {"train": {"steps": 300}, "augment": ["flip"]},
    "mil-ctx+flip+shift": {"train": {}, "augment": ["flip", "shift"]},
}
"""Candidate name -> ``train``: TrainConfig settings over ``RECIPE``; ``augment``: extra training
views of every training video (``flip``: mirrored frames; ``shift``: the clips a stride-4 cut adds,
i.e. the clip grid moved by 4 frames); ``pool``: ``mean`` (I3D's ``forward_features``, default),
``max`` (spatial maximum) or ``meanmax`` (both, 2048-D)."""


def video_key(split: str, name: str) -> str:
    return f"{split}/{name}"


def segment_features(work: Path, split: str, name: str, view: str, cut: str, pool: str,
                     segments: int) -> tuple[np.ndarray, int]:
    """[segments, D] features of one video and view, pooled as ``edgevad extract`` pools."""
    from edgevad_export.extraction.extract import clip_centre, pool_segments

    with np.load(clip_file(work, split, name, view, cut)) as d:
        arrays = {k: d[k] for k in d.files}
    idx = select_clips(arrays, cut)
    feats = {"mean": arrays["mean"], "max": arrays["max"],
             "meanmax": np.concatenate([arrays["mean"], arrays["max"]], axis=1)}[pool][idx]
    centres = [clip_centre(int(s), int(r)) for s, r in zip(arrays["start"][idx], arrays["real"][idx])]
    n_frames = int(arrays["n_frames"])
    return pool_segments(feats, centres, n_frames, segments), n_frames


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


def fit_and_score(settings: dict, train_bags, test_bags, folder: Path) -> dict[str, list[float]]:
    """Train with ``edgevad train``'s function; segment scores of every test video."""
    from edgevad_export.evaluation.evaluate import score_bags
    from edgevad_export.training import TrainConfig, load_checkpoint, train

    ckpt = train(TrainConfig.from_dict(settings), train_bags, folder, progress=False)
    model, meta = load_checkpoint(ckpt)
    scores, _ = score_bags(model, meta["head"], test_bags)
    return {str(n): [round(float(v), 6) for v in s] for n, s in zip(test_bags.names, scores)}


def pooled_auc(scores: dict[str, list[float]], n_frames: dict[str, int], labels: dict) -> float:
    from edgevad_export.evaluation.metrics import VideoScores, frame_report

    videos = [VideoScores(k, np.asarray(s), frame_labels_of(k, n_frames[k], labels))
              for k, s in scores.items()]
    return frame_report(videos).frame_auc


class RunCache:
    """``<work>/weak_split_runs.json``: segment scores per (candidate, part, seed)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.runs = json.loads(path.read_text()) if path.is_file() else {}

    def get(self, key: str, make) -> dict:
        if key not in self.runs:
            self.runs[key] = make()
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.runs))
            tmp.replace(self.path)
        return self.runs[key]


def validate(name: str, work: Path, seeds, cache: RunCache, labels: dict) -> dict:
    """Inner 3-fold cross-validation on the training videos: pooled AUC per seed."""
    cand = CANDIDATES[name]
    seg = config_for(cand, 0, 1)["segments"]
    per_seed = []
    for seed in seeds:
        scores, n_frames = {}, {}
        for k, held in enumerate(INNER):
            rest = [v for v in TRAIN_VIDEOS if v not in held]
            train_bags = make_bags(work, rest, cand, seg, train=True)
            test_bags = make_bags(work, held, cand, seg, train=False)
            n_anom = sum(split == "testing" for split, _ in rest)
            got = cache.get(f"{name}|val{k}|s{seed}", lambda: fit_and_score(
                config_for(cand, seed, n_anom), train_bags, test_bags,
                work / "runs" / f"{name}-val{k}-s{seed}"))
            scores.update(got)
            n_frames.update({str(n): int(f) for n, f in zip(test_bags.names, test_bags.n_frames)})
        per_seed.append(pooled_auc(scores, n_frames, labels))
    return {"per_seed": per_seed, "mean": float(np.mean(per_seed))}


def test(name: str, work: Path, seeds, cache: RunCache, labels: dict) -> dict:
    """Train on the 10 training videos, score the 18 test videos: pooled AUC per seed."""
    cand = CANDIDATES[name]
    seg = config_for(cand, 0, 1)["segments"]
    train_bags = make_bags(work, TRAIN_VIDEOS, cand, seg, train=True)
    test_bags = make_bags(work, TEST_VIDEOS, cand, seg, train=False)
    n_frames = {str(n): int(f) for n, f in zip(test_bags.names, test_bags.n_frames)}
    per_seed, normal_mean = [], []
    for seed in seeds:
        got = cache.get(f"{name}|test|s{seed}", lambda: fit_and_score(
            config_for(cand, seed, len(TRAIN_ANOMALOUS)), train_bags, test_bags,
            work / "runs" / f"{name}-test-s{seed}"))
        per_seed.append(pooled_auc(got, n_frames, labels))
        normal_mean.append({k: float(np.mean(s)) for k, s in got.items()
                            if k.startswith("training/")})
    keys = normal_mean[0]
    return {"per_seed": per_seed, "mean": float(np.mean(per_seed)),
            "std": float(np.std(per_seed, ddof=1)) if len(per_seed) > 1 else 0.0,
            "normal_video_mean_score": {k: float(np.mean([m[k] for m in normal_mean]))
                                        for k in keys}}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, required=True, help="Folder of ped2_clips.py.")
    parser.add_argument("--data", type=Path, default=PED2)
    parser.add_argument("--candidates", nargs="+", default=list(CANDIDATES),
                        choices=list(CANDIDATES))
    parser.add_argument("--val-seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--no-test", action="store_true",
                        help="Validation only (the test videos' features are not needed).")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    if not (args.data / "test_frame_labels.json").is_file():
        print(f"Ped2 not found at {args.data}", file=sys.stderr)
        return 2
    import torch

    torch.set_flush_denormal(True)
    labels = json.loads((args.data / "test_frame_labels.json").read_text())
    cache = RunCache(args.work / "weak_split_runs.json")
    result: dict = {"split": {"train": [video_key(*v) for v in TRAIN_VIDEOS],
                              "test": [video_key(*v) for v in TEST_VIDEOS],
                              "inner_folds": [[video_key(*v) for v in f] for f in INNER]},
                    "recipe": RECIPE, "candidates": {}}
    for name in args.candidates:
        t0 = time.perf_counter()
        val = validate(name, args.work, args.val_seeds, cache, labels)
        entry = {"settings": CANDIDATES[name], "validation": val}
        print(f"{name}: validation {100 * val['mean']:.2f} "
              f"({', '.join(f'{100 * a:.1f}' for a in val['per_seed'])})", flush=True)
        if not args.no_test:
            entry["test"] = test(name, args.work, args.seeds, cache, labels)
            print(f"{name}: test {100 * entry['test']['mean']:.2f} ± "
                  f"{100 * entry['test']['std']:.2f} (not used for the choice) "
                  f"[{time.perf_counter() - t0:.0f} s]", flush=True)
        result["candidates"][name] = entry
    chosen = max(result["candidates"], key=lambda c: result["candidates"][c]["validation"]["mean"])
    result["chosen"] = chosen

    print(f"\nchosen by validation on the 10 training videos: {chosen}\n")
    print("| recipe | validation AUC (3-fold, training videos) | test frame AUC (18 videos) |")
    print("| --- | --- | --- |")
    for name, entry in result["candidates"].items():
        t = entry.get("test")
        mark = " (chosen)" if name == chosen else ""
        test_txt = (f"{100 * t['mean']:.1f} ± {100 * t['std']:.1f} ({len(t['per_seed'])} seeds)"
                    if t else "not run")
        print(f"| {name}{mark} | {100 * entry['validation']['mean']:.1f} | {test_txt} |")
    for peer, auc, caveat in PEERS:
        print(f"| {peer}, published | | {auc:.1f} ({caveat}) |")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
