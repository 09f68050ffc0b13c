"""MRM head: MILR of Dubey, Boragule & Jeon, "3D ResNet with Ranking Loss Function for Abnormal
Activity Detection in Videos", ICCAIS 2019 (arXiv:2002.01132).

The network is Sultani's MIL segment scorer over 512-D 3D-ResNet-34 segment features; what MILR
changes is the objective, the multiple ranking measures
(:func:`edgevad_export.models.heads.losses.multiple_ranking_loss`): besides top-of-anomalous vs
top-of-normal, the top of an anomalous bag must beat its own bottom, and its 2nd and 3rd highest
segments must also beat the normal bag's top, which spreads the positive evidence and cuts false
alarms from a single spuriously high normal segment.
"""

from __future__ import annotations

from .losses import multiple_ranking_loss  # noqa: F401  (the objective that defines this head)
from .mil import MILHead


class MRMHead(MILHead):
    """``features [B, S, 512] -> scores [B, S]`` in [0, 1]; the MIL MLP trained with MRM."""

    def __init__(self, feature_dim: int = 512, hidden: int = 512, bottleneck: int = 32,
                 dropout: float = 0.6, standardize: bool = False) -> None:
        super().__init__(feature_dim=feature_dim, hidden=hidden, bottleneck=bottleneck,
                         dropout=dropout, standardize=standardize)


def build_mrm(feature_dim: int = 1024, **kwargs) -> MRMHead:
    """The zoo's ``mrm`` head; kwargs: ``hidden=512, bottleneck=32, dropout=0.6``."""
    return MRMHead(feature_dim=feature_dim, **kwargs)
