"""End to end on pixels: real I3D features from UCSD Ped2, weak training, frame AUC on unseen videos.

    python benchmarks/ped2_end_to_end.py --work edgevad-work/ped2          # extract (resumable) + 2 folds
    python benchmarks/ped2_end_to_end.py --work edgevad-work/ped2 --heads mil mil-ctx --seeds 0 1 2

Protocol (weak labels only for training, frame labels only for evaluation):
- features: Kinetics I3D (the real weights), 16-frame clips every 8 frames at 224x224, pooled into
  16 segments per video (Ped2 videos are 120-180 frames);
- two folds over the 12 test videos, A = 01-06 and B = 07-12; each fold trains on the 16 normal
  training videos plus the *other* fold's 6 test videos as anomalous bags (video-level labels),
  and is evaluated on its own 6 videos with their frame labels, so every test video is scored
  once by a model that never saw it;
- frame AUC pooled over all 12 test videos (and per fold), mean and spread over seeds.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
PED2 = REPO.parent / "shared" / "data" / "ped2"
FOLDS = {"A": [f"{i:02d}" for i in range(1, 7)], "B": [f"{i:02d}" for i in range(7, 13)]}
SEGMENTS, STRIDE = 16, 8


def extract(work: Path, data: Path, backbone: str = "i3d", tag: str | None = None,
            **options) -> dict[str, Path]:
    """Feature bags of the training (normal) and test (anomalous) videos, in
    ``<work>/ped2_<split>_<tag or backbone>.npz``; reuses finished work. ``options`` go to
    ``extract_features`` (default: this benchmark's segments and stride)."""
    from edgevad_export.extraction.extract import extract_features

    options = {"segments": SEGMENTS, "stride": STRIDE, **options}
    out = {}
    for split, label in (("training", False), ("testing", True)):
        path = work / f"ped2_{split}_{tag or backbone}.npz"
        if not path.is_file():
            videos = sorted((data / split).glob("*.mp4"))
            report = extract_features(videos, backbone, path, **options,
                                      labels={v.stem: label for v in videos})
            print(report.summary(), flush=True)
        out[split] = path
    return out


def with_annotations(bags, labels: dict[str, list[int]]):
    """Attach each test video's annotated interval (Ped2 has one per video) to its bag."""
    intervals = []
    for name in bags.names:
        lab = np.asarray(labels[name])
        idx = np.flatnonzero(lab)
        intervals.append([idx[0], idx[-1]] if idx.size else [-1, -1])
    bags.anomaly_intervals = np.asarray(intervals, dtype=np.int64)
    return bags


def run_fold(head: str, seed: int, steps: int, train_bags, test_bags, work: Path,
             labels: dict[str, list[int]]):
    from edgevad_export.evaluation.evaluate import score_bags
    from edgevad_export.evaluation.metrics import VideoScores
    from edgevad_export.training import TrainConfig, load_checkpoint, train

    n_anom = int(train_bags.labels.sum())
    cfg = TrainConfig(model=head, backbone="i3d", segments=SEGMENTS, steps=steps, seed=seed,
                      batch_anomalous=n_anom, batch_normal=n_anom,
                      topk=3 if head == "mil-ctx" else 1)
    folder = train(cfg, train_bags, work / "runs" / f"{head}-s{seed}-{test_bags.names[0]}",
                   progress=False)
    model, _ = load_checkpoint(folder)
    scores, _ = score_bags(model, head, test_bags)
    return [VideoScores(str(n), s, np.asarray(labels[str(n)], dtype=np.int8))
            for n, s in zip(test_bags.names, scores)]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, required=True, help="Folder for features and runs.")
    parser.add_argument("--data", type=Path, default=PED2)
    parser.add_argument("--heads", nargs="+", default=["mil", "mil-ctx"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    if not (args.data / "test_frame_labels.json").is_file():
        print(f"Ped2 not found at {args.data}", file=sys.stderr)
        return 2
    import torch

    from edgevad_export.data.bags import concat_bags, load_bags
    from edgevad_export.evaluation.metrics import frame_report

    torch.set_flush_denormal(True)
    args.work.mkdir(parents=True, exist_ok=True)
    paths = extract(args.work, args.data)
    labels = json.loads((args.data / "test_frame_labels.json").read_text())
    normal = load_bags(paths["training"])
    test = with_annotations(load_bags(paths["testing"]), labels)
    protocol = json.loads(str(np.load(paths["testing"])["protocol"].reshape(-1)[0]))

    results = {}
    for head in args.heads:
        runs = []
        for seed in args.seeds:
            videos, per_fold = [], {}
            for fold, names in FOLDS.items():
                held = test.select([i for i, n in enumerate(test.names) if n in names])
                other = test.select([i for i, n in enumerate(test.names) if n not in names])
                fold_videos = run_fold(head, seed, args.steps, concat_bags(normal, other), held,
                                       args.work, labels)
                per_fold[fold] = frame_report(fold_videos).frame_auc
                videos += fold_videos
            pooled = frame_report(videos).frame_auc
            runs.append({"seed": seed, "pooled_auc": pooled, **{f"fold_{k}": v
                                                                for k, v in per_fold.items()}})
            print(f"{head} seed {seed}: pooled frame AUC {pooled:.4f} "
                  f"(A {per_fold['A']:.4f}, B {per_fold['B']:.4f})", flush=True)
        aucs = np.array([r["pooled_auc"] for r in runs])
        results[head] = {"runs": runs, "mean": float(aucs.mean()), "std": float(aucs.std(ddof=1))
                         if len(aucs) > 1 else 0.0}

    print("\n| head | frame AUC, 12 test videos (mean ± std) | seeds | steps |")
    print("| --- | --- | --- | --- |")
    for head, r in results.items():
        print(f"| {head} | {100 * r['mean']:.2f} ± {100 * r['std']:.2f} | {len(args.seeds)} "
              f"| {args.steps} |")
    if args.json:
        args.json.write_text(json.dumps({"protocol": protocol, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
