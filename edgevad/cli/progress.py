"""One progress bar for every long job (downloads, extraction, training), on stderr.

rich's ``disable`` flag gives the no-op variant, so callers never branch on ``progress=False``.
"""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


def progress_bar(*extra: ProgressColumn | str, enabled: bool = True,
                 console: Console | None = None) -> Progress:
    """``description | bar | n/N | *extra | elapsed | remaining``; silent when not enabled."""
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               *(TextColumn(c) if isinstance(c, str) else c for c in extra),
               TimeElapsedColumn(), TimeRemainingColumn()]
    return Progress(*columns, console=console or Console(stderr=True), disable=not enabled)
