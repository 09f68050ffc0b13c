"""The runtime performance goals of issue #6, measured with ``edgevad bench`` (docs/benchmarks.md).

    python benchmarks/runtime_goals.py                     # artifacts and reports in ./edgevad-work
    python benchmarks/runtime_goals.py --r3d18-int8 DIR --i3d-int8 DIR --dam-int8 DIR  # + INT8
    python benchmarks/runtime_goals.py --make-missing                      # export what is absent

Runs, each as a printed ``edgevad bench`` command writing one JSON report into ``--out``:

1. R3D-18 at 16x112x112 (fp32, and int8 when given): one stream, frames/s, ratio to PyTorch eager;
2. I3D at 224x224 (fp32, and int8 when given): the same;
3. the DAM artifact (I3D at 64 frames + DAM head): the head's step alone at batch 1;
4. R3D-18 (int8 when given, else fp32) on 1, 2, 4 and 8 streams.

The MIL head per clip comes from run 2 (its head alone at batch 1), the Detector's own overhead
per frame at 480x360 from runs 1 and 2. Then it prints the goals table (markdown) and writes it
with the numbers to ``goals.md`` and ``goals.json``. Nothing here asserts a speed; on a shared
machine the numbers move with the other load (the load average is in each JSON).

Artifacts (the defaults are these folders under ``edgevad-work/``; ``--make-missing`` makes the
first and third):
    edgevad export --model mil --backbone r3d18 --random-init --out edgevad-work/art_r3d18
    edgevad export --model mil --out edgevad-work/art_mil      # I3D + the shipped mil head
    edgevad export --model dam-dist --random-init-stage head --out edgevad-work/art_dam
Random weights time the same as trained ones (dense networks do the same work).
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path

EXPORTS = {
    "r3d18": ["export", "--model", "mil", "--backbone", "r3d18", "--random-init"],
    "dam": ["export", "--model", "dam-dist", "--random-init-stage", "head"],
}


def edgevad(args: list[str]) -> None:
    print("$ edgevad " + " ".join(shlex.quote(a) for a in args), flush=True)
    subprocess.run([sys.executable, "-m", "edgevad", *args], check=True)


def bench(out: Path, name: str, artifacts: list[Path], *extra: str) -> dict:
    path = out / f"{name}.json"
    cmd = ["bench", "--artifacts", str(artifacts[0])]
    for a in artifacts[1:]:
        cmd += ["--compare", str(a)]
    edgevad([*cmd, *extra, "--json", str(path)])
    return json.loads(path.read_text())


def _run(doc: dict, artifact: Path, streams: int = 1) -> dict:
    return next(r for r in doc["runs"] if r["artifact"] == str(artifact) and
                r["streams"] == streams)


def _cmp(doc: dict, artifact: Path) -> dict:
    return next(c for c in doc["comparisons"] if c["artifact"] == str(artifact) and
                c["streams"] == 1)


def _fmt(v, digits=1, unit=""):
    return "-" if v is None else f"{v:.{digits}f}{unit}"


def backbone_rows(doc: dict, label: str, artifact: Path, goal_fps: str, goal_x: str) -> list:
    run, c = _run(doc, artifact), _cmp(doc, artifact)
    tp = run["throughput"]
    return [[f"{label} {run['precision']}, 1 stream: frames/s (engines alone; end to end)",
             f"{_fmt(tp['model_frames_per_s'])}; {_fmt(tp['frames_per_s'])}", goal_fps],
            [f"{label} {run['precision']}: x PyTorch eager (engines vs eager model, batch 1)",
             _fmt(c.get("speedup_vs_eager"), 2, "x"), goal_x]]


def overhead_row(doc: dict, label: str, artifact: Path) -> list:
    run = _run(doc, artifact)
    st = run["stages"]["detector_overhead"]
    return [f"Detector overhead per frame at 480x360, {label} (wall mean / p50; CPU mean)",
            f"{run['detector_overhead_ms_per_frame']:.3f} / {st['p50_ms']:.3f}; "
            f"{run['detector_overhead_cpu_ms_per_frame']:.3f} ms", "< 1 ms"]


def head_row(doc: dict, artifact: Path, label: str, goal: str) -> list:
    run = _run(doc, artifact)
    iso = run["isolated"]["head"]
    return [f"{label} {run['stage_precisions']['head']} alone, batch 1 (p50 / mean)",
            f"{iso['p50_ms']:.3f} / {iso['mean_ms']:.3f} ms", goal]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=Path("edgevad-work/goals"))
    p.add_argument("--r3d18", type=Path, default=Path("edgevad-work/art_r3d18"))
    p.add_argument("--r3d18-int8", type=Path, default=None)
    p.add_argument("--i3d", type=Path, default=Path("edgevad-work/art_mil"))
    p.add_argument("--i3d-int8", type=Path, default=None)
    p.add_argument("--dam", type=Path, default=Path("edgevad-work/art_dam"))
    p.add_argument("--dam-int8", type=Path, default=None)
    p.add_argument("--make-missing", action="store_true",
                   help="export the R3D-18 and DAM artifacts when their folders are absent")
    p.add_argument("--iters", type=int, default=20, help="clips measured for R3D-18 (I3D: "
                   "a third of it, DAM: 2, streams: 4)")
    p.add_argument("--threads", type=int, default=None)
    a = p.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    for key in ("r3d18", "dam"):
        folder = getattr(a, key)
        if not (folder / "manifest.json").is_file():
            if not a.make_missing:
                p.error(f"{folder} is not an artifact; export it (see --help) or --make-missing")
            edgevad([*EXPORTS[key], "--out", str(folder)])
    threads = ["--threads", str(a.threads)] if a.threads else []

    r3d = [a.r3d18] + ([a.r3d18_int8] if a.r3d18_int8 else [])
    i3d = [a.i3d] + ([a.i3d_int8] if a.i3d_int8 else [])
    dam = [a.dam] + ([a.dam_int8] if a.dam_int8 else [])
    docs = {
        "r3d18": bench(a.out, "r3d18", r3d, "--iters", str(a.iters), *threads),
        "i3d": bench(a.out, "i3d", i3d, "--iters", str(max(3, a.iters // 3)), "--warmup", "1",
                     *threads),
        "dam": bench(a.out, "dam", dam, "--iters", "2", "--warmup", "1", "--no-reference",
                     *threads),
        "streams": bench(a.out, "streams", [r3d[-1]], "--streams", "1,2,4,8", "--iters", "4",
                         "--warmup", "1", "--no-reference", "--no-isolated", *threads),
    }

    rows = []
    for art in r3d:
        rows += backbone_rows(docs["r3d18"], "R3D-18 16x112x112", art,
                              ">= 120 (int8)" if art != a.r3d18 else "-",
                              ">= 5x (int8)" if art != a.r3d18 else "-")
    for art in i3d:
        rows += backbone_rows(docs["i3d"], "I3D 16x224x224", art, "-", "about 3x (fp32)")
    for art in dam:
        rows.append(head_row(docs["dam"], art, "DAM step (head)", "< 2 ms"))
    for art in i3d:
        rows.append(head_row(docs["i3d"], art, "MIL head per clip", "< 0.05 ms"))
    rows.append(overhead_row(docs["r3d18"], "R3D-18 112 (shorter side 112 + crop)", a.r3d18))
    rows.append(overhead_row(docs["i3d"], "I3D 224 (resize to 224x224)", a.i3d))
    scaling = docs["streams"]["runs"]
    rows.append([f"{Path(scaling[0]['artifact']).name} ({scaling[0]['precision']}) frames/s "
                 "for 1 / 2 / 4 / 8 streams (total)",
                 " / ".join(_fmt(r["throughput"]["frames_per_s"]) for r in scaling),
                 "cost per stream visible"])
    m = docs["r3d18"]["machine"]
    head = (f"Measured on {m['cpu_model']} ({', '.join(m.get('cpu_features', []))}), "
            f"{m['usable_cores']} usable cores, load average "
            f"{m['load_average']} at the start (shared machine: other jobs were running)")
    table = ["| measure | measured | goal |", "| --- | --- | --- |"]
    table += [f"| {r[0]} | {r[1]} | {r[2]} |" for r in rows]
    text = head + "\n\n" + "\n".join(table) + "\n"
    print("\n" + text)
    (a.out / "goals.md").write_text(text)
    (a.out / "goals.json").write_text(json.dumps({"machine": m, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
