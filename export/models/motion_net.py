"""The DMRM motion stream: a 3D CNN over optical-flow maps instead of RGB.

DMRMs (Dubey et al.) pair appearance features with features of a 3D CNN run on optical flow, the
(dx, dy) maps ``edgevad.media.motion.encode_flow`` produces in [-1, 1], input [B, 2, T, 112, 112].

- ``motion-i3d`` (the default): I3D with a 2-channel stem, initialised from the Kinetics RGB I3D
  by cross-modality pre-training (TSN: the stem's filters averaged over R, G, B and copied to both
  flow channels; ``edgevad_export.weights.cross_modal``), so the stream has real pretrained
  weights from the registry. 1024-D features.
- ``motion-r3d18``: Hara's R3D-18 with a 2-channel stem; no published weights (bring your own).
"""

from __future__ import annotations

from edgevad_export.models.resnet3d import ResNet3D, build_r3d18

__all__ = ["build_motion_i3d", "build_motion_r3d18"]


def build_motion_i3d(**kwargs):
    """I3D with ``in_channels=2`` (kwargs as for ``build_i3d``)."""
    from edgevad_export.models.i3d import build_i3d

    kwargs.setdefault("in_channels", 2)
    return build_i3d(**kwargs)


def build_motion_r3d18(**kwargs) -> ResNet3D:
    """R3D-18 with ``in_channels=2``; kwargs as for ``build_r3d18`` (shortcut_type, num_classes)."""
    kwargs.setdefault("in_channels", 2)
    return build_r3d18(**kwargs)
