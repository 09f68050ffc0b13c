"""Clip-level I3D features of all 28 UCSD Ped2 videos, kept per clip so pooling can be chosen later.

    nice -n 10 python benchmarks/ped2_clips.py --work WORK            # every job, resumable

``edgevad extract`` pools clips into segments as it goes; the weak-split study
(``benchmarks/ped2_weak_split.py``) compares recipes that differ in *how* clips are cut and pooled
(stride 8 vs 4, spatial mean vs max, a horizontally flipped view), so it needs the clips
themselves. This computes them once with the same pieces ``edgevad extract`` uses (the video
reader, :func:`edgevad.media.preprocess.preprocess_frame` with the registry I3D's geometry,
:func:`~edgevad_export.extraction.extract.clip_starts` and its padded tail clip, the converted
Kinetics-400 weights from :func:`~edgevad_export.models.factory.create_backbone`), and pools them
with extract's own :func:`~edgevad_export.extraction.extract.pool_segments`. Pooled at stride 8
into 16 segments they are ``edgevad extract --stride 8 --segments 16`` (checked by
``tests/test_ped2_weak_split.py`` on a real video).

Jobs, in this order (I3D on a shared 2-core CPU takes ~5 s a clip, so only the training videos
of the weak split get the augmented views; the test videos are scored as a live camera sees them):

1. ``orig`` view, stride-8 cut (``s8``), the 10 training videos of the weak split, then the 18
   test videos (everything the baseline needs);
2. ``flip`` view (every frame mirrored left-right, the cheapest of the peers' 10-crop views),
   stride-8 cut, the 10 training videos;
3. ``orig`` view, the clips a stride-4 cut adds to the stride-8 one (``o4``: starts 4, 12, 20...,
   a temporally shifted view), the 10 training videos.

Each job writes ``<work>/clips/<split>_<name>_<view>_<cut>.npz``: for each clip ``start``,
``real`` (unpadded frames), ``mean`` [K, 1024] (Mixed_5c averaged over time and space: exactly
``forward_features``), ``max`` [K, 1024] (time average of the spatial maximum), and the video's
``n_frames``, ``sha256`` and ``video`` (``<split>/<file>``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
PED2 = REPO.parent / "shared" / "data" / "ped2"
CLIP_LEN = 16
STRIDE = 8
VIEWS = ("orig", "flip")
CUTS = ("s8", "o4")
TRAIN_ANOMALOUS = ["02", "06", "09", "10", "11", "12"]
"""ped2/testing videos the weak split trains on (video labels only), as GCN-Anomaly / RTFM."""
TRAIN_NORMAL = ["07", "08", "14", "15"]
"""ped2/training videos the weak split trains on."""
TRAIN_VIDEOS = [("testing", n) for n in TRAIN_ANOMALOUS] + [("training", n) for n in TRAIN_NORMAL]


def cut_clips(n_frames: int, cut: str) -> list[tuple[int, int]]:
    """(start, real frames) of the clips of a cut: ``s8`` is ``clip_starts(n, 16, 8)``, what
    ``edgevad extract --stride 8`` runs; ``o4`` the clips ``clip_starts(n, 16, 4)`` adds to it."""
    from edgevad_export.extraction.extract import clip_starts

    s8 = clip_starts(n_frames, CLIP_LEN, STRIDE)
    if cut == "s8":
        return s8
    if cut == "o4":
        return sorted(set(clip_starts(n_frames, CLIP_LEN, STRIDE // 2)) - set(s8))
    raise ValueError(f"cut must be one of {CUTS}, got {cut!r}")


def jobs(data: Path) -> list[tuple[str, str, str, Path]]:
    """(view, cut, split, video) in the order they run (module doc)."""
    train = [data / split / f"{name}.mp4" for split, name in TRAIN_VIDEOS]
    test = [p for _, p in videos(data) if p not in train]
    out = [("orig", "s8", p.parent.name, p) for p in train + test]
    out += [("flip", "s8", p.parent.name, p) for p in train]
    out += [("orig", "o4", p.parent.name, p) for p in train]
    return out


def select_clips(arrays: dict, cut: str) -> np.ndarray:
    """Indices of the clips of ``cut`` in a clip file (which may hold more)."""
    wanted = set(cut_clips(int(arrays["n_frames"]), cut))
    pairs = list(zip(arrays["start"].tolist(), arrays["real"].tolist()))
    idx = [i for i, p in enumerate(pairs) if p in wanted]
    if len(idx) != len(wanted):
        raise ValueError(f"clip file lacks {len(wanted) - len(idx)} clips of the {cut} cut")
    return np.asarray(idx)


def clip_features(model, frames: np.ndarray, plan: list[tuple[int, int]], flip: bool,
                  batch: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Spatial-mean and spatial-max features [K, 1024] of the clips in ``plan``."""
    import torch

    n = len(frames)
    means, maxes = [], []
    for b in range(0, len(plan), batch):
        clips = []
        for start, _ in plan[b:b + batch]:
            idx = [min(j, n - 1) for j in range(start, start + CLIP_LEN)]  # tail: repeat last
            clips.append(np.stack([frames[j] for j in idx], axis=1))
        x = torch.from_numpy(np.ascontiguousarray(np.stack(clips)))
        if flip:
            x = x.flip(-1)
        with torch.inference_mode():
            for name in model.endpoints:
                x = getattr(model, name)(x)
            # forward_feature_map: spatial mean, 2-step time average; forward_features: time mean
            means.append(x.mean(dim=(2, 3, 4)).float().numpy())
            maxes.append(x.amax(dim=(3, 4)).mean(dim=2).float().numpy())
    return np.concatenate(means), np.concatenate(maxes)


