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


# ------------------------------------------------------------------------------ the model zoo
# Small float64 models of the architectures people train, each with dropout sites of its kind.

class _Block(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
        self.c2, self.b2 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)

    def forward(self, x):
        return torch.relu(x + self.b2(self.c2(torch.relu(self.b1(self.c1(x))))))


class _MeanTokens(nn.Module):
    def forward(self, x):
        return x.mean(1)


class _LastStep(nn.Module):
    def forward(self, out):
        return out[0][:, -1]


def _resnet():
    return nn.Sequential(nn.Conv2d(2, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU(),
                         _Block(4), nn.Dropout2d(0.2), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Dropout(0.3), nn.Linear(4, 3))


def _transformer():
    layer = nn.TransformerEncoderLayer(8, 2, dim_feedforward=12, dropout=0.2, batch_first=True)
    return nn.Sequential(nn.Linear(3, 8), nn.TransformerEncoder(layer, 1,
                                                                enable_nested_tensor=False),
                         _MeanTokens(), nn.Linear(8, 3))


def _lstm():
    from dropreg.nn import WeightDrop

    return nn.Sequential(WeightDrop(nn.LSTM(3, 5, batch_first=True), "weight_hh_l0", p=0.3),
                         _LastStep(), nn.Dropout(0.2), nn.Linear(5, 3))


def _dropconnect():
    from dropreg.nn import DropConnectLinear

    return nn.Sequential(nn.Linear(4, 6), nn.Tanh(), DropConnectLinear(6, 3, p=0.3))


def _mlp():
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Dropout(0.2), nn.Linear(8, 3))


ZOO = {"resnet": _resnet, "transformer": _transformer, "lstm": _lstm,
       "dropconnect": _dropconnect, "mlp": _mlp}
_SHAPES = {"resnet": (2, 5, 5), "transformer": (4, 3), "lstm": (4, 3), "dropconnect": (4,),
           "mlp": (4,)}


def make_zoo_model(name: str, mode: str, n: int = 6, seed: int = 0):
    """(model in ``mode``, X, y) of the zoo: float64, 3 classes, BatchNorm with non-trivial
    running statistics."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # initialisation of the layers (test code only)
    model = ZOO[name]().double()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.running_mean.uniform_(-0.2, 0.2, generator=g)
                m.running_var.uniform_(0.5, 1.5, generator=g)
                m.weight.uniform_(0.5, 1.5, generator=g)
                m.bias.uniform_(-0.2, 0.2, generator=g)
    X = torch.randn((n, *_SHAPES[name]), generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (n,), generator=g)
    return model.train(mode == "train"), X, y


@pytest.fixture(name="zoo")
def zoo_fixture():
    """Factory ``zoo(name, mode, n=6, seed=0) -> (model, X, y)`` over the model zoo."""
    return make_zoo_model
