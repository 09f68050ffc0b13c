"""Reproduce the shipped mil-ctx head (edgevad/checkpoints/mil-ctx/; the default model until
motion-prior won the weak-split study) from ../shared, and measure it.

    python benchmarks/ped2_end_to_end.py --work edgevad-work/ped2      # real I3D features of Ped2 (once)
    python benchmarks/ped2_mil_ctx.py --work edgevad-work/ped2 --out edgevad/checkpoints/mil-ctx

Split (weak labels for training, frame labels only for the evaluation):
- train: ped2/training/01-16 (all normal) + ped2/testing/07-12 as anomalous bags (video labels);
- evaluate: ped2/testing/01-06, never trained on, frame AUC with their frame labels.
Fold B (07-12) trains because its evaluation twin is the better-conditioned one: all six of
01-06 have normal frames (230 in all), while four of 07-12 are anomalous throughout (132 normal
frames, two videos). The other direction is reported too, in the nested cross-validation of
``benchmarks/ped2_select_head.py``, which also chose the settings in ``CONFIG`` using only
07-12's own videos (inner 2-fold split), never 01-06.

Writes ``<work>/ped2_train_B.npz`` and ``<work>/ped2_test_A.npz`` (the bags of the split, with
the extraction protocol copied), runs ``edgevad train`` and ``edgevad eval`` as a user would,
and writes ``<out>/provenance.json``: the commands, the SHA-256 of every video and file used,
and the measured frame AUC.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ped2_end_to_end import PED2  # noqa: E402

TRAIN_FOLD = [f"{i:02d}" for i in range(7, 13)]
TEST_FOLD = [f"{i:02d}" for i in range(1, 7)]
CONFIG = {"model": "mil-ctx", "backbone": "i3d", "segments": 16, "steps": 1000, "topk": 3,
          "batch_anomalous": 6, "batch_normal": 6, "seed": 0, "threads": 1}
"""Chosen by the nested cross-validation (candidate ``mil-ctx-1000``); the rest are defaults."""


def _sha(path: Path) -> str:
    from edgevad.fetch.hashing import sha256_file

    return sha256_file(path)


def _intervals(labels: list[int]) -> list[int]:
    """Inclusive (start, end) pairs of the anomalous runs, flattened; Ped2 has one per video."""
    lab = np.asarray(labels, dtype=np.int8)
    edges = np.diff(np.r_[0, lab, 0])
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1
    return [int(v) for pair in zip(starts, ends) for v in pair]


def split_bags(training: dict, testing: dict, out_train: Path, out_test: Path,
               labels: dict[str, list[int]] | None = None) -> tuple[Path, Path]:
    """Cut the split from the extraction of all 28 videos (arrays of two bag files) and write its
    two bag files, protocol kept: train = every training video + testing ``TRAIN_FOLD``; test =
    testing ``TEST_FOLD``, with annotated intervals when ``labels`` (frame labels) are given.
    Refuses bags of two protocols, missing videos and frame counts that disagree with labels."""
    if str(training["protocol"]) != str(testing["protocol"]):
        raise SystemExit("the training and testing bags were extracted with different protocols")
    keys = ("features", "n_segments", "name", "label", "category", "n_frames")

    def rows(arrays, names):
        idx = [i for i, n in enumerate(arrays["name"]) if str(n) in names]
        if len(idx) != len(names):
            raise SystemExit(f"missing videos among {names}")
        return {k: arrays[k][idx] for k in keys}

    train = {k: np.concatenate([training[k], rows(testing, TRAIN_FOLD)[k]]) for k in keys}
    np.savez(out_train, **train, protocol=training["protocol"])
    held = rows(testing, TEST_FOLD)
    if labels is not None:
        pairs = [_intervals(labels[str(n)]) for n in held["name"]]
        iv = np.full((len(pairs), max(map(len, pairs))), -1, dtype=np.int64)
        for i, (n, p) in enumerate(zip(held["name"], pairs)):
            iv[i, :len(p)] = p
            if len(labels[str(n)]) != int(held["n_frames"][i]):
                raise SystemExit(f"video {n}: {held['n_frames'][i]} frames decoded, "
                                 f"{len(labels[str(n)])} labelled")
        held["anomaly_intervals"] = iv
    np.savez(out_test, **held, protocol=testing["protocol"])
    return out_train, out_test


def load_arrays(path: Path) -> dict:
    with np.load(path) as d:
        return {k: d[k] for k in d.files}


def write_split(work: Path, labels: dict[str, list[int]]) -> tuple[Path, Path]:
    """The split's two bag files, from the extraction of all 28 videos (protocol kept)."""
    return split_bags(load_arrays(work / "ped2_training_i3d.npz"),
                      load_arrays(work / "ped2_testing_i3d.npz"),
                      work / "ped2_train_B.npz", work / "ped2_test_A.npz", labels)


