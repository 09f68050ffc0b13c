"""``edgevad triton``: write a Triton Inference Server model repository from an artifact.

Torch-free (the artifact's ONNX files and manifest are all it reads); needs the ``[triton]``
extra (tritonclient for Triton's config protobuf, onnx for the START-aware head). Options
default to None and are resolved by :class:`~edgevad.triton.repository.RepositoryOptions`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, List, Optional

import typer
from rich.console import Console

console = Console()


def triton_command(
    artifact: Path = typer.Argument(..., help="Artifact folder written by edgevad export."),
    out: Path = typer.Option(..., "--out", "-o", help="Model repository folder to write."),
    name: Optional[str] = typer.Option(None, help="Model-name prefix (default: the head, "
                                       "e.g. dam-dist -> dam-dist_backbone, dam-dist_head)."),
    backend: Optional[str] = typer.Option(None, help="onnxruntime (default), tensorrt (the "
                                          "artifact's engines) or python (ONNX Runtime in a "
                                          "python-backend model.py)."),
    version: Optional[int] = typer.Option(None, help="Version folder (default 1)."),
    max_batch: Optional[int] = typer.Option(None, help="max_batch_size of every model "
                                            "(default 8)."),
    instances: Optional[int] = typer.Option(None, help="Instances of each model per device "
                                            "(default 1)."),
    kind: Optional[str] = typer.Option(None, help="Instance kind: gpu (default), cpu or auto."),
    gpus: Optional[List[int]] = typer.Option(None, "--gpu", help="GPU index for the instances "
                                             "(repeatable; default: every GPU)."),
    queue_delay_us: Optional[int] = typer.Option(None, help="Batchers' max queue delay in "
                                                 "microseconds (default 2000)."),
    sequence_idle_us: Optional[int] = typer.Option(None, help="A camera silent this long "
                                                   "loses its server-side state (default 60 s)."),
    precision: Optional[str] = typer.Option(None, help="TensorRT engines to take (default: "
                                            "each stage's precision)."),
    threads: Optional[int] = typer.Option(None, help="ONNX Runtime threads per instance."),
    sys_path: Optional[List[str]] = typer.Option(None, "--sys-path", help="python backend: a "
                                                 "folder with numpy and onnxruntime for the "
                                                 "server's interpreter (repeatable; default: "
                                                 "this interpreter's site-packages)."),
    overwrite: bool = typer.Option(False, help="Replace an existing repository folder."),
) -> None:
    """Write a Triton model repository (backbone, head, ensemble) from an exported artifact."""
    from edgevad.triton.repository import RepositoryOptions, write_repository

    given: dict[str, Any] = {k: v for k, v in dict(
        name=name, backend=backend, version=version, max_batch_size=max_batch,
        instances=instances, kind=kind, gpus=tuple(gpus) if gpus else None,
        max_queue_delay_us=queue_delay_us, max_sequence_idle_us=sequence_idle_us,
        precision=precision, threads=threads,
        sys_path=tuple(sys_path) if sys_path else None).items() if v is not None}
    repo = write_repository(artifact, out, RepositoryOptions(**given), overwrite=overwrite)
    console.print(f"[green]repository[/green] {out} ({repo.backend})")
    for stage, model in repo.stages.items():
        how = "sequence batcher" if repo.sequence and stage == "head" else "dynamic batching"
        console.print(f"  {model}: {stage}, {how}")
    if repo.ensemble:
        console.print(f"  {repo.ensemble}: ensemble (one request per clip, with the camera's "
                      "sequence id)")
    console.print(f"client: TritonDetector.connect('HOST:8001', model={repo.name!r})")


def triton_bench_command(
    url: Optional[str] = typer.Option(None, help="Triton server, host:8001 (gRPC) or "
                                      "host:8000 (--protocol http)."),
    model: Optional[str] = typer.Option(None, help="Repository model name (edgevad triton "
                                        "--name; default: the artifact's head)."),
    protocol: str = typer.Option("grpc", help="grpc or http."),
    artifacts: Optional[Path] = typer.Option(None, "--artifacts", "-a", help="Also run the "
                                             "same cameras in-process on this artifact."),
    source: Optional[Path] = typer.Option(None, help="Video whose frames every camera plays "
                                          "(default: synthetic 480x360 frames)."),
    cameras: str = typer.Option("1,4,8", help="Camera counts, comma-separated."),
    frames: int = typer.Option(64, help="Frames each camera pushes."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the results as JSON."),
) -> None:
    """N concurrent cameras through the Triton client (and in-process): per-camera clip latency
    percentiles and total frames/s."""
    import json

    import numpy as np
    from rich.table import Table

    from edgevad.errors import EdgevadError
    from edgevad.triton.bench import bench_cameras, in_process_factory, served_factory

    if url is None and artifacts is None:
        raise EdgevadError("give --url (a Triton server), --artifacts (in-process), or both")
    if source is not None:
        from edgevad.media.video import VideoReader

        clip = []
        for f in VideoReader(source):
            clip.append(f)
            if len(clip) >= frames:
                break
    else:
        rng = np.random.default_rng(0)
        clip = [rng.integers(0, 255, (360, 480, 3), dtype=np.uint8) for _ in range(frames)]
    counts = [int(c) for c in cameras.split(",") if c.strip()]
    modes = []
    if artifacts is not None:
        modes.append(("in-process", in_process_factory(artifacts)))
        if model is None:
            from edgevad.artifact.manifest import read_manifest

            model = read_manifest(artifacts).head
    if url is not None:
        if model is None:
            raise EdgevadError("--model is needed with --url when no --artifacts is given")
        modes.append((f"triton {protocol}", served_factory(url, model, protocol)))
    table = Table(title=f"{len(clip)} frames per camera")
    for col in ("mode", "cameras", "frames/s", "clips", "clip p50 ms", "p90", "p99",
                "worst camera p99", "errors"):
        table.add_column(col)
    rows = []
    for n in counts:
        for mode, make in modes:
            r = bench_cameras(make, clip, n, mode=mode)
            rows.append(r.to_dict())
            lat = r.clip_latency
            table.add_row(mode, str(n), f"{r.frames_per_s:.1f}", str(r.clips),
                          *(("-",) * 3 if lat is None else
                            (f"{lat.p50_ms:.1f}", f"{lat.p90_ms:.1f}", f"{lat.p99_ms:.1f}")),
                          f"{max(r.per_camera_p99_ms):.1f}", str(len(r.errors)))
    console.print(table)
    if json_out is not None:
        json_out.write_text(json.dumps({"frames": len(clip), "source": str(source or "synthetic"),
                                        "results": rows}, indent=2) + "\n")
        console.print(f"json: {json_out}")


def register(app: typer.Typer) -> None:
    app.command("triton")(triton_command)
    app.command("triton-bench")(triton_bench_command)
