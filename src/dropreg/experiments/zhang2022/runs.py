"""Trained runs of the Zhang, Zhou, Xu 2022 claims, built from settings and a generator.

- :func:`train_regression` -- the 1-D regression of the paper's Sec. 4 (width-200 two-layer ReLU
  net, n = 12, full-batch GD with and without dropout), float64, vectorised over runs, with the
  parameters captured when each run's clean training loss first reaches a common target;
- :func:`train_mnist1d` -- the MNIST-1D MLP (SGD, momentum 0.9, batch 100), optionally stopped at
  a target clean training loss; the public trainer of ``benchmarks/bench_curvature.py``;
- :func:`sgd_window` -- Feng & Tu's protocol for the variance-flatness relation: train until the
  training error is zero, go on for a burn-in, then record one hidden layer's weights over a
  window of SGD steps.

Every random number (data noise, initialisation, minibatch order, dropout masks) comes from the
generator passed in; nothing here seeds or caches anything.

Example:
    >>> g = torch.Generator()
    >>> X, y = regression_data(12, g)
    >>> X.shape, y.shape, X.dtype
    (torch.Size([12, 1]), torch.Size([12, 1]), torch.float64)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from dropreg._random import bernoulli_keep, seed_from
from dropreg.experiments._series import integrated_autocorrelation_time

__all__ = [
    "half_mse", "regression_data", "regression_net", "RegressionSettings", "RegressionRun",
    "train_regression", "mnist1d_mlp", "forward_with_masks", "train_mnist1d",
    "Mnist1dSettings", "Mnist1dRun", "train_mnist1d_runs", "WindowSettings", "SgdWindow",
    "sgd_window", "integrated_autocorrelation_time",
]


def half_mse(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``(1/n) sum_i 1/2 (f(x_i) - y_i)^2``, the loss of the paper's regression experiments."""
    return 0.5 * ((out - y) ** 2).sum(-1).mean()


def _stream(generator: torch.Generator) -> torch.Generator:
    """An independent generator derived from ``generator`` (one per run or purpose)."""
    return torch.Generator().manual_seed(seed_from(generator))