def run(cmd: list[str]) -> str:
    print("$", " ".join(cmd), flush=True)
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    print(done.stdout[-2000:], flush=True)
    return done.stdout


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, required=True, help="Folder of ped2_end_to_end.py.")
    parser.add_argument("--data", type=Path, default=PED2)
    parser.add_argument("--out", type=Path, required=True, help="Checkpoint folder to write.")
    args = parser.parse_args(argv)
    labels = json.loads((args.data / "test_frame_labels.json").read_text())
    train_path, test_path = write_split(args.work, labels)
    config = args.work / "mil_ctx_config.json"
    config.write_text(json.dumps(CONFIG, indent=2) + "\n")
    edgevad = [sys.executable, "-m", "edgevad"]
    train_cmd = ["train", "-m", CONFIG["model"], "--features", str(train_path),
                 "--config", str(config), "-o", str(args.out), "--no-progress"]
    run(edgevad + train_cmd)
    report_dir = args.work / "mil_ctx_eval"
    eval_cmd = ["eval", "--checkpoint", str(args.out), "--features", str(test_path),
                "-o", str(report_dir), "--no-curves"]
    run(edgevad + eval_cmd)
    report = json.loads((report_dir / "report.json").read_text())

    videos = {f"training/{p.name}": _sha(p) for p in sorted((args.data / "training").glob("*.mp4"))}
    videos.update({f"testing/{n}.mp4": _sha(args.data / "testing" / f"{n}.mp4")
                   for n in TRAIN_FOLD + TEST_FOLD})
    provenance = {
        "dataset": "UCSD Ped2",
        "what": "MIL-with-context head (mil-ctx) over Kinetics-400 I3D features, trained with "
                "video-level labels on UCSD Ped2: anomalies are bikes, skateboards, carts and "
                "vehicles on a pedestrian walkway. Not a crime detector.",
        "reproduce": [
            "python benchmarks/ped2_end_to_end.py --work WORK   # I3D features of all 28 videos",
            "python benchmarks/ped2_mil_ctx.py --work WORK --out edgevad/checkpoints/mil-ctx",
            "# which runs: edgevad " + " ".join(train_cmd).replace(str(args.work), "WORK")
            .replace(str(args.out), "edgevad/checkpoints/mil-ctx"),
            "# and:        edgevad " + " ".join(eval_cmd).replace(str(args.work), "WORK")
            .replace(str(args.out), "edgevad/checkpoints/mil-ctx"),
        ],
        "config": CONFIG,
        "split": {"train_normal": "ped2/training/01-16",
                  "train_anomalous": [f"ped2/testing/{n}" for n in TRAIN_FOLD],
                  "evaluated": [f"ped2/testing/{n}" for n in TEST_FOLD]},
        "data_sha256": {"videos": videos,
                        "test_frame_labels.json": _sha(args.data / "test_frame_labels.json"),
                        "train_bags": _sha(train_path), "test_bags": _sha(test_path)},
        "feature_protocol": json.loads(str(np.load(train_path)["protocol"])),
        "evaluation": {"videos": TEST_FOLD, "frame_auc": report["frame_auc"],
                       "average_precision": report.get("average_precision"),
                       "frames": int(sum(len(labels[n]) for n in TEST_FOLD)),
                       "anomalous_frames": int(sum(sum(labels[n]) for n in TEST_FOLD))},
        "selection": "benchmarks/ped2_select_head.py (nested 2-fold cross-validation; see README)",
    }
    (args.out / "provenance.json").write_text(json.dumps(provenance, indent=2) + "\n")
    print(f"frame AUC on ped2/testing/01-06 (not trained on): {100 * report['frame_auc']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
