"""``edgevad bench``: per-stage latency, throughput and memory of an exported model (torch-free)."""

from __future__ import annotations

import typer

from edgevad import __version__
from edgevad.errors import EdgevadError


def bench_command() -> None:
    """Profile an exported model: per-stage latency, throughput, memory."""
    raise EdgevadError(f"'edgevad bench' is not available in edgevad {__version__} yet.")


def register(app: typer.Typer) -> None:
    app.command("bench")(bench_command)
