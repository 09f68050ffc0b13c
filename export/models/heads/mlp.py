"""The per-segment scoring MLP of Sultani et al. (CVPR 2018), shared by the MIL, MRM and DMRM heads.

The original Keras model is ``Dense(512, relu) -> Dropout(0.6) -> Dense(32) -> Dropout(0.6) ->
Dense(1, sigmoid)``, every layer ``glorot_normal`` with an L2 weight penalty of 1e-3 (that penalty
is weight decay: it belongs to the optimiser, not to the module). The 32-unit layer is linear in the
released code, and so it is here. Also the Keras-style initialisers the heads use.
"""

from __future__ import annotations

import torch
from torch import nn


def init_dense(layer: nn.Linear) -> nn.Linear:
    """Keras ``glorot_normal`` weights and zero bias, as the papers' Keras code initialises."""
    nn.init.xavier_normal_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


def init_lstm(lstm: nn.LSTM) -> nn.LSTM:
    """Keras LSTM defaults where they are cheap: glorot-uniform input kernel per gate, zero bias
    with the forget-gate bias at 1 (``unit_forget_bias``); PyTorch's gate order is i, f, g, o.
    The recurrent kernel keeps PyTorch's uniform init: Keras' orthogonal one costs a QR per gate
    (seconds for a 1024-unit LSTM on a small CPU) and is replaced by trained or loaded weights."""
    hidden = lstm.hidden_size
    for name, param in lstm.named_parameters():
        if name.startswith("weight_ih"):
            for gate in param.data.split(hidden):
                nn.init.xavier_uniform_(gate)
        elif name.startswith("bias"):
            nn.init.zeros_(param)
            if name.startswith("bias_ih"):
                param.data[hidden:2 * hidden] = 1.0
    return lstm


class FeatureStandardizer(nn.Module):
    """Per-dimension ``(x - mean) / std`` with statistics fitted on the training bags.

    Pooled 3D-CNN features are all positive with a nearly constant norm (UCF-Crime R3D-34: 39.5
    +- 0.6), so what tells segments apart is small per-dimension deviations; standardising them
    was worth +1.6 frame-AUC points on dev for the MIL MLP. The statistics are buffers, so they
    travel in checkpoints and in the exported graph.
    """

    def __init__(self, feature_dim: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(feature_dim))
        self.register_buffer("std", torch.ones(feature_dim))

    @torch.no_grad()
    def fit(self, features: torch.Tensor) -> None:
        flat = features.reshape(-1, features.shape[-1]).float()
        self.mean.copy_(flat.mean(dim=0))
        self.std.copy_(flat.std(dim=0).clamp_min(1e-6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class SegmentMLP(nn.Module):
    """Score each segment feature independently: ``[..., D] -> [...]`` in [0, 1].

    Sultani et al. score every segment with the same small MLP so that the bag's maximum (the
    ranking loss's argument) can sit on any segment; dropout 0.6 is their regulariser against the
    noisy weak labels.
    """

    def __init__(self, feature_dim: int, hidden: int = 512, bottleneck: int = 32,
                 dropout: float = 0.6) -> None:
        super().__init__()
        self.feature_dim = feature_dim
        self.fc1 = init_dense(nn.Linear(feature_dim, hidden))
        self.fc2 = init_dense(nn.Linear(hidden, bottleneck))
        self.fc3 = init_dense(nn.Linear(bottleneck, 1))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.dropout(torch.relu(self.fc1(x)))
        h = self.dropout(self.fc2(h))  # linear, as in the released Keras model
        return torch.sigmoid(self.fc3(h)).squeeze(-1)


def check_features(features: torch.Tensor, feature_dim: int, name: str = "features") -> None:
    """Raise ValueError unless ``features`` is ``[B, S, feature_dim]``."""
    if features.dim() != 3 or features.shape[-1] != feature_dim:
        raise ValueError(
            f"{name} must be [batch, segments, {feature_dim}], got {tuple(features.shape)}"
        )
