"""C3D (Tran et al., ICCV 2015) in the Sports-1M layout of the common PyTorch port.

Module names follow DavideA/c3d-pytorch (``conv1`` … ``conv5b``, ``fc6``-``fc8``), the port whose
``c3d.pickle`` holds the converted Caffe Sports-1M weights, so that file loads with
``strict=True``. Input is fixed at [B, 3, 16, 112, 112]: ``fc6`` expects pool5's 512x1x4x4.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["C3D", "build_c3d"]


def _conv(cin: int, cout: int) -> nn.Conv3d:
    return nn.Conv3d(cin, cout, kernel_size=(3, 3, 3), padding=(1, 1, 1))


class C3D(nn.Module):
    """C3D; ``forward_features`` gives the fc6 activations (after ReLU) anomaly papers use."""

    feature_dim = 4096

    def __init__(self, num_classes: int = 487, dropout: float = 0.5):
        super().__init__()
        self.conv1 = _conv(3, 64)
        self.pool1 = nn.MaxPool3d(kernel_size=(1, 2, 2), stride=(1, 2, 2))
        self.conv2 = _conv(64, 128)
        self.pool2 = nn.MaxPool3d(kernel_size=(2, 2, 2), stride=(2, 2, 2))
        self.conv3a = _conv(128, 256)
        self.conv3b = _conv(256, 256)
        self.pool3 = nn.MaxPool3d(kernel_size=(2, 2, 2), stride=(2, 2, 2))
        self.conv4a = _conv(256, 512)
        self.conv4b = _conv(512, 512)
        self.pool4 = nn.MaxPool3d(kernel_size=(2, 2, 2), stride=(2, 2, 2))
        self.conv5a = _conv(512, 512)
        self.conv5b = _conv(512, 512)
        self.pool5 = nn.MaxPool3d(kernel_size=(2, 2, 2), stride=(2, 2, 2), padding=(0, 1, 1))
        self.fc6 = nn.Linear(8192, 4096)
        self.fc7 = nn.Linear(4096, 4096)
        self.fc8 = nn.Linear(4096, num_classes)
        self.dropout = nn.Dropout(p=dropout)
        self.relu = nn.ReLU()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """fc6 after ReLU, [B, 4096] (input [B, 3, 16, 112, 112])."""
        h = self.pool1(self.relu(self.conv1(x)))
        h = self.pool2(self.relu(self.conv2(h)))
        h = self.pool3(self.relu(self.conv3b(self.relu(self.conv3a(h)))))
        h = self.pool4(self.relu(self.conv4b(self.relu(self.conv4a(h)))))
        h = self.pool5(self.relu(self.conv5b(self.relu(self.conv5a(h)))))
        return self.relu(self.fc6(torch.flatten(h, 1)))  # C, T, H, W order, as the port's view()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """fc8 logits, [B, num_classes]."""
        h = self.dropout(self.forward_features(x))
        h = self.dropout(self.relu(self.fc7(h)))
        return self.fc8(h)


def build_c3d(**kwargs) -> C3D:
    """C3D; kwargs: num_classes (487 Sports-1M classes), dropout."""
    return C3D(**kwargs)
