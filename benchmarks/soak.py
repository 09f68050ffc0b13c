"""Soak test of the live path: many streams for a long time, with churn; does anything drift?

    python benchmarks/soak.py --minutes 240                       # the default model, 8 streams
    python benchmarks/soak.py --model mil-ctx --minutes 240       # the built-in I3D model
    python benchmarks/soak.py --artifacts ART --minutes 5 --streams 16 --json soak.json
    python benchmarks/soak.py --plumbing --minutes 5              # runtime machinery only, fast

A camera app runs for weeks, so slow leaks and creeping latency matter more than peak speed.
This pushes frames through one :class:`edgevad.Detector` the way such an app does and reports,
every ``--every`` seconds, the process's resident memory (RSS, from /proc), the per-call latency
of :meth:`Detector.process` (median and 95th percentile over the window), the live streams and
the frames scored, then the drift: RSS and latency of the last window against the first one
after warm-up.

Streams: half show the real PETS 2009 clip (``../shared/data/clips/pets2009_vtest.mp4``,
``--clip``), decoded once and looped, each stream starting at another offset; the other half
synthetic frames (a drifting gradient with noise, ``--size``). Churn, as cameras come and go:
every ``--churn`` seconds one stream is flushed and removed and a new one (new id) takes its
place, and one more stream is simply abandoned so that ``idle_timeout_s`` evicts it (its final
results collected through :meth:`Detector.evicted`). Events are drained as an app would.

Latency and memory are measured on the machine the script runs on; compare figures of one run
only (first window vs last), never against another machine.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"


def rss_mb() -> float:
    """Resident set size of this process in MiB (Linux /proc; 0 elsewhere)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def clip_frames(path: Path, limit: int) -> list[np.ndarray]:
    from edgevad.media.video import VideoReader

    frames = []
    reader = VideoReader(path, strict=False)
    for frame in reader:
        frames.append(frame)
        if len(frames) >= limit:
            break
    reader.close()
    return frames


def synthetic(size: tuple[int, int], n: int = 128) -> list[np.ndarray]:
    """``n`` frames of a colour gradient drifting 3 levels a frame, plus noise; made once and
    looped (as the clip is), so the soak times the Detector, not the frame generator."""
    h, w = size
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255 // w, yy * 255 // h, (xx + yy) % 256], -1).astype(np.int16)
    return [((base + 3 * i + rng.integers(0, 16, base.shape, dtype=np.int16)) % 256)
            .astype(np.uint8) for i in range(n)]


