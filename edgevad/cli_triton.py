"""``edgevad triton``: write a Triton Inference Server model repository from an artifact.

Torch-free (the artifact's ONNX files and manifest are all it reads); needs the ``[triton]``
extra (tritonclient for Triton's config protobuf, onnx for the START-aware head). Options
default to None and are resolved by :class:`~edgevad.triton.repository.RepositoryOptions`.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

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

    given = {k: v for k, v in dict(
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


def register(app: typer.Typer) -> None:
    app.command("triton")(triton_command)
