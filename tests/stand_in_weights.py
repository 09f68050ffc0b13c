"""Stand-ins for weights files users supply (Hara et al.'s R3D releases are not on a registry).

Same layout as the release files, a ``state_dict`` with DataParallel's ``module.`` prefixes, and
seeded random values: they exercise every path a real file takes, and score nothing.
"""

from __future__ import annotations

from pathlib import Path


def hara_file(path: Path, backbone: str, seed: int = 0) -> Path:
    """Write a Hara-layout checkpoint for zoo backbone ``backbone`` to ``path``."""
    import torch
    from edgevad_export.models.factory import create_backbone

    torch.manual_seed(seed)
    model = create_backbone(backbone, random_init=True)
    torch.save({"arch": backbone, "state_dict": {f"module.{k}": v
                                                 for k, v in model.state_dict().items()}}, path)
    return path