def looped(frames: list[np.ndarray], offset: int):
    for i in itertools.count(offset):
        yield frames[i % len(frames)]


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--artifacts", type=Path, help="artifact folder (default: the default model)")
    ap.add_argument("--model", help="a built-in model instead, e.g. mil-ctx (the I3D head)")
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--streams", type=int, default=8)
    ap.add_argument("--fps", type=float, default=25.0, help="frame rate of the timestamps")
    ap.add_argument("--clip", type=Path, default=DATA / "clips" / "pets2009_vtest.mp4")
    ap.add_argument("--clip-frames", type=int, default=300, help="frames of the clip to loop")
    ap.add_argument("--size", default="240x320", help="synthetic frames, HxW")
    ap.add_argument("--churn", type=float, default=20.0, help="seconds between stream changes")
    ap.add_argument("--idle", type=float, default=5.0, help="idle_timeout_s of the Detector")
    ap.add_argument("--every", type=float, default=30.0, help="seconds per report window")
    ap.add_argument("--warmup", type=float, default=30.0, help="seconds before the baseline")
    ap.add_argument("--threads", type=int, default=None, help="ONNX Runtime intra-op threads")
    ap.add_argument("--json", type=Path, help="write the windows and the drift here")
    ap.add_argument("--plumbing", action="store_true", help="soak the runtime machinery at "
                    "thousands of frames/s: the tests' hand-built ONNX artifact (tests/"
                    "tiny_artifacts.py, 16-frame clips of 8x8 pixels; needs onnx) instead of a "
                    "real model")
    args = ap.parse_args(argv)

    from edgevad import Detector, __version__

    if args.plumbing:
        import tempfile

        sys.path.insert(0, str(REPO / "tests"))
        from tiny_artifacts import build_tiny_artifact

        args.artifacts = build_tiny_artifact(Path(tempfile.mkdtemp()) / "plumbing", "mil",
                                             clip_len=16, stride=16)
    elif args.artifacts is None:
        from edgevad.artifact.defaults import default_artifact

        args.artifacts = default_artifact(args.model, progress=True)
    det = Detector.load(args.artifacts, threads=args.threads, idle_timeout_s=args.idle)
    size = tuple(int(x) for x in args.size.lower().split("x"))
    real = clip_frames(args.clip, args.clip_frames) if args.clip.is_file() else []
    synth = synthetic(size)
    if not real:
        print(f"no clip at {args.clip}: synthetic streams only", file=sys.stderr)

    serial = itertools.count()

    def new_stream() -> tuple[str, object]:
        k = next(serial)
        if real and k % 2 == 0:
            return f"clip-{k}", looped(real, 37 * k)
        return f"synth-{k}", looped(synth, 11 * k)

    streams = dict(new_stream() for _ in range(args.streams))
    index = dict.fromkeys(streams, 0)
    windows: list[dict] = []
    lat: list[float] = []
    scored = evicted = events = churned = frames_in = 0
    t0 = time.monotonic()
    next_report = t0 + args.warmup
    next_churn = t0 + args.churn
    end = t0 + 60 * args.minutes
    print(f"soak: {args.artifacts.name}, {args.streams} streams ({len(real)} clip frames looped, "
          f"synthetic {size[0]}x{size[1]}), {args.minutes:g} min, RSS {rss_mb():.0f} MiB")
    while time.monotonic() < end:
        batch = {sid: next(it) for sid, it in streams.items()}
        stamps = {sid: index[sid] / args.fps for sid in streams}
        t = time.perf_counter()
        out = det.process(batch, stamps)
        lat.append(time.perf_counter() - t)
        frames_in += len(batch)
        for sid in streams:
            index[sid] += 1
        scored += sum(len(v) for k, v in out.items() if k in batch)
        evicted += sum(len(v) for k, v in out.items() if k not in batch)  # idle ones
        evicted += sum(len(v) for v in det.evicted().values())  # (push() would put them here)
        events += sum(1 for _ in det.events())
        now = time.monotonic()
        if now >= next_churn:  # one camera leaves cleanly, one goes silent, two new ones come
            next_churn = now + args.churn
            gone = next(iter(streams))
            if gone in det.streams:
                scored += len(det.flush(gone))
                det.remove(gone)
            silent = next(iter(k for k in streams if k != gone), None)
            for sid in (gone, silent):
                if sid is not None:
                    streams.pop(sid)
                    index.pop(sid)
            while len(streams) < args.streams:
                sid, it = new_stream()
                streams[sid], index[sid] = it, 0
            churned += 1
        if now >= next_report:
            next_report = now + args.every
            a = np.asarray(lat) * 1e3
            w = {"t_s": round(now - t0, 1), "rss_mib": round(rss_mb(), 1),
                 "p50_ms": round(float(np.median(a)), 2),
                 "p95_ms": round(float(np.percentile(a, 95)), 2), "calls": len(a),
                 "frames_in": frames_in, "scored": scored, "evicted": evicted,
                 "events": events, "live_streams": len(det.streams), "churned": churned}
            windows.append(w)
            lat = []
            print("  ".join(f"{k} {v}" for k, v in w.items()), flush=True)
    total = time.monotonic() - t0
    result = {"edgevad": __version__, "artifacts": str(args.artifacts),
              "model": det.manifest.model.get("name"), "backend": det.backend,
              "machine": f"{platform.machine()}, {os.cpu_count()} CPUs", "args": {
                  k: str(v) for k, v in vars(args).items()},
              "seconds": round(total, 1), "frames_in": frames_in, "windows": windows}
    if len(windows) >= 2:
        first, last = windows[0], windows[-1]
        result["drift"] = {
            "rss_mib": round(last["rss_mib"] - first["rss_mib"], 1),
            "rss_ratio": round(last["rss_mib"] / first["rss_mib"], 3),
            "p50_ratio": round(last["p50_ms"] / first["p50_ms"], 3),
            "p95_ratio": round(last["p95_ms"] / first["p95_ms"], 3),
            "video_hours": round(frames_in / args.fps / 3600, 2),
        }
        d = result["drift"]
        print(f"drift (last window vs first after warm-up): RSS {d['rss_mib']:+.1f} MiB "
              f"(x{d['rss_ratio']}), latency p50 x{d['p50_ratio']}, p95 x{d['p95_ratio']}; "
              f"{frames_in} frames = {d['video_hours']} h of video at {args.fps:g} frames/s")
    scored += len(det.flush())  # every frame pushed comes back exactly once
    result["accounted"] = {"frames_in": frames_in, "results": scored + evicted,
                           "evicted_results": evicted, "ok": frames_in == scored + evicted}
    print(f"{frames_in} frames in, {scored + evicted} results out ({evicted} from evicted "
          f"streams): {'every frame scored once' if result['accounted']['ok'] else 'MISMATCH'}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
