"""The issue's two OpenVINO speed targets, checked in one command on the machine it runs on.

    python benchmarks/backend_targets.py --work WORK

1. **The I3D model end to end** (``mil-ctx``, the default model when the issue was filed;
   ``edgevad bench --source`` the PETS clip, decode and
   pre-processing included): the best OpenVINO run that stays within the accuracy gate (the
   int8 export's Q/DQ graphs, OpenVINO's own NNCF graph where the export made one, at f32 or
   bf16 for the float ops; or the fp32 graphs at bf16) against ONNX Runtime fp32. Target
   **>= 2.5x**.
2. **R3D-18 int8**: OpenVINO against ONNX Runtime on the same int8 artifact. Target **>= 2x**.

Each target is one ``edgevad bench`` run (all its backends and artifacts in one process, on the
same frames), so the ratios are taken in one sitting; the JSON lands in ``WORK/targets/``. What
is missing is exported first into ``WORK`` (the I3D model's int8 export calibrated on the
clip, R3D-18 int8 with random weights, which time like trained ones; about 10 minutes on 2
cores), or pass your own with ``--default``, ``--default-int8``, ``--r3d18-int8``.

The issue's figures came from a CPU with avx512_vnni and avx512_bf16 (OpenVINO's VNNI int8 and
bf16 kernels); the script prints which of those this CPU has, so a FAIL on a CPU without them
reads as what it is. One bench's runs are consecutive, so a load that changes during them skews
the ratios: the script waits (up to 2 minutes) for the load the exports left to settle, and flags
a machine that was busy when timing began (the benches themselves then load every core).
It exits 0 when both targets pass, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CLIP = REPO.parent / "shared" / "data" / "clips" / "pets2009_vtest.mp4"
TARGETS = {"default": 2.5, "r3d18": 2.0}
CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8")


def cpu_flags() -> dict[str, bool]:
    """Which of :data:`CPU_FLAGS` this CPU has (Linux ``/proc/cpuinfo``; empty elsewhere)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {}
    flags = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            break
    return {f: f in flags for f in CPU_FLAGS}


def settled_load(limit_s: float = 120.0) -> float:
    """The 1-minute load average once it falls to half the cores (what exports or another job
    left behind), waiting at most ``limit_s``."""
    import time

    cores = os.cpu_count() or 1
    t0 = time.monotonic()
    while os.getloadavg()[0] > 0.5 * cores and time.monotonic() - t0 < limit_s:
        time.sleep(5)
    return os.getloadavg()[0]


def edgevad(args: list[str]) -> None:
    print("$ edgevad " + " ".join(shlex.quote(str(a)) for a in args), flush=True)
    subprocess.run([sys.executable, "-m", "edgevad", *map(str, args)], check=True)


def export_int8(out: Path, model_args: list[str], source: str) -> Path:
    if not (out / "manifest.json").is_file():
        edgevad(["export", *model_args, "--precision", "int8", "--calib", source,
                 "--sample-video", source, "--out", out])
    return out


def gate(folder: Path) -> dict:
    """The int8 export's accuracy-gate rows (parity.json): kind -> max per-clip score diff."""
    path = Path(folder) / "parity.json"
    if not path.is_file():
        return {}
    doc = json.loads(path.read_text()).get("reduced_precision") or {}
    return {k: v.get("max_abs") for k, v in (doc.get("score_diff") or {}).items()}


def runs_of(doc: dict) -> list[dict]:
    """One line per bench run: artifact, backend spec, precisions that ran, graphs, frames/s."""
    return [{"artifact": Path(r["artifact"]).name, "precision": r["precision"],
             "backend": r["backend_spec"], "ran": sorted(set(r["engine_precisions"].values())),
             "graphs": r.get("engine_graphs", {}), "fps": r["throughput"]["frames_per_s"]}
            for r in doc["runs"]]


def verdict(runs: list[dict], target: float) -> dict:
    """Ratio of the fastest OpenVINO run to the first run (ONNX Runtime on the first artifact).
    A bf16 run counts only where bf16 really ran: on a CPU without it OpenVINO runs f32, the
    same configuration as the plain run, and taking the faster of two copies would pick noise."""
    ref = runs[0]
    ov = [r for r in runs if r["backend"] == "openvino"
          or (r["backend"].startswith("openvino:") and "f32" not in r["ran"])]
    best = max(ov, key=lambda r: r["fps"])
    ratio = best["fps"] / ref["fps"]
    return {"ratio": ratio, "target": target, "passed": ratio >= target, "best": best,
            "base": ref, "all": [[f"{r['artifact']} ({r['precision']}) on {r['backend']}, "
                                  f"ran {'/'.join(r['ran'])}", r["fps"] / ref["fps"]]
                                 for r in runs]}


