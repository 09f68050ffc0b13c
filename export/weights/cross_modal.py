"""Cross-modality initialisation: an RGB network's weights for a 2-channel optical-flow input.

Temporal Segment Networks (Wang et al., ECCV 2016) start the flow stream from the RGB network:
the first convolution's filters are averaged over the R, G, B input channels and the mean is
copied to every flow channel; all other layers are kept. Flow maps and the RGB stream's inputs
share the [-1, 1] range here, so no rescaling is needed.
"""

from __future__ import annotations

import torch

from edgevad.errors import WeightsError

__all__ = ["rgb_stem_to_flow"]

STEM = "Conv3d_1a_7x7.conv.weight"


def rgb_stem_to_flow(state_dict: dict[str, torch.Tensor], channels: int = 2
                     ) -> dict[str, torch.Tensor]:
    """I3D RGB state dict -> the same with a ``channels``-input stem (mean over RGB, repeated)."""
    if STEM not in state_dict:
        raise WeightsError(f"cross-modal init expects an I3D state dict with {STEM!r}")
    w = state_dict[STEM]
    if w.dim() != 5 or w.shape[1] != 3:
        raise WeightsError(f"{STEM} should be [out, 3, t, h, w], got {list(w.shape)}")
    out = dict(state_dict)
    out[STEM] = w.mean(dim=1, keepdim=True).repeat(1, channels, 1, 1, 1).contiguous()
    return out
