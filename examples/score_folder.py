"""Offline scoring of a folder of videos: per-frame scores to one .npz per video, a summary CSV.

    python examples/score_folder.py --artifacts DIR videos/ --out scores/

``Detector.score_video`` gives exactly the scores streaming the same frames would.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

import edgevad
from edgevad.media.video import VIDEO_EXTENSIONS, VideoError


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--artifacts", required=True)
    ap.add_argument("folder", type=Path)
    ap.add_argument("--out", type=Path, default=Path("scores"))
    ap.add_argument("--limit", type=int, default=None, help="score at most this many videos")
    args = ap.parse_args()

    detector = edgevad.Detector.load(args.artifacts)
    args.out.mkdir(parents=True, exist_ok=True)
    videos = sorted(p for p in args.folder.iterdir() if p.suffix.lower() in VIDEO_EXTENSIONS)
    with open(args.out / "summary.csv", "w", newline="") as fh:
        table = csv.writer(fh)
        table.writerow(["video", "frames", "max_score", "events"])
        for path in videos[:args.limit]:
            try:
                scored = detector.score_video(path)
            except VideoError as exc:  # a corrupt file is reported, the rest still scored
                print(f"skipped: {exc}")
                continue
            np.savez(args.out / f"{path.stem}.npz", scores=scored.scores)
            table.writerow([path.name, len(scored.scores), f"{scored.scores.max():.4f}",
                            len(scored.events)])
            print(f"{path.name}: {len(scored.scores)} frames, max {scored.scores.max():.3f}, "
                  f"{len(scored.events)} event(s)")


if __name__ == "__main__":
    main()
