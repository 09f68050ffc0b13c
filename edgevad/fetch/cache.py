"""Where edgevad keeps fetched packages and converted weights.

Order: ``$EDGEVAD_CACHE``, then ``$XDG_CACHE_HOME/edgevad``, then ``~/.cache/edgevad``.
Everything in it can be deleted; it is rebuilt on demand from the package registry.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "EDGEVAD_CACHE"


def cache_dir(*parts: str, create: bool = True) -> Path:
    """Return the cache folder (or a subfolder of it), creating it unless told not to."""
    root = os.environ.get(ENV_VAR)
    if root:
        base = Path(root).expanduser()
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        base = (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "edgevad"
    path = base.joinpath(*parts)
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path
