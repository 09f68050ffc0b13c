"""Read C3D Sports-1M weights converted to PyTorch (e.g. ``c3d.pickle`` of DavideA/c3d-pytorch).

That file is a plain state dict with the keys of :class:`edgevad_export.models.c3d.C3D`; a
``state_dict`` wrapper or ``module.`` prefix is tolerated too. Strict matching is the caller's.
"""

from __future__ import annotations

from pathlib import Path

import torch

from edgevad_export.weights.checkpoint import read_state_dict

__all__ = ["load_c3d_checkpoint"]


def load_c3d_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """State dict of a converted C3D Sports-1M file, ready for strict loading."""
    return read_state_dict(path, what="C3D checkpoint")
