"""Fixtures of the curvature tests: small float64 nets with torch dropout."""

from __future__ import annotations

import pytest
import torch
from torch import nn


def half_mse(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(1/n) sum_i 1/2 (f(x_i) - y_i)^2, the loss of digest A.2."""
    return 0.5 * ((out - y) ** 2).sum(-1).mean()


@pytest.fixture(name="half_mse")
def half_mse_fixture():
    """The half-MSE loss as a fixture (test modules cannot import conftest)."""
    return half_mse


@pytest.fixture
def interp_net():
    """Factory: 3-12-8-1 ReLU net, dropout p before the output layer, n = 5, interpolating."""

    def make(p: float, seed: int = 0):
        torch.manual_seed(seed)
        net = nn.Sequential(nn.Linear(3, 12), nn.ReLU(), nn.Linear(12, 8), nn.ReLU(),
                            nn.Dropout(p), nn.Linear(8, 1)).double()
        X = torch.randn(5, 3, dtype=torch.float64)
        y = torch.randn(5, 1, dtype=torch.float64)
        with torch.no_grad():
            net[0].bias.add_(0.5)  # keep the hidden units active so that rank(h) = n
            net[2].bias.add_(1.0)
            h = net[:4](X)
            net[5].weight.copy_((torch.linalg.pinv(h) @ y).T)
            net[5].bias.zero_()
            assert float(((net[:4](X) @ net[5].weight.T - y) ** 2).sum()) < 1e-20
        return net, X, y

    return make
