"""Read Hara et al.'s 3D-ResNets-PyTorch checkpoints (``resnet-18/34-kinetics.pth``).

Those files are ``{'epoch', 'arch', 'state_dict', 'optimizer'}`` dicts saved from a
``DataParallel`` model under PyTorch 0.3: keys carry a ``module.`` prefix and BatchNorm layers
have no ``num_batches_tracked`` buffer. This returns a plain state dict that
``ResNet3D.load_state_dict(sd, strict=True)`` accepts; the caller does the strict matching.
"""

from __future__ import annotations

from pathlib import Path

import torch

from edgevad_export.weights.checkpoint import read_state_dict

__all__ = ["load_hara_checkpoint"]


def load_hara_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """State dict of a Hara ``resnet-*-kinetics.pth`` file, ready for strict loading."""
    return read_state_dict(path, what="Hara 3D-ResNet checkpoint")
