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
    _calibrate_batchnorm(model)
    torch.save({"arch": backbone, "state_dict": {f"module.{k}": v
                                                 for k, v in model.state_dict().items()}}, path)
    return path


def _calibrate_batchnorm(model) -> None:
    """Set every BatchNorm's running statistics from two random clips at the pixel scale Hara's
    networks are fed (0-255, as the UCF-Crime recipe; Hara's Kinetics recipe only subtracts a
    mean), as training would have.

    Why: with the default statistics (mean 0, variance 1) nothing normalises the activations,
    so a random R3D-34 gives features in the thousands where trained weights give units; the
    export's fp32 parity check (atol 1e-4, rtol 1e-5 a value) then measured the stand-in's
    scale, not the export: it failed on AMD EPYC CPUs (max_abs 0.0045 on features ~500) and
    passed on Xeons, from accumulation order alone."""
    import torch

    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the calibration batch
    model.train()
    with torch.no_grad():
        model(torch.rand(2, 3, 16, 112, 112, generator=torch.Generator().manual_seed(0)) * 255)
    model.eval()
