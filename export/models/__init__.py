"""The model zoo in PyTorch: backbones (I3D, 3D ResNet, C3D, motion) and anomaly heads.

Names and geometry live in ``edgevad.artifact.zoo`` (torch-free); build models through
``create_backbone`` / ``create_head`` so weights always load the same checked way.
"""

from edgevad_export.models.factory import create_backbone, create_head, head_dims

__all__ = ["create_backbone", "create_head", "head_dims"]