def decode(path: Path) -> np.ndarray:
    from edgevad.artifact import zoo
    from edgevad.media.preprocess import preprocess_frame
    from edgevad.media.video import VideoReader

    geometry = zoo.get_backbone("i3d").geometry
    reader = VideoReader(path)
    try:
        return np.stack([preprocess_frame(f, geometry) for f in reader])
    finally:
        reader.close()


def clip_file(work: Path, split: str, name: str, view: str, cut: str) -> Path:
    return work / "clips" / f"{split}_{name}_{view}_{cut}.npz"


def videos(data: Path) -> list[tuple[str, Path]]:
    return [(split, p) for split in ("training", "testing")
            for p in sorted((data / split).glob("*.mp4"))]


def extract_clips(work: Path, data: Path, threads: int | None = None,
                  only: tuple[str, str] | None = None, reverse: bool = False) -> None:
    """Run every job whose clip file is missing (resumable: finished ones are skipped);
    ``only``: just the jobs of this (view, cut), e.g. a second worker for the flipped view;
    ``reverse``: last job first (a second worker meeting the first one half-way)."""
    import torch

    from edgevad.fetch.hashing import sha256_file
    from edgevad_export.models.factory import create_backbone

    if threads:
        torch.set_num_threads(threads)
    (work / "clips").mkdir(parents=True, exist_ok=True)
    model = None
    for view, cut, split, path in (jobs(data)[::-1] if reverse else jobs(data)):
        if only is not None and (view, cut) != tuple(only):
            continue
        out = clip_file(work, split, path.stem, view, cut)
        if out.is_file():
            continue
        model = model or create_backbone("i3d").eval()
        t0 = time.perf_counter()
        frames = decode(path)
        plan = cut_clips(len(frames), cut)
        mean, mx = clip_features(model, frames, plan, flip=view == "flip")
        tmp = out.with_suffix(".tmp.npz")
        np.savez(tmp, start=np.array([s for s, _ in plan]), real=np.array([r for _, r in plan]),
                 mean=mean, max=mx, n_frames=np.asarray(len(frames)),
                 sha256=np.asarray(sha256_file(path)), video=np.asarray(f"{split}/{path.name}"))
        tmp.replace(out)
        print(f"{view} {cut} {split}/{path.name}: {len(plan)} clips in "
              f"{time.perf_counter() - t0:.1f} s", flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=PED2)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--only", nargs=2, metavar=("VIEW", "CUT"), default=None,
                        help="Run only these jobs (e.g. 'flip s8' in a second worker).")
    parser.add_argument("--reverse", action="store_true", help="Last job first.")
    args = parser.parse_args(argv)
    if not (args.data / "test_frame_labels.json").is_file():
        print(f"Ped2 not found at {args.data}", file=sys.stderr)
        return 2
    extract_clips(args.work, args.data, args.threads, args.only, args.reverse)
    return 0


if __name__ == "__main__":
    sys.exit(main())
