"""The DMRM motion stream: a 3D CNN over optical-flow maps instead of RGB.

DMRMs (Dubey et al.) pair appearance features with features of a 3D CNN run on optical flow.
Here that CNN is Hara's R3D-18 (:mod:`edgevad_export.models.resnet3d`) with a 2-channel stem for
the (dx, dy) maps that ``edgevad.motion.encode_flow`` produces in [-1, 1]. Input
[B, 2, T, 112, 112] (T = 16 by default), 512-D features. No pretrained weights exist for it: it is
trained with the head.
"""

from __future__ import annotations

from edgevad_export.models.resnet3d import ResNet3D, build_r3d18

__all__ = ["build_motion_r3d18"]


def build_motion_r3d18(**kwargs) -> ResNet3D:
    """R3D-18 with ``in_channels=2``; kwargs as for ``build_r3d18`` (shortcut_type, num_classes)."""
    kwargs.setdefault("in_channels", 2)
    return build_r3d18(**kwargs)
