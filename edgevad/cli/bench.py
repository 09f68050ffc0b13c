"""``edgevad bench``: per-stage latency, throughput and memory of an exported model (torch-free;
the optional PyTorch eager reference row imports torch lazily).

Several artifacts (``--compare``) and several backends (``--backend onnxruntime,openvino``) run
one after the other in the same process, on the same frames, so their ratios to the first run
are taken in one sitting on one machine: the figures a user needs to pick a backend on their own
box.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console

from edgevad.bench.machine import machine_info, versions
from edgevad.bench.report import build_document, print_report, write_document
from edgevad.bench.runner import (
    BenchError,
    BenchSettings,
    apply_openvino_options,
    bench_artifact,
    check_artifact_dir,
    parse_backends,
)
from edgevad.bench.sources import open_source

# Piped into a file or a script, rich would fold the tables to 80 columns.
console = Console() if sys.stdout.isatty() else Console(width=160)
err = Console(stderr=True)


def parse_streams(text: str) -> list[int]:
    """``"4"`` -> [4]; ``"1,2,4,8"`` -> [1, 2, 4, 8]."""
    try:
        counts = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise BenchError(f"--streams takes a count or a comma-separated list (1,2,4,8), "
                         f"got {text!r}") from None
    if not counts or min(counts) < 1:
        raise BenchError(f"--streams needs counts >= 1, got {text!r}")
    return counts


def _references(artifacts: list[Path], batch: int, warmup: int, iters: int,
                threads: int | None) -> list[dict]:
    """One eager record per artifact; artifacts of the same model share one measurement."""
    from edgevad.artifact.manifest import load_manifest
    from edgevad.bench.reference import eager_reference, torch_available

    if not torch_available():
        return [eager_reference(artifacts[0], batch, warmup, iters, threads)]  # the reason
    done: dict[tuple, dict] = {}
    out = []
    for folder in artifacts:
        m = load_manifest(folder, verify=False)
        key = (m.head, tuple(sorted(m.backbones.items())), batch)
        if key in done:  # the same model (another precision): one measurement, shown once
            out.append({**done[key], "artifact": str(folder), "same_as": done[key]["artifact"]})
            continue
        err.print(f"[dim]PyTorch eager reference: {folder.name}, batch {batch}[/dim]")
        done[key] = eager_reference(folder, batch, warmup, iters, threads)
        out.append(done[key])
    return out


def bench_command(
    artifacts: Path = typer.Option(..., "--artifacts", "-a", help="Artifact folder "
                                   "(edgevad export)."),
    compare: Optional[List[Path]] = typer.Option(None, "--compare", help="Another artifact to "
                                                 "run after the first, with ratios to it "
                                                 "(repeat for more)."),
    backend: str = typer.Option("auto", help="auto, onnxruntime, openvino or tensorrt; a "
                                "comma-separated list benches each in turn, with ratios to the "
                                "first: onnxruntime,openvino,openvino:bf16 (OpenVINO "
                                "NAME:PRECISION@DEVICE, e.g. openvino:bf16@GPU)."),
    device: Optional[str] = typer.Option(None, help="OpenVINO device (CPU, GPU, NPU, AUTO) of "
                                         "the openvino/auto entries of --backend that name "
                                         "none."),
    precision: Optional[str] = typer.Option(None, help="OpenVINO inference precision (f32, "
                                            "bf16, f16) of the openvino/auto entries of "
                                            "--backend that name none (as edgevad run's)."),
    providers: Optional[List[str]] = typer.Option(None, "--provider", help="ONNX Runtime "
                                                  "execution provider (repeat; default CPU)."),
    streams: str = typer.Option("1", help="Streams fed in lockstep: a count or a list, "
                                "e.g. 1,2,4,8 (one run each)."),
    source: str = typer.Option("synthetic", help="'synthetic' or a video file (decoding is "
                               "then timed too; it loops)."),
    size: str = typer.Option("480x360", help="Synthetic frame size, WIDTHxHEIGHT."),
    fps: float = typer.Option(30.0, help="Synthetic source frame rate (real-time factor)."),
    warmup: int = typer.Option(2, help="Clips per stream before measuring."),
    iters: int = typer.Option(20, help="Clips per stream measured."),
    threads: Optional[int] = typer.Option(None, help="Intra-op threads per engine (and for "
                                          "PyTorch); default: the library's."),
    max_batch: int = typer.Option(16, help="Most clips per engine call."),
    reference: Optional[bool] = typer.Option(None, "--reference/--no-reference",
                                             help="PyTorch eager row (default: when torch is "
                                             "installed)."),
    isolated: bool = typer.Option(True, "--isolated/--no-isolated", help="Also time each "
                                  "engine alone on its last batch (many runs for fast heads)."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the JSON report here."),
) -> None:
    """Profile an exported model: per-stage latency, throughput, memory (see edgevad.bench)."""
    folders = [check_artifact_dir(p) for p in [artifacts, *(compare or [])]]
    counts = parse_streams(streams)
    backends = apply_openvino_options(parse_backends(backend), precision, device)
    settings = BenchSettings(backend=backends[0].name, providers=tuple(providers) if providers else None,
                             threads=threads, warmup=warmup, iters=iters, max_batch=max_batch,
                             isolated=isolated)
    src = open_source(source, size, fps)
    runs = []
    try:
        for folder in folders:
            for spec in backends:
                run_settings = replace(settings, backend=spec.name, precision=spec.precision,
                                       device=spec.device)
                for n in counts:
                    err.print(f"[dim]bench {folder.name} on {spec.label}: {n} stream(s), "
                              f"{warmup} + {iters} clips each[/dim]")
                    runs.append(bench_artifact(folder, src, n, run_settings))
    finally:
        src.close()
    from edgevad.bench.reference import torch_available

    refs: list[dict] = []
    if reference or (reference is None and torch_available()):
        refs = _references(folders, counts[0], warmup, min(iters, 10), threads)
    doc = build_document(machine_info(), versions(), {
        "backend": backend, "backends": [b.label for b in backends],
        "providers": list(providers or []), "threads": threads,
        "streams": counts, "source": src.describe(), "warmup": warmup, "iters": iters,
        "max_batch": max_batch, "isolated": isolated}, runs, refs)
    print_report(doc, console)
    if json_out is not None:
        console.print(f"report: {write_document(doc, json_out)}")


def register(app: typer.Typer) -> None:
    app.command("bench")(bench_command)