def bench(folders: list[Path], backends: str, source: str, iters: int, out: Path) -> list[dict]:
    compare = [a for f in folders[1:] for a in ("--compare", f)]
    edgevad(["bench", "--artifacts", folders[0], *compare, "--backend", backends, "--source",
             source, "--iters", iters, "--warmup", 1, "--no-reference", "--no-isolated",
             "--json", out])
    return runs_of(json.loads(out.read_text()))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--work", type=Path, default=Path("backend-targets"))
    p.add_argument("--source", default=str(CLIP) if CLIP.is_file() else None,
                   help="a real video (default: the PETS clip of ../shared; 'synthetic' "
                   "only to try the script)")
    p.add_argument("--iters", type=int, default=24, help="clips measured per run")
    p.add_argument("--default", type=Path, help="the I3D mil-ctx artifact (default: built "
                   "into edgevad's cache on first use)")
    p.add_argument("--default-int8", type=Path, help="its int8 export (default: WORK/default-int8)")
    p.add_argument("--r3d18-int8", type=Path, help="R3D-18 int8 (default: WORK/r3d18-int8)")
    a = p.parse_args(argv)
    if a.source is None:
        p.error("--source: no ../shared/data/clips/pets2009_vtest.mp4 here; give a real video")
    out = a.work / "targets"
    out.mkdir(parents=True, exist_ok=True)
    flags = cpu_flags()
    print("CPU flags: " + ", ".join(f"{f} {'yes' if v else 'no'}" for f, v in flags.items()),
          flush=True)
    if a.default is None:
        from edgevad.artifact.defaults import default_artifact

        a.default = default_artifact("mil-ctx", progress=True)
    a.default_int8 = a.default_int8 or export_int8(
        a.work / "default-int8", ["--model", "mil-ctx", "--checkpoint",
                                  REPO / "edgevad" / "checkpoints" / "mil-ctx"], a.source)
    a.r3d18_int8 = a.r3d18_int8 or export_int8(
        a.work / "r3d18-int8", ["--model", "mil", "--backbone", "r3d18", "--random-init"],
        a.source)
    load_start = settled_load()
    results = {
        "default": verdict(bench([a.default, a.default_int8], "onnxruntime,openvino,openvino:bf16",
                                 a.source, a.iters, out / "default.json"),
                           TARGETS["default"]),
        "r3d18": verdict(bench([a.r3d18_int8], "onnxruntime,openvino", a.source, a.iters,
                               out / "r3d18.json"), TARGETS["r3d18"]),
    }
    names = {"default": "I3D model (mil-ctx) end to end, OpenVINO x ONNX Runtime fp32",
             "r3d18": "R3D-18 int8, OpenVINO x ONNX Runtime int8"}
    print()
    for key, r in results.items():
        print(f"{names[key]}:")
        for label, ratio in r["all"]:
            print(f"    {label:64s} x{ratio:.2f}")
        best = r["best"]
        print(f"  {'PASS' if r['passed'] else 'FAIL'}: x{r['ratio']:.2f} (target >= "
              f"{r['target']}x; best: {best['precision']} artifact on {best['backend']}, ran "
              f"{'/'.join(best['ran'])}, graphs {best['graphs']})")
    load = [load_start, os.getloadavg()[0]]
    busy = load_start > 0.5 * (os.cpu_count() or 1)
    print(f"load average (1 min) when timing began: {load[0]:.2f} on {os.cpu_count()} cores "
          f"({load[1]:.2f} at the end, the benches' own threads included)"
          + ("; the machine was busy: the runs of one bench meet different loads, so these "
             "ratios are unreliable (run again on a quiet machine)" if busy else ""))
    g = gate(a.default_int8)
    if g:
        print("default int8 export's accuracy gate, max per-clip score diff vs fp32: "
              + ", ".join(f"{k} {v:.4f}" for k, v in g.items() if v is not None))
    if not all(flags.get(f) for f in ("avx512_vnni", "avx512_bf16")) and flags:
        print("note: this CPU lacks avx512_vnni/avx512_bf16, which the targets were measured "
              "with (OpenVINO's VNNI int8 and bf16 kernels)")
    (out / "verdict.json").write_text(json.dumps({"cpu_flags": flags, "load_average": load,
                                                  "busy": busy, **results}, indent=2,
                                                 default=str) + "\n")
    return 0 if all(r["passed"] for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
