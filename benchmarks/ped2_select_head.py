"""Choose the I3D head shipped as mil-ctx (the default model until motion-prior) on Ped2 by
nested cross-validation, then report it honestly.

    python benchmarks/ped2_select_head.py --work edgevad-work/ped2 --json edgevad-work/ped2/select.json

Features: the real I3D bags of ``benchmarks/ped2_end_to_end.py`` (run it first; 16-frame clips
every 8 frames, 16 segments). Outer folds as there: A = test 01-06, B = test 07-12; an outer fold
trains on the 16 normal training videos + the other fold's 6 anomalous videos (video labels only)
and is scored on its own 6 with frame labels.

Selection never sees the videos it reports: for each outer fold, every candidate below is scored
by an *inner* 2-fold split of that fold's 6 training anomalies (train on normals + 3, score the
other 3 with their frame labels, and back), over the seeds; the candidate with the best inner
pooled frame AUC is then trained on all 6 and scored on the held-out fold. The candidates were
written down before any run; the outer AUC of every candidate is printed too, marked as not used
for the choice.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ped2_end_to_end import FOLDS, PED2, SEGMENTS, with_annotations  # noqa: E402

CANDIDATES: dict[str, dict] = {
    "mil-ctx": {"model": "mil-ctx", "topk": 3},
    "mil-ctx-st": {"model": "mil-ctx", "topk": 3, "self_training": True},
    "mil-z": {"model": "mil", "topk": 3, "head_kwargs": {"standardize": True}},
    "mil-z-st": {"model": "mil", "topk": 3, "head_kwargs": {"standardize": True},
                 "self_training": True},
    "mil-ctx-1000": {"model": "mil-ctx", "topk": 3, "steps": 1000},
    "mil-z-1000": {"model": "mil", "topk": 3, "head_kwargs": {"standardize": True},
                   "steps": 1000},
}
"""Settings that ``edgevad train`` takes (``--config`` JSON); every other setting is the default
except the batch (all anomalous bags of the split, as many normal ones), segments 16 and 300
steps."""


def config_for(candidate: str, seed: int, n_anomalous: int) -> dict:
    settings = {"backbone": "i3d", "segments": SEGMENTS, "steps": 300, "seed": seed,
                "batch_anomalous": n_anomalous, "batch_normal": n_anomalous}
    settings.update(CANDIDATES[candidate])
    return settings


def fit_and_score(settings: dict, train_bags, test_bags, labels, folder: Path):
    from edgevad_export.evaluation.evaluate import score_bags
    from edgevad_export.evaluation.metrics import VideoScores
    from edgevad_export.training import TrainConfig, load_checkpoint, train

    ckpt = train(TrainConfig.from_dict(settings), train_bags, folder, progress=False)
    model, meta = load_checkpoint(ckpt)
    scores, _ = score_bags(model, meta["head"], test_bags)
    return [VideoScores(str(n), s, np.asarray(labels[str(n)], dtype=np.int8))
            for n, s in zip(test_bags.names, scores)]


def pick(bags, names):
    return bags.select([i for i, n in enumerate(bags.names) if n in names])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=PED2)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--candidates", nargs="+", default=list(CANDIDATES))
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    import torch

    from edgevad_export.data.bags import concat_bags, load_bags
    from edgevad_export.evaluation.metrics import frame_report

    torch.set_flush_denormal(True)
    labels = json.loads((args.data / "test_frame_labels.json").read_text())
    normal = load_bags(args.work / "ped2_training_i3d.npz")
    test = with_annotations(load_bags(args.work / "ped2_testing_i3d.npz"), labels)
    runs = args.work / "select"

    def auc(videos):
        return frame_report(videos).frame_auc

    result = {"candidates": {c: CANDIDATES[c] for c in args.candidates}, "folds": {}}
    outer_chosen = {s: [] for s in args.seeds}
    outer_all = {c: {s: [] for s in args.seeds} for c in args.candidates}
    for held, held_names in FOLDS.items():
        train_names = [n for f, ns in FOLDS.items() if f != held for n in ns]
        inner = {}
        for cand in args.candidates:
            per_seed = []
            for seed in args.seeds:
                videos = []
                for half in (train_names[:3], train_names[3:]):
                    rest = [n for n in train_names if n not in half]
                    bags = concat_bags(normal, pick(test, rest))
                    videos += fit_and_score(config_for(cand, seed, len(rest)), bags,
                                            pick(test, half), labels,
                                            runs / f"inner-{held}-{cand}-s{seed}-{half[0]}")
                per_seed.append(auc(videos))
            inner[cand] = float(np.mean(per_seed))
            print(f"fold {held}: inner {cand}: {100 * inner[cand]:.2f} "
                  f"({', '.join(f'{100 * a:.1f}' for a in per_seed)})", flush=True)
        chosen = max(inner, key=inner.get)
        print(f"fold {held}: chosen {chosen}", flush=True)
        for cand in args.candidates:
            for seed in args.seeds:
                bags = concat_bags(normal, pick(test, train_names))
                videos = fit_and_score(config_for(cand, seed, len(train_names)), bags,
                                       pick(test, held_names), labels,
                                       runs / f"outer-{held}-{cand}-s{seed}")
                outer_all[cand][seed] += videos
                if cand == chosen:
                    outer_chosen[seed] += videos
        result["folds"][held] = {"inner_auc": inner, "chosen": chosen}

    chosen_aucs = np.array([auc(v) for v in outer_chosen.values()])
    result["nested"] = {"per_seed": chosen_aucs.tolist(), "mean": float(chosen_aucs.mean()),
                        "std": float(chosen_aucs.std(ddof=1)) if len(chosen_aucs) > 1 else 0.0}
    result["outer_all_not_for_selection"] = {}
    print("\n| head | frame AUC, 12 test videos (mean ± std over seeds) |")
    print("| --- | --- |")
    print(f"| nested choice ({', '.join(f['chosen'] for f in result['folds'].values())}) | "
          f"{100 * chosen_aucs.mean():.2f} ± {100 * result['nested']['std']:.2f} |")
    for cand in args.candidates:
        a = np.array([auc(v) for v in outer_all[cand].values()])
        result["outer_all_not_for_selection"][cand] = {"mean": float(a.mean()),
                                                       "std": float(a.std(ddof=1))}
        print(f"| {cand} (not used for the choice) | {100 * a.mean():.2f} ± "
              f"{100 * a.std(ddof=1):.2f} |")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
