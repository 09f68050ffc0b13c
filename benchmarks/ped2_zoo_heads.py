"""Train the shipped checkpoints of the zoo's I3D heads (mil, mrm, dmrm, dam-*) on UCSD Ped2.

    python benchmarks/ped2_end_to_end.py --work edgevad-work/ped2      # I3D appearance features (once)
    python benchmarks/ped2_zoo_heads.py --work edgevad-work/ped2 --out edgevad/checkpoints

These are what ``edgevad export --model NAME`` exports when no ``--checkpoint`` is given (the
I3D head ``mil-ctx`` is ``edgevad/checkpoints/mil-ctx``). Same split and settings as that head
(``benchmarks/ped2_mil_ctx.py``; its ``CONFIG`` with the head swapped): train on the
16 normal training videos + test videos 07-12 (video labels), evaluate frame AUC on 01-06, never
trained on. ``dmrm`` also needs the motion stream: DIS optical flow through ``motion-i3d`` (the
Kinetics I3D with a cross-modal flow stem), extracted here with the same clips (resumable).
``dam-dist`` / ``dam-cov`` train on what they run on: I3D feature maps (t = 7 x 1024) of 64-frame
clips, every 32 frames, 8 segments a video (``extract --feature-map``), with a 64-unit LSTM (the
paper's 1024 would make a 67 MB checkpoint) for 300 steps.

Each ``<out>/<head>/`` is an ``edgevad train`` checkpoint folder plus ``provenance.json`` (the
commands, data hashes, the measured AUC).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ped2_end_to_end import PED2, extract  # noqa: E402
from ped2_mil_ctx import (  # noqa: E402
    CONFIG,
    TEST_FOLD,
    TRAIN_FOLD,
    _sha,
    load_arrays,
    run,
    split_bags,
    write_split,
)

HEADS = ("mil", "mrm", "dmrm", "dam-dist", "dam-cov", "mil-dis")
MIL_DIS = {"self_training": True, "val_share": 0.2, "head_kwargs": {"hidden": 128}}
"""``mil-dis`` as in ``benchmarks/ucf_crime_table.py`` (held-out stopping, self-training)."""
DAM = {"segments": 8, "steps": 300, "head_kwargs": {"hidden": 64}}


def _load(paths: dict[str, Path]) -> dict[str, dict]:
    return {split: load_arrays(path) for split, path in paths.items()}


def map_split(work: Path, data: Path, labels: dict) -> tuple[Path, Path]:
    """Bags of 64-frame clips' I3D feature maps for the split (extracted once, resumable)."""
    paths = extract(work, data, "i3d", tag="i3d-map64", segments=DAM["segments"], clip_len=64,
                    stride=32, feature_map=True, batch_size=2)
    return _split(work, _load(paths), "map64", labels)


def _split(work: Path, whole: dict, tag: str, labels: dict | None = None) -> tuple[Path, Path]:
    return split_bags(whole["training"], whole["testing"], work / f"ped2_train_B_{tag}.npz",
                      work / f"ped2_test_A_{tag}.npz", labels)


def motion_split(work: Path, data: Path) -> tuple[Path, Path]:
    """Motion-stream bags of the same split, in the same video order as the appearance bags."""
    return _split(work, _load(extract(work, data, "motion-i3d")), "motion")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=PED2)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--heads", nargs="+", default=list(HEADS), choices=HEADS)
    args = parser.parse_args(argv)
    labels = json.loads((args.data / "test_frame_labels.json").read_text())
    train_path, test_path = write_split(args.work, labels)
    motion = motion_split(args.work, args.data) if "dmrm" in args.heads else None
    maps = map_split(args.work, args.data, labels) if any(h.startswith("dam") for h in
                                                          args.heads) else None
    edgevad = [sys.executable, "-m", "edgevad"]
    results = {}
    for head in args.heads:
        extra = DAM if head.startswith("dam") else MIL_DIS if head == "mil-dis" else {}
        config = {**CONFIG, "model": head, **extra}
        cfg_path = args.work / f"{head}_config.json"
        cfg_path.write_text(json.dumps(config, indent=2) + "\n")
        out = args.out / head
        train_bags, test_bags = maps if head.startswith("dam") else (train_path, test_path)
        train_cmd = ["train", "-m", head, "--features", str(train_bags), "--config",
                     str(cfg_path), "-o", str(out), "--no-progress"]
        eval_cmd = ["eval", "--checkpoint", str(out), "--features", str(test_bags), "-o",
                    str(args.work / f"{head}_eval"), "--no-curves"]
        if head == "dmrm":
            train_cmd += ["--motion-features", str(motion[0])]
            eval_cmd += ["--motion-features", str(motion[1])]
        run(edgevad + train_cmd)
        run(edgevad + eval_cmd)
        report = json.loads((args.work / f"{head}_eval" / "report.json").read_text())
        data = {"train_bags": _sha(train_bags), "test_bags": _sha(test_bags),
                "test_frame_labels.json": _sha(args.data / "test_frame_labels.json")}
        if head == "dmrm":
            data.update(train_motion_bags=_sha(motion[0]), test_motion_bags=_sha(motion[1]))
        short = lambda cmd: " ".join(cmd).replace(str(args.work), "WORK").replace(  # noqa: E731
            str(args.out), "edgevad/checkpoints")
        provenance = {
            "dataset": "UCSD Ped2",
            "what": f"{head} head over Kinetics-400 I3D "
                    + ("feature maps of 64-frame clips" if head.startswith("dam") else "features")
                    + (" + motion-i3d flow features" if head == "dmrm" else "")
                    + ", trained with video-level labels on UCSD Ped2 (bikes, skateboards, carts "
                      "and vehicles on a pedestrian walkway). Not a crime detector.",
            "reproduce": ["python benchmarks/ped2_end_to_end.py --work WORK",
                          f"python benchmarks/ped2_zoo_heads.py --work WORK --out "
                          f"edgevad/checkpoints --heads {head}",
                          "# which runs: edgevad " + short(train_cmd),
                          "# and:        edgevad " + short(eval_cmd)],
            "config": config,
            "split": {"train_normal": "ped2/training/01-16",
                      "train_anomalous": [f"ped2/testing/{n}" for n in TRAIN_FOLD],
                      "evaluated": [f"ped2/testing/{n}" for n in TEST_FOLD]},
            "data_sha256": data,
            "evaluation": {"videos": TEST_FOLD, "frame_auc": report["frame_auc"],
                           "average_precision": report.get("average_precision")},
        }
        (out / "provenance.json").write_text(json.dumps(provenance, indent=2) + "\n")
        results[head] = report["frame_auc"]
        print(f"{head}: frame AUC on ped2/testing/01-06 (not trained on) "
              f"{100 * report['frame_auc']:.2f}", flush=True)
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
