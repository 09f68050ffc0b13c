"""Read a PyTorch checkpoint file into a plain state dict, safely and with clear errors.

One reader for every torch weights file edgevad accepts (user backbone files, trained heads,
converted caches): ``weights_only`` loading, ``state_dict`` wrappers and ``module.`` prefixes
unwrapped, and a ``WeightsError`` that names the file when it is truncated or not a state dict.
"""

from __future__ import annotations

from pathlib import Path

import torch

from edgevad.errors import WeightsError

__all__ = ["read_state_dict"]


def read_state_dict(path: str | Path, *, what: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Load a torch file safely (``weights_only``), unwrap ``state_dict``, strip ``module.``.

    BatchNorm buffers saved before PyTorch 0.4.1 lack ``num_batches_tracked``; a zero counter is
    added so strict key checks pass (it only matters for momentum=None training).
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{what} {path} does not exist (or is not a file)")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated, corrupt, not a torch file, or unsafe pickle content
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WeightsError(
            f"Cannot read {what} {path}: the file is truncated, corrupt or not a PyTorch "
            f"checkpoint ({first})"
        ) from exc
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not obj or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()
    ):
        raise WeightsError(
            f"{what} {path} does not hold a state dict (a mapping of names to tensors), "
            f"got {type(obj).__name__}"
        )
    sd = {(k[len("module."):] if k.startswith("module.") else k): v for k, v in obj.items()}
    for key in [k for k in sd if k.endswith(".running_var")]:
        sd.setdefault(key[: -len("running_var")] + "num_batches_tracked",
                      torch.tensor(0, dtype=torch.long))
    return sd
