"""First thing to run on a machine with an NVIDIA GPU: the I3D model (mil-ctx) and R3D-18 through ONNX
Runtime's CUDA provider (and TensorRT where present), as ``edgevad bench`` rows with the device
named, beside the CPU row of the same artifact, so a GPU session fills the backends table at once.

    python benchmarks/gpu_check.py --work WORK                 # exports what is missing into WORK
    python benchmarks/gpu_check.py --artifacts ART [ART ...]   # artifacts you already have

Needs no network once the artifacts exist (mil-ctx is built from the registry's I3D
weights on first use; R3D-18 is exported with random weights, which time the same as trained
ones). What runs, per artifact, each as a printed ``edgevad bench`` command writing JSON into
``WORK/gpu_check``:

1. ONNX Runtime on CPU (the baseline of the ratios);
2. ONNX Runtime's ``CUDAExecutionProvider`` when this onnxruntime offers it and a GPU is there;
3. ONNX Runtime's ``TensorrtExecutionProvider`` when offered (it needs TensorRT's libraries);
4. edgevad's own TensorRT backend when ``import tensorrt`` works (engines built first with
   ``edgevad build-engines``).

Each row names the device that ran (the provider ONNX Runtime really used, which
``edgevad bench`` records, and the GPU's name): a provider that fell back to CPU shows as CPU,
never as the GPU. On a machine without a GPU it says so and prints the CPU rows only (this is
how the tests run it). The runs are consecutive on the same machine; ratios are to the CPU row
of the same artifact.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CLIP = REPO.parent / "shared" / "data" / "clips" / "pets2009_vtest.mp4"
R3D18 = ["export", "--model", "mil", "--backbone", "r3d18", "--random-init"]


def gpu_name() -> str | None:
    """The first NVIDIA GPU's name (PyTorch's CUDA, else nvidia-smi), or None."""
    try:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.get_device_name(0)
    except ImportError:
        pass
    smi = shutil.which("nvidia-smi")
    if smi:
        out = subprocess.run([smi, "--query-gpu=name", "--format=csv,noheader"],
                             capture_output=True, text=True, check=False)
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip().splitlines()[0]
    return None


def edgevad(args: list[str]) -> None:
    print("$ edgevad " + " ".join(shlex.quote(a) for a in args), flush=True)
    subprocess.run([sys.executable, "-m", "edgevad", *args], check=True)


def plans(gpu: str | None) -> list[tuple[str, list[str]]]:
    """(label, extra bench arguments) per backend to run here."""
    import onnxruntime as ort

    offered = ort.get_available_providers()
    out = [("onnxruntime CPU", ["--backend", "onnxruntime"])]
    if gpu is None:
        return out
    for provider, label in (("CUDAExecutionProvider", "onnxruntime CUDA"),
                            ("TensorrtExecutionProvider", "onnxruntime TensorRT EP")):
        if provider in offered:
            out.append((label, ["--backend", "onnxruntime", "--provider", provider]))
    try:
        import tensorrt  # noqa: F401

        out.append(("tensorrt", ["--backend", "tensorrt"]))
    except ImportError:
        pass
    return out


def artifacts(work: Path) -> list[Path]:
    """The built-in I3D model mil-ctx (built into edgevad's cache once; the default model, a
    flow-statistics prior, has no network for a GPU to run) and R3D-18 (exported into WORK)."""
    from edgevad.artifact.defaults import default_artifact

    r3d = work / "r3d18"
    if not (r3d / "manifest.json").is_file():
        edgevad([*R3D18, "--out", str(r3d)])
    return [default_artifact("mil-ctx", progress=True), r3d]


def row(label: str, gpu: str | None, doc: dict, base: dict | None) -> list[str]:
    run = doc["runs"][0]
    devices = sorted(set(run["devices"].values()))
    on_gpu = any(d not in ("CPUExecutionProvider",) and "OpenVINO" not in d for d in devices)
    device = ", ".join(devices) + (f" on {gpu}" if on_gpu and gpu else "")
    tp = run["throughput"]
    ratio = 1.0 if base is None else tp["frames_per_s"] / base["throughput"]["frames_per_s"]
    model = tp.get("model_frames_per_s")
    return [Path(run["artifact"]).name, run["precision"], label, device,
            f"{tp['frames_per_s']:.1f}", "-" if model is None else f"{model:.1f}", f"{ratio:.2f}"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--work", type=Path, default=Path("gpu-check"))
    p.add_argument("--artifacts", type=Path, nargs="*", default=None,
                   help="artifact folders to run (default: the built-in mil-ctx and R3D-18)")
    p.add_argument("--source", default=str(CLIP) if CLIP.is_file() else "synthetic",
                   help="a video file or 'synthetic' (default: the PETS clip of ../shared)")
    p.add_argument("--iters", type=int, default=12)
    p.add_argument("--warmup", type=int, default=2)
    a = p.parse_args(argv)
    out = a.work / "gpu_check"
    out.mkdir(parents=True, exist_ok=True)
    gpu = gpu_name()
    if gpu is None:
        print("no NVIDIA GPU here (PyTorch sees no CUDA device and nvidia-smi finds none): "
              "running the CPU rows only", flush=True)
    else:
        print(f"GPU: {gpu}", flush=True)
    folders = a.artifacts if a.artifacts else artifacts(a.work)
    rows = []
    for folder in folders:
        base = None
        for label, extra in plans(gpu):
            if extra[-1] == "tensorrt":
                edgevad(["build-engines", str(folder)])
            path = out / f"{folder.name}.{label.replace(' ', '_')}.json"
            try:
                edgevad(["bench", "--artifacts", str(folder), *extra, "--source", a.source,
                         "--iters", str(a.iters), "--warmup", str(a.warmup), "--no-reference",
                         "--json", str(path)])
            except subprocess.CalledProcessError as exc:
                rows.append([folder.name, "-", label, f"failed (exit {exc.returncode})", "-",
                             "-", "-"])
                continue
            doc = json.loads(path.read_text())
            rows.append(row(label, gpu, doc, base))
            base = base or doc["runs"][0]
    head = ["artifact", "precision", "backend", "device", "frames/s", "engines frames/s",
            "x CPU"]
    print("\n| " + " | ".join(head) + " |\n|" + " --- |" * len(head))
    for r in rows:
        print("| " + " | ".join(r) + " |")
    (out / "rows.json").write_text(json.dumps({"gpu": gpu, "header": head, "rows": rows},
                                              indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
