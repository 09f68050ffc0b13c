"""Per-frame optical-flow magnitude maps of all 28 UCSD Ped2 videos, for motion cues on the weak split.

    nice -n 10 python benchmarks/ped2_flow.py --work WORK

Ped2's anomalies (bicycles, skateboards, carts, a car) move faster than the walkers around them,
a cue Kinetics-400 I3D's appearance features only carry indirectly. edgevad already computes DIS
optical flow on the camera for ``dmrm``'s motion stream (:class:`edgevad.media.motion.FlowEstimator`);
this runs the same estimator over every frame and keeps the magnitude map (float16), so that
``benchmarks/ped2_weak_split.py`` can derive per-segment motion statistics from it without
decoding again.

``<work>/flow/<split>_<name>_<size>.npz``: ``mag`` [n_frames, h, w] float16 (working-size pixels
per frame; frame 0 has zero flow, as the live estimator's first frame), ``sha256`` and ``video``.
Sizes: ``112`` is the runtime's own default (112x112, ULTRAFAST, finest scale 1, what dmrm runs
live); ``120x180`` keeps Ped2's 2:3 aspect at half its native resolution; ``240x360`` is the
native resolution.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ped2_clips import PED2, videos  # noqa: E402

SIZES = {"112": (112, 112), "120x180": (120, 180), "240x360": (240, 360)}


def flow_file(work: Path, split: str, name: str, size: str) -> Path:
    return work / "flow" / f"{split}_{name}_{size}.npz"


def magnitude_maps(path: Path, size: tuple[int, int]) -> np.ndarray:
    """[n_frames, h, w] float16 flow magnitude, the live estimator run over the whole video."""
    from edgevad.media.motion import FlowEstimator, flow_magnitude
    from edgevad.media.video import VideoReader

    est = FlowEstimator(size=size)
    with VideoReader(path) as reader:
        return np.stack([flow_magnitude(est(f)).astype(np.float16) for f in reader])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=PED2)
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    args = parser.parse_args(argv)
    if not (args.data / "test_frame_labels.json").is_file():
        print(f"Ped2 not found at {args.data}", file=sys.stderr)
        return 2
    from edgevad.fetch.hashing import sha256_file

    (args.work / "flow").mkdir(parents=True, exist_ok=True)
    for size in args.sizes:
        for split, path in videos(args.data):
            out = flow_file(args.work, split, path.stem, size)
            if out.is_file():
                continue
            t0 = time.perf_counter()
            mag = magnitude_maps(path, SIZES[size])
            tmp = out.with_suffix(".tmp.npz")
            np.savez(tmp, mag=mag, sha256=np.asarray(sha256_file(path)),
                     video=np.asarray(f"{split}/{path.name}"))
            tmp.replace(out)
            print(f"{size} {split}/{path.name}: {len(mag)} frames in "
                  f"{time.perf_counter() - t0:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
