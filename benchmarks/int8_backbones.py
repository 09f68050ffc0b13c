"""INT8 vs fp32 backbones on ONNX Runtime (CPU): speed for one stream and the change in features.

    python benchmarks/int8_backbones.py --work edgevad-work/int8       # I3D and R3D-18
    python benchmarks/int8_backbones.py --backbones r3d18 --with-first-conv --json out.json

For each backbone: export the fp32 graph (clip -> features), build a calibration set from the
PETS 2009 clip (``--calib``; clips spread over the video, the runtime's preprocessing), quantize
with ONNX Runtime's static U8S8 QDQ (per-channel weights, ``quant_pre_process`` first, the first
conv kept fp32), and measure on held-out real clips (UCSD Ped2 test videos, ``--eval``):

- speed: batch 1, ``--threads`` intra-op threads, median of ``--repeats`` runs after a warm-up;
  frames/s = clip length / median latency, i.e. one stream at non-overlapping clips;
- difference: per clip, the cosine similarity and relative L2 error of the int8 features against
  fp32's, and the max abs difference (mean over clips and the worst clip).

``--with-first-conv`` also times a graph whose first conv is quantized too (why it is excluded).
I3D uses the real Kinetics-400 weights (``edgevad weights fetch i3d-kinetics400``); R3D-18 uses
``--r3d18-weights`` if given, else random weights (the speed is the same; the difference then
describes a random network and says so).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"


def export_fp32(name: str, path: Path, weights: str | None) -> str:
    import torch

    from edgevad.artifact import zoo
    from edgevad_export.models.factory import create_backbone
    from edgevad_export.onnx_export import BackboneAdapter, torch_to_onnx

    spec = zoo.get_backbone(name)
    random = name != "i3d" and weights is None
    model = create_backbone(name, weights, random_init=random)
    g = spec.geometry
    shape = (g.channels, g.clip_len, *g.size)
    if not path.is_file():
        torch_to_onnx(BackboneAdapter(model), (torch.randn(2, *shape),), path, ["clip"],
                      ["features"])
    return "random weights" if random else (weights or spec.weights[0])


def session(path: Path, threads: int):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def latency(sess, clip: np.ndarray, repeats: int) -> float:
    sess.run(None, {"clip": clip})
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        sess.run(None, {"clip": clip})
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def compare(ref: np.ndarray, got: np.ndarray) -> dict:
    cos = np.sum(ref * got, 1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(got, axis=1))
    rel = np.linalg.norm(got - ref, axis=1) / np.linalg.norm(ref, axis=1)
    return {"cosine_mean": float(cos.mean()), "cosine_min": float(cos.min()),
            "rel_l2_mean": float(rel.mean()), "rel_l2_max": float(rel.max()),
            "max_abs": float(np.abs(got - ref).max()), "clips": int(len(ref))}


def run_backbone(name: str, args, work: Path) -> list[dict]:
    from edgevad.artifact import zoo
    from edgevad_calibration import build_from_videos
    from edgevad_calibration.quantize import Int8Config, quantize_ort_int8

    g = zoo.get_backbone(name).geometry
    fp32 = work / f"{name}.onnx"
    weights = export_fp32(name, fp32, args.r3d18_weights if name == "r3d18" else None)
    t = time.perf_counter()
    calib = build_from_videos([args.calib], g, samples=args.calib_clips)
    held = build_from_videos(args.eval, g, samples=args.eval_clips)
    print(f"[{name}] calibration {calib.n_samples} clips from {Path(args.calib).name}, "
          f"{held.n_samples} held-out clips from {len(held.sources)} video(s) "
          f"({time.perf_counter() - t:.1f} s)", flush=True)
    graphs = {"fp32": fp32}
    quant_s = {}
    configs = [("int8", Int8Config(method=args.method))]
    if args.with_first_conv:
        configs.append(("int8 (first conv int8 too)",
                        Int8Config(method=args.method, exclude_first_conv=False)))
    cache = work / f"{name}.{args.method}.ranges.json"
    for label, config in configs:
        path = work / f"{name}.{label.split()[0]}{'' if config.exclude_first_conv else '-all'}.onnx"
        t = time.perf_counter()
        quantize_ort_int8(fp32, path, calib.reader(), config, cache=cache)
        quant_s[label] = time.perf_counter() - t
        graphs[label] = path
    clip = held.sample(0)["clip"]
    ref = None
    rows = []
    for label, path in graphs.items():
        sess = session(path, args.threads)
        feats = np.concatenate([sess.run(None, held.sample(i))[0] for i in range(held.n_samples)])
        lat = latency(sess, clip, args.repeats)
        row = {"backbone": name, "graph": label, "input": f"{g.clip_len}x{g.size[0]}x{g.size[1]}",
               "weights": weights, "latency_ms": lat * 1e3, "frames_per_s": g.clip_len / lat,
               "mb": path.stat().st_size / 1e6, "quantize_s": quant_s.get(label)}
        if ref is None:
            ref = feats
        else:
            row.update(compare(ref, feats))
        rows.append(row)
        print(f"[{name}] {label}: {row['frames_per_s']:.1f} frames/s", flush=True)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--backbones", nargs="+", default=["i3d", "r3d18"])
    ap.add_argument("--work", type=Path, default=Path("edgevad-work/int8"))
    ap.add_argument("--calib", default=str(DATA / "clips" / "pets2009_vtest.mp4"))
    ap.add_argument("--eval", nargs="+", default=[str(DATA / "ped2" / "testing")])
    ap.add_argument("--calib-clips", type=int, default=16)
    ap.add_argument("--eval-clips", type=int, default=12)
    ap.add_argument("--method", default="minmax", choices=["minmax", "entropy", "percentile"])
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--with-first-conv", action="store_true")
    ap.add_argument("--r3d18-weights", default=None)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    if not Path(args.calib).is_file():
        print(f"calibration video {args.calib} not found (../shared/data)", file=sys.stderr)
        return 2
    args.work.mkdir(parents=True, exist_ok=True)
    import onnxruntime as ort

    rows = []
    for name in args.backbones:
        rows += run_backbone(name, args, args.work)
    print(f"\nONNX Runtime {ort.__version__} CPU, batch 1, {args.threads} thread(s), "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores; calibration "
          f"{args.method} on {Path(args.calib).name}; difference on held-out clips of "
          f"{', '.join(Path(e).name for e in args.eval)}\n")
    head = (f"{'backbone':8} {'graph':28} {'input':11} {'ms/clip':>8} {'frames/s':>9} {'MB':>6} "
            f"{'cos mean':>9} {'cos min':>8} {'rel L2':>7} {'rel max':>8}")
    print(head)
    print("-" * len(head))
    for r in rows:
        diff = ("" if "cosine_mean" not in r else
                f"{r['cosine_mean']:9.5f} {r['cosine_min']:8.5f} {r['rel_l2_mean']:7.4f} "
                f"{r['rel_l2_max']:8.4f}")
        print(f"{r['backbone']:8} {r['graph']:28} {r['input']:11} {r['latency_ms']:8.1f} "
              f"{r['frames_per_s']:9.1f} {r['mb']:6.1f} {diff}")
    print("\nweights: " + "; ".join(sorted({f"{r['backbone']}: {r['weights']}" for r in rows})))
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "args": {k: str(v) for k, v in
                                                                vars(args).items()}}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
