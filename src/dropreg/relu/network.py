"""ReLU networks of Helmbold & Long (2017): the standard architecture and its layer view.

``docs/papers/helmbold2017.md``, "Setting". A network is any ``nn.Sequential`` of the form
``Linear, ReLU, Linear, ReLU, ..., Linear``: ReLU hidden units, a linear output, biases optional.
:class:`StandardNet` is the paper's "standard architecture" (K inputs, d layers counting the output,
n ReLU units per hidden layer, one linear output).

Dropout acts on every **non-output node, inputs included**: the dropout pattern is one 0/1 vector
over the inputs and all hidden units, in that order (inputs first, then hidden layer 1, 2, ...).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from dropreg._checks import check_int

__all__ = [
    "StandardNet",
    "relu_net",
    "linear_layers",
    "dropout_layer_widths",
    "num_dropout_nodes",
]


class StandardNet(nn.Sequential):
    """The standard architecture of Helmbold & Long (2017).

    ``K`` inputs, ``d`` layers counting the output but not the inputs (so ``d - 1`` hidden layers of
    ``n`` ReLU units), one linear output, biases everywhere. It is an ``nn.Sequential``
    ``Linear(K, n), ReLU(), ..., Linear(n, 1)``, so every function of :mod:`dropreg.relu`
    accepts it.

    Weights and biases are initialised as Torch does (uniform in ``[-1/sqrt(fan_in),
    1/sqrt(fan_in)]``), from ``generator``.

    Args:
        K: number of inputs (>= 1).
        d: number of layers counting the output (>= 1; ``d = 1`` is a linear model).
        n: ReLU units per hidden layer (>= 1).
        bias: whether the layers have biases.
        dtype: parameter dtype (float64 by default: the criteria are theory).
        generator: random generator of the initialisation.

    Example:
        >>> net = StandardNet(K=2, d=3, n=4, generator=torch.Generator().manual_seed(0))
        >>> net
        StandardNet(K=2, d=3, n=4)
        >>> net(torch.ones(5, 2, dtype=torch.float64)).shape
        torch.Size([5, 1])
        >>> num_dropout_nodes(net)
        10
    """

    def __init__(
        self,
        K: int,
        d: int,
        n: int,
        *,
        bias: bool = True,
        dtype: torch.dtype = torch.float64,
        generator: torch.Generator | None = None,
    ) -> None:
        K = check_int("K", K)
        d = check_int("d", d)
        n = check_int("n", n)
        widths = [K] + [n] * (d - 1) + [1]
        modules: list[nn.Module] = []
        for j in range(d):
            lin = nn.Linear(widths[j], widths[j + 1], bias=bias, dtype=dtype)
            bound = 1.0 / math.sqrt(widths[j])
            with torch.no_grad():
                lin.weight.copy_(
                    (2 * torch.rand(lin.weight.shape, generator=generator, dtype=dtype) - 1)
                    * bound
                )
                if bias:
                    lin.bias.copy_(
                        (2 * torch.rand(lin.bias.shape, generator=generator, dtype=dtype) - 1)
                        * bound
                    )
            modules.append(lin)
            if j < d - 1:
                modules.append(nn.ReLU())
        super().__init__(*modules)
        self.K, self.d, self.n = K, d, n

    def __repr__(self) -> str:
        return f"StandardNet(K={self.K}, d={self.d}, n={self.n})"


def relu_net(
    weights: Sequence[Tensor],
    biases: Sequence[Tensor | None] | None = None,
    *,
    dtype: torch.dtype | None = torch.float64,
) -> nn.Sequential:
    """An ``nn.Sequential`` ReLU network with the given weights (``Linear, ReLU, ..., Linear``).

    Args:
        weights: weight matrices ``W_j`` of shape ``(out_j, in_j)`` (PyTorch layout), the last one
            being the output layer.
        biases: one bias vector per layer, or ``None`` for zeros (biases are still created, so the
            rescalings of Theorem 5 can act on them).
        dtype: parameter dtype; ``None`` keeps the weights' dtype.

    Example:
        >>> net = relu_net([torch.ones(2, 2), torch.ones(1, 2)])   # the paper's Fig. 1
        >>> net(torch.tensor([[1.0, -1.0]], dtype=torch.float64))
        tensor([[0.]], dtype=torch.float64, grad_fn=<AddmmBackward0>)
    """
    if len(weights) == 0:
        raise ValueError("weights must hold at least one matrix, got an empty sequence")
    if biases is None:
        biases = [None] * len(weights)
    if len(biases) != len(weights):
        raise ValueError(
            f"biases must have one entry per layer ({len(weights)}), got {len(biases)}"
        )
    modules: list[nn.Module] = []
    prev = None
    for j, (W, b) in enumerate(zip(weights, biases)):
        W = torch.as_tensor(W)
        if W.ndim != 2:
            raise ValueError(f"weights[{j}] must be a matrix, got shape {tuple(W.shape)}")
        if prev is not None and W.shape[1] != prev:
            raise ValueError(
                f"weights[{j}] has {W.shape[1]} input columns but layer {j - 1} has {prev} outputs"
            )
        dt = dtype if dtype is not None else W.dtype
        lin = nn.Linear(W.shape[1], W.shape[0], dtype=dt)
        with torch.no_grad():
            lin.weight.copy_(W.to(dt))
            if b is None:
                lin.bias.zero_()
            else:
                b = torch.as_tensor(b).to(dt).reshape(-1)
                if b.shape[0] != W.shape[0]:
                    raise ValueError(
                        f"biases[{j}] must have {W.shape[0]} entries, got {b.shape[0]}"
                    )
                lin.bias.copy_(b)
        modules.append(lin)
        if j < len(weights) - 1:
            modules.append(nn.ReLU())
        prev = W.shape[0]
    return nn.Sequential(*modules)


def linear_layers(net: nn.Module) -> list[nn.Linear]:
    """The ``Linear`` layers of a ReLU network ``Linear, ReLU, ..., Linear``, checking its form.

    Raises:
        TypeError: if ``net`` is not an ``nn.Sequential`` alternating ``Linear`` and ``ReLU`` and
            ending with a ``Linear``.

    Example:
        >>> [lin.out_features for lin in linear_layers(StandardNet(3, 3, 4))]
        [4, 4, 1]
    """
    if not isinstance(net, nn.Sequential):
        raise TypeError(
            "net must be an nn.Sequential of Linear and ReLU (Linear, ReLU, ..., Linear), "
            f"got {type(net).__name__}"
        )
    mods = list(net)
    layers: list[nn.Linear] = []
    expect_linear = True
    for i, m in enumerate(mods):
        if expect_linear:
            if not isinstance(m, nn.Linear):
                raise TypeError(
                    f"net[{i}] must be nn.Linear (the form is Linear, ReLU, ..., Linear), "
                    f"got {type(m).__name__}"
                )
            if layers and m.in_features != layers[-1].out_features:
                raise TypeError(
                    f"net[{i}] has in_features={m.in_features} but the previous Linear has "
                    f"out_features={layers[-1].out_features}"
                )
            layers.append(m)
        elif not isinstance(m, nn.ReLU):
            raise TypeError(
                f"net[{i}] must be nn.ReLU (the form is Linear, ReLU, ..., Linear), "
                f"got {type(m).__name__}"
            )
        expect_linear = not expect_linear
    if not layers or expect_linear:
        raise TypeError("net must end with an nn.Linear output layer (Linear, ReLU, ..., Linear)")
    return layers


def dropout_layer_widths(net: nn.Module) -> list[int]:
    """Widths of the dropped layers: the inputs, then every hidden layer (the output is kept).

    Helmbold & Long drop every non-output node, inputs included
    (``docs/papers/helmbold2017.md``, "Setting").

    Example:
        >>> dropout_layer_widths(StandardNet(K=2, d=3, n=4))
        [2, 4, 4]
    """
    layers = linear_layers(net)
    return [layers[0].in_features] + [lin.out_features for lin in layers[:-1]]


def num_dropout_nodes(net: nn.Module) -> int:
    """Number of nodes that dropout can drop: inputs plus hidden units.

    Example:
        >>> num_dropout_nodes(StandardNet(K=5, d=2, n=5))
        10
    """
    return sum(dropout_layer_widths(net))