# --------------------------------------------------------------------------------------------
# 1-D regression: f(x) = sum_j a_j ReLU(w_j x + b_j), full-batch GD on half-MSE
# --------------------------------------------------------------------------------------------
def regression_data(n_points: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``x = linspace(-1, 1, n)``, ``y = sin 3x + 0.3 N(0, 1)``, as float64 columns."""
    X = torch.linspace(-1, 1, n_points, dtype=torch.float64)
    y = torch.sin(3 * X) + 0.3 * torch.randn(n_points, generator=generator, dtype=torch.float64)
    return X[:, None], y[:, None]


def regression_net(w: torch.Tensor, b: torch.Tensor, a: torch.Tensor, p: float) -> nn.Module:
    """The 2-layer ReLU net as an ``nn.Module`` (float64) with dropout ``p`` on the hidden layer.

    Example:
        >>> net = regression_net(torch.ones(3), torch.zeros(3), torch.ones(3), 0.2)
        >>> float(net.eval()(torch.tensor([[2.0]], dtype=torch.float64)).detach())
        6.0
    """
    width = w.shape[0]
    net = nn.Sequential(nn.Linear(1, width), nn.ReLU(), nn.Dropout(p),
                        nn.Linear(width, 1, bias=False)).double()
    with torch.no_grad():
        net[0].weight.copy_(w[:, None])
        net[0].bias.copy_(b)
        net[3].weight.copy_(a[None, :])
    return net


@dataclass(frozen=True)
class RegressionSettings:
    """The regression runs: ``replicates`` independent inits (one mask stream each) per drop
    rate, ``steps`` full-batch steps; the plain run's parameters are kept every ``check_every``
    steps to find where its clean loss first reaches each dropout run's final clean loss."""

    replicates: int = 3
    steps: int = 40000
    lr: float = 0.05
    drops: tuple[float, ...] = (0.0, 0.2)
    width: int = 200
    n_points: int = 12
    check_every: int = 50


@dataclass(frozen=True)
class RegressionRun:
    """One trained regression net after ``steps`` steps, with its clean training ``loss``.

    For a dropout run, ``matched`` is the plain-GD net of the same replicate (same init) at the
    first checked step (``matched_step``) where its clean loss (``matched_loss``) was at most
    this run's final clean loss (None if it never was); None for plain runs.
    """

    replicate: int
    p: float
    net: nn.Module
    loss: float
    matched: nn.Module | None = None
    matched_step: int | None = None
    matched_loss: float | None = None


def train_regression(settings: RegressionSettings, generator: torch.Generator
                     ) -> tuple[tuple[torch.Tensor, torch.Tensor], list[RegressionRun]]:
    """Full-batch (dropout) GD on the half-MSE for every (replicate, drop) at once.

    Per-example masks on the hidden layer, as ``nn.Dropout``. Init ``w, b ~ N(0, 1/2)``,
    ``a ~ N(0, 1/width)``; the same init for every drop rate of a replicate. Float64 throughout
    (the gradients are autograd's, of all runs' summed losses).

    Example:
        >>> s = RegressionSettings(replicates=1, steps=20, width=8, n_points=5, check_every=5)
        >>> data, runs = train_regression(s, torch.Generator())
        >>> [(r.replicate, r.p) for r in runs], runs[0].matched is None
        ([(0, 0.0), (0, 0.2)], True)
    """
    s, dt = settings, torch.float64
    X, y = regression_data(s.n_points, generator)
    x, t = X[:, 0], y[:, 0]
    runs = [(r, p) for r in range(s.replicates) for p in s.drops]
    inits = []
    for _ in range(s.replicates):
        wb = torch.randn(s.width, 2, generator=generator, dtype=dt) * math.sqrt(0.5)
        a = torch.randn(s.width, generator=generator, dtype=dt) * math.sqrt(1.0 / s.width)
        inits.append((wb, a))
    W = torch.stack([inits[r][0][:, 0] for r, _ in runs]).requires_grad_()
    B = torch.stack([inits[r][0][:, 1] for r, _ in runs]).requires_grad_()
    A = torch.stack([inits[r][1] for r, _ in runs]).requires_grad_()
    keep = torch.tensor([1.0 - p for _, p in runs], dtype=dt)[:, None, None]
    masks = _stream(generator)
    R, n = len(runs), s.n_points
    plain = [i for i, (_, p) in enumerate(runs) if p == 0.0]
    history = []  # (step, clean losses, W, B, A) of the plain runs

    def clean_losses() -> torch.Tensor:
        with torch.no_grad():
            out = ((x[None, :, None] * W[:, None, :] + B[:, None, :]).clamp_min(0)
                   * A[:, None, :]).sum(-1)
            return 0.5 * ((out - t) ** 2).mean(1)

    for step in range(s.steps):
        if plain and step % s.check_every == 0:
            history.append((step, clean_losses()[plain],
                            *(v.detach()[plain].clone() for v in (W, B, A))))
        h = (x[None, :, None] * W[:, None, :] + B[:, None, :]).clamp_min(0)
        m = bernoulli_keep((R, n, s.width), keep, generator=masks, dtype=dt) / keep
        out = (h * m * A[:, None, :]).sum(-1)
        loss = (0.5 * ((out - t) ** 2).mean(1)).sum()
        gW, gB, gA = torch.autograd.grad(loss, (W, B, A))
        with torch.no_grad():
            W -= s.lr * gW
            B -= s.lr * gB
            A -= s.lr * gA
    final = clean_losses()
    if plain:
        history.append((s.steps, final[plain], *(v.detach()[plain].clone() for v in (W, B, A))))
    result = []
    for i, (r, p) in enumerate(runs):
        net = regression_net(W[i].detach(), B[i].detach(), A[i].detach(), p)
        hit = None
        if p > 0 and (r, 0.0) in runs:
            j = plain.index(runs.index((r, 0.0)))
            hit = next((hst for hst in history if float(hst[1][j]) <= float(final[i])), None)
        if hit is None:
            result.append(RegressionRun(r, p, net, float(final[i])))
        else:
            j = plain.index(runs.index((r, 0.0)))
            result.append(RegressionRun(r, p, net, float(final[i]),
                                        regression_net(hit[2][j], hit[3][j], hit[4][j], 0.0),
                                        hit[0], float(hit[1][j])))
    return (X, y), result


# --------------------------------------------------------------------------------------------
# MNIST-1D MLP (the paper's A.7 experiments on built-in data)
# --------------------------------------------------------------------------------------------
def mnist1d_mlp(width: int, p: float, generator: torch.Generator,
                dtype: torch.dtype = torch.float64) -> nn.Module:
    """MLP ``40 - width - width - 10`` with ReLU and dropout ``p`` after each hidden layer,
    initialised as ``nn.Linear`` does (uniform in ``+- 1/sqrt(fan_in)``) from ``generator``.

    Example:
        >>> net = mnist1d_mlp(8, 0.2, torch.Generator())
        >>> net(torch.zeros(3, 40, dtype=torch.float64)).shape
        torch.Size([3, 10])
    """
    net = nn.Sequential(nn.Linear(40, width), nn.ReLU(), nn.Dropout(p), nn.Linear(width, width),
                        nn.ReLU(), nn.Dropout(p), nn.Linear(width, 10)).to(dtype)
    with torch.no_grad():
        for layer in net:
            if isinstance(layer, nn.Linear):
                bound = 1.0 / math.sqrt(layer.in_features)
                layer.weight.uniform_(-bound, bound, generator=generator)
                layer.bias.uniform_(-bound, bound, generator=generator)
    return net


def forward_with_masks(net: nn.Sequential, x: torch.Tensor,
                       generator: torch.Generator) -> torch.Tensor:
    """``net(x)`` in training mode with each ``nn.Dropout`` replaced by an inverted-dropout mask
    drawn from ``generator`` (``nn.Dropout`` itself can only use the global generator).

    Example:
        >>> net = nn.Sequential(nn.Identity(), nn.Dropout(0.5))
        >>> out = forward_with_masks(net, torch.ones(1, 1000), torch.Generator())
        >>> sorted(out.unique().tolist())
        [0.0, 2.0]
    """
    for layer in net:
        if isinstance(layer, nn.Dropout):
            if layer.p > 0:
                keep = 1.0 - layer.p
                x = x * bernoulli_keep(x.shape, keep, generator=generator, dtype=x.dtype) / keep
        else:
            x = layer(x)
    return x


def clean_loss(net: nn.Module, X: torch.Tensor, y: torch.Tensor) -> float:
    """Cross-entropy of the net without dropout (eval mode) on ``(X, y)``."""
    was = net.training
    net.eval()
    with torch.no_grad():
        value = float(nn.functional.cross_entropy(net(X), y))
    net.train(was)
    return value


def train_mnist1d(X: torch.Tensor, y: torch.Tensor, width: int, p: float, epochs: int,
                  generator: torch.Generator, *, target_loss: float | None = None,
                  lr: float = 0.05, momentum: float = 0.9, batch: int = 100,
                  dtype: torch.dtype = torch.float64) -> tuple[nn.Module, int]:
    """Train :func:`mnist1d_mlp` with SGD (momentum) on the cross-entropy for up to ``epochs``
    epochs; with ``target_loss``, stop after the first epoch whose clean training loss is at most
    the target. Returns the net (eval mode) and the number of epochs run.

    Example:
        >>> g = torch.Generator()
        >>> X, y = torch.randn(50, 40, generator=g), torch.randint(0, 10, (50,), generator=g)
        >>> net, epochs = train_mnist1d(X, y, 16, 0.2, 1, g)
        >>> not net.training, net(X.double()).shape, epochs
        (True, torch.Size([50, 10]), 1)
    """
    X = X.to(dtype)
    net = mnist1d_mlp(width, p, _stream(generator), dtype)
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=momentum)
    order, masks = _stream(generator), _stream(generator)
    n = X.shape[0]
    net.train()
    done = 0
    for _ in range(epochs):
        perm = torch.randperm(n, generator=order)
        for i in range(0, n, batch):
            idx = perm[i:i + batch]
            loss = nn.functional.cross_entropy(forward_with_masks(net, X[idx], masks), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        done += 1
        if target_loss is not None and clean_loss(net, X, y) <= target_loss:
            break
    return net.eval(), done


@dataclass(frozen=True)
class Mnist1dSettings:
    """The MNIST-1D runs: ``replicates`` independent pairs (plain, dropout ``p``) trained on the
    first ``n_train`` examples until the clean training loss reaches ``target_loss`` (at most
    ``max_epochs``)."""

    replicates: int = 3
    n_train: int = 1000
    width: int = 128
    p: float = 0.2
    max_epochs: int = 200
    target_loss: float = 0.04
    lr: float = 0.05
    batch: int = 100


@dataclass(frozen=True)
class Mnist1dRun:
    """One MNIST-1D net trained to the target loss (``reached`` False if it never got there)."""

    replicate: int
    p: float
    net: nn.Module
    epochs: int
    loss: float
    reached: bool


def train_mnist1d_runs(settings: Mnist1dSettings, generator: torch.Generator
                       ) -> tuple[tuple[torch.Tensor, ...], list[Mnist1dRun]]:
    """Each replicate's plain and dropout nets, each stopped at the common target loss.

    Returns ``(X, y, X_test, y_test)`` (float64 inputs) and the runs.
    """
    from dropreg.data import load_mnist1d

    s = settings
    ds = load_mnist1d()
    X, y = ds.X_train[:s.n_train].double(), ds.y_train[:s.n_train]
    runs = []
    for r in range(s.replicates):
        for p in (0.0, s.p):
            net, epochs = train_mnist1d(X, y, s.width, p, s.max_epochs, _stream(generator),
                                        target_loss=s.target_loss, lr=s.lr, batch=s.batch)
            loss = clean_loss(net, X, y)
            runs.append(Mnist1dRun(r, p, net, epochs, loss, loss <= s.target_loss))
    return (X, y, ds.X_test.double(), ds.y_test), runs


# --------------------------------------------------------------------------------------------
# Feng & Tu's protocol: SGD trajectory of one hidden layer after the training error is zero
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class WindowSettings:
    """Train (plain or dropout ``p``) SGD without momentum until the training error is zero (at
    most ``max_epochs``), go on for ``burn_in`` steps (the loss settles: Feng & Tu 2021 measure
    in this exploration phase, not right after the error reaches zero), then record layer
    ``layer``'s weights every ``every`` steps over ``window`` steps."""

    replicates: int = 3
    n_train: int = 1000
    width: int = 64
    drops: tuple[float, ...] = (0.0, 0.1)
    lr: float = 0.1
    batch: int = 50
    max_epochs: int = 300
    window: int = 1000
    every: int = 5
    layer: str = "3.weight"
    burn_in: int = 3000


@dataclass(frozen=True)
class SgdWindow:
    """One trajectory window: the net at the window's end, the snapshots ``(T, P_layer)`` of the
    layer, and the epoch at which the training error first reached zero (None: never)."""

    replicate: int
    p: float
    net: nn.Module
    snapshots: torch.Tensor
    zero_error_epoch: int | None
    train_error: float


def sgd_window(settings: WindowSettings, generator: torch.Generator
               ) -> tuple[tuple[torch.Tensor, torch.Tensor], list[SgdWindow]]:
    """Every replicate's plain and dropout trajectory windows (float64)."""
    from dropreg.data import load_mnist1d

    s = settings
    ds = load_mnist1d()
    X, y = ds.X_train[:s.n_train].double(), ds.y_train[:s.n_train]
    n = X.shape[0]
    out = []
    for r in range(s.replicates):
        init = seed_from(generator)
        for p in s.drops:
            g = torch.Generator().manual_seed(init)  # same init and batch order for each p
            net = mnist1d_mlp(s.width, p, _stream(g))
            order, masks = _stream(g), _stream(g)
            opt = torch.optim.SGD(net.parameters(), lr=s.lr)
            param = dict(net.named_parameters())[s.layer]
            zero_at, snaps, step, epoch, err = None, [], 0, 0, 1.0
            while True:
                perm = torch.randperm(n, generator=order)
                for i in range(0, n - s.batch + 1, s.batch):
                    idx = perm[i:i + s.batch]
                    loss = nn.functional.cross_entropy(forward_with_masks(net, X[idx], masks),
                                                       y[idx])
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                    if zero_at is not None:
                        step += 1
                        if step > s.burn_in and (step - s.burn_in) % s.every == 0:
                            snaps.append(param.detach().reshape(-1).clone())
                        if step >= s.burn_in + s.window:
                            break
                epoch += 1
                if zero_at is not None and step >= s.burn_in + s.window:
                    break
                if zero_at is None:
                    with torch.no_grad():
                        err = float((net.eval()(X).argmax(1) != y).double().mean())
                    net.train()
                    if err == 0.0:
                        zero_at = epoch
                    elif epoch >= s.max_epochs:
                        break
            out.append(SgdWindow(r, p, net.eval(), torch.stack(snaps) if snaps else
                                 torch.empty(0, param.numel(), dtype=torch.float64), zero_at,
                                 err))
    return (X, y), out
