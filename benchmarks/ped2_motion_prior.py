"""``motion-prior`` measured live on UCSD Ped2's weak split, as a user would run it.

    nice -n 10 python benchmarks/ped2_motion_prior.py --work WORK [--ship]

The recipe chosen by ``benchmarks/ped2_weak_split.py`` (``docs/ped2_weak_split.md``) run through
the product instead of the study's cached arrays: ``edgevad fit-prior`` on the split's 4 normal
training videos (ped2/training 07, 08, 14, 15), ``edgevad export --model motion-prior``, then
``edgevad eval --artifacts`` (``evaluate_videos``: ``Detector.score_video``, what ``edgevad run``
does: every frame through the stream's own flow estimator, each clip scored as it completes,
every frame carrying its clip's score) on the split's 18 test videos, frame AUC pooled over their
frames as in the study's table. The prior
has no seed (a mean and a standard deviation of the normal clips), so one run is the 3-seed mean.

Alarms at the threshold ``edgevad fit-prior`` chose on the normal training videos alone
(leave-one-video-out): the share of anomalous and of normal test frames at or above it, the test
videos that raise an event (``edgevad run``'s events: 8 frames or more), and for the anomalous
ones whether an event overlaps the labelled anomaly. The test videos only measure; nothing is
chosen on them.

``--ship`` writes the fitted checkpoint to ``edgevad/checkpoints/motion-prior`` with its
``provenance.json`` (the measured figures, the normal videos' SHA-256), which is what
``edgevad export --model motion-prior`` uses when no checkpoint is given.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ped2_clips import PED2, TRAIN_NORMAL  # noqa: E402
from ped2_weak_split import TEST_VIDEOS, video_key  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "edgevad" / "checkpoints" / "motion-prior"


def edgevad(*args: str) -> None:
    cmd = [sys.executable, "-m", "edgevad", *args]
    print("$ edgevad " + " ".join(args), flush=True)
    subprocess.run(cmd, check=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=PED2)
    parser.add_argument("--backend", default="onnxruntime")
    parser.add_argument("--ship", action="store_true",
                        help=f"write the checkpoint and its provenance to {SHIPPED}")
    args = parser.parse_args(argv)
    labels_file = args.data / "test_frame_labels.json"
    if not labels_file.is_file():
        print(f"Ped2 not found at {args.data}", file=sys.stderr)
        return 2
    ckpt, art = args.work / "motion-prior-ckpt", args.work / "motion-prior"
    normal = [str(args.data / "training" / f"{n}.mp4") for n in TRAIN_NORMAL]
    t0 = time.perf_counter()
    edgevad("fit-prior", *normal, "--out", str(ckpt))
    fit_s = time.perf_counter() - t0
    edgevad("export", "--model", "motion-prior", "--checkpoint", str(ckpt), "--out", str(art),
            "--overwrite")

    from edgevad_export.evaluation.videos import evaluate_videos

    anomalous = [args.data / s / f"{n}.mp4" for s, n in TEST_VIDEOS if s == "testing"]
    normal = [args.data / s / f"{n}.mp4" for s, n in TEST_VIDEOS if s == "training"]
    t = time.perf_counter()  # what `edgevad eval --artifacts` runs (docs/training.md)
    rep = evaluate_videos(art, anomalous, frame_labels=labels_file, normal=normal,
                          backend=args.backend)
    seconds = time.perf_counter() - t
    inside = evaluate_videos(art, anomalous, frame_labels=labels_file, backend=args.backend)
    if rep["not_scored"]:
        raise SystemExit(f"not scored: {rep['not_scored']}")
    auc, auc_in, alarms = rep["frame_auc"], inside["frame_auc"], rep["alarms"]
    normal_means = {"training/" + Path(r["video"]).stem: r["mean_score"] for r in rep["videos"]
                    if not r["anomalous_frames"]}
    frames = sum(r["frames"] for r in rep["videos"])
    print(f"motion-prior, live (edgevad eval --artifacts: Detector.score_video, {rep['backend']})"
          f" on the 18 test videos: frame AUC {100 * auc:.1f} (within the 6 anomalous videos "
          f"{100 * auc_in:.1f}); {frames} frames in {seconds:.1f} s ({1000 * seconds / frames:.1f}"
          f" ms a frame, decode + flow at 240x360 + statistics + motion boxes + head; fit on 4 "
          f"videos {fit_s:.0f} s)")
    print("mean score of the normal test videos: " + ", ".join(
        f"{k} {v}" for k, v in sorted(normal_means.items(), key=lambda kv: -kv[1])))
    a = alarms
    print(f"alarms at the fitted threshold {a['threshold']:.3f} (leave-one-video-out on the 4 "
          f"normal training videos): anomalous frames {100 * a['anomalous_frames_alarmed']:.1f} "
          f"%, normal frames {100 * a['normal_frames_alarmed']:.1f} %; events on the anomaly in "
          f"{a['anomalous_videos_with_event_on_anomaly']}/{a['anomalous_videos']} anomalous "
          f"videos, events in {a['normal_videos_with_event']}/{a['normal_videos']} all-normal "
          "videos")
    if args.ship:
        if SHIPPED.exists():
            shutil.rmtree(SHIPPED)
        shutil.copytree(ckpt, SHIPPED)
        meta = json.loads((ckpt / "checkpoint.json").read_text())
        prov = {
            "dataset": "UCSD Ped2",
            "what": "motion-prior (BN-WVAD's normality prior on 7 DIS optical-flow magnitude "
                    "statistics per 16-frame clip at 240x360), fitted on the normal training "
                    "videos of Ped2's weak split (a fixed camera over a pedestrian walkway: "
                    "bikes, skateboards, carts and vehicles are its anomalies). The statistics "
                    "are this camera's: refit on your scene's normal footage (edgevad fit-prior).",
            "reproduce": ["python benchmarks/ped2_motion_prior.py --work WORK --ship",
                          "# which runs: edgevad fit-prior ../shared/data/ped2/training/{07,08,"
                          "14,15}.mp4 --out WORK/motion-prior-ckpt",
                          "# and: edgevad export --model motion-prior --checkpoint "
                          "WORK/motion-prior-ckpt --out WORK/motion-prior, then edgevad eval "
                          "--artifacts WORK/motion-prior on the 18 test videos (testing "
                          "01,03,04,05,07,08 with --frame-labels test_frame_labels.json, the "
                          "12 other training videos with --normal)"],
            "split": {"fitted_on": [f"ped2/training/{n}" for n in TRAIN_NORMAL],
                      "evaluated": [video_key(*v) for v in TEST_VIDEOS]},
            "normal_videos": meta["normal_videos"],
            "data_sha256": {"test_frame_labels.json": _sha(labels_file)},
            "evaluation": {"protocol": "live: edgevad eval --artifacts (Detector.score_video, "
                                       "what edgevad run computes), each frame scored by its "
                                       "clip as it completes, frame AUC pooled over the 18 "
                                       "test videos of the weak split",
                           "backend": args.backend, "frame_auc": auc,
                           "frame_auc_anomalous_videos": auc_in,
                           "normal_video_mean_scores": normal_means,
                           "alarms_at_fitted_threshold": alarms,
                           "seeds": "none: the prior has no randomness (one run = the 3-seed "
                                    "mean)"},
        }
        (SHIPPED / "provenance.json").write_text(json.dumps(prov, indent=2) + "\n")
        print(f"shipped {SHIPPED}")
    return 0


def _sha(path: Path) -> str:
    from edgevad.fetch.hashing import sha256_file

    return sha256_file(path)


if __name__ == "__main__":
    sys.exit(main())
