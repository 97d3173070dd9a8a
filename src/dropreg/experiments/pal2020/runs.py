"""Trained runs of the Pal et al. 2020 claims: typed settings, typed runs, pure builders.

Pal, Lane, Vidal, Haeffele (CVPR 2020), "On the Regularization Properties of Structured
Dropout": SGD with sampled masks on a one-hidden-layer linear net (Sec. 3 and Sec. 5, the
convergence experiments), and a deep net with Dropout or DropBlock on its last hidden layer
(Sec. 4). Every builder takes its settings and a ``torch.Generator``; nothing is cached here.

Example:
    >>> import torch
    >>> s = ProblemSettings(n=64, n_test=8, d=3, D=2, rank=2, noise=0.1)
    >>> prob = regression_problem(s, torch.Generator())
    >>> prob.X.shape, bool(torch.allclose(prob.sigma, torch.eye(3, dtype=torch.float64)))
    (torch.Size([64, 3]), True)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from dropreg._random import mean_and_stderr

__all__ = ["ProblemSettings", "Problem", "regression_problem", "law_of", "objective_tensor",
           "law_minimum", "basin_minimum", "window_statistics", "WindowStats", "StationaryChain",
           "stationary_chain", "step_size_limit", "init_mlp", "LastLayerRun", "train_last_layer"]

F64 = torch.float64


@dataclass(frozen=True)
class ProblemSettings:
    """Whitened synthetic regression ``y = A x + noise``, ``A`` of rank ``rank`` (Sec. 5)."""

    n: int
    n_test: int
    d: int
    D: int
    rank: int
    noise: float


@dataclass(frozen=True)
class Problem:
    """Training and test data with their sufficient statistics (``M = Y^T X / N``,
    ``sigma = X^T X / N``, ``yy = ||Y||^2 / N``, ``c0 = yy - ||M||_F^2`` the loss no weights
    remove on whitened data)."""

    X: Tensor
    Y: Tensor
    X_test: Tensor
    Y_test: Tensor
    M: Tensor
    sigma: Tensor
    yy: float
    c0: float


def regression_problem(settings: ProblemSettings, generator: torch.Generator) -> Problem:
    """Draw the whitened regression problem of ``settings`` from ``generator``."""
    from dropreg.data import synthetic_regression

    s = settings
    ds = synthetic_regression(s.n, s.n_test, d_in=s.d, d_out=s.D, rank=s.rank, noise=s.noise,
                              whiten=True, generator=generator)
    X, Y = ds.X_train, ds.y_train
    N = X.shape[0]
    M = Y.T @ X / N
    yy = float((Y**2).sum()) / N
    return Problem(X=X, Y=Y, X_test=ds.X_test, Y_test=ds.y_test, M=M, sigma=X.T @ X / N, yy=yy,
                   c0=yy - float((M**2).sum()))


def law_of(block_size: int, p: float) -> Any:
    """Dropout (``block_size = 1``) or fixed contiguous blocks of ``block_size`` units."""
    from dropreg.masks import Bernoulli, Blocks

    return Bernoulli(p) if block_size == 1 else Blocks(p, block_size)


def objective_tensor(U: Tensor, V: Tensor, problem: Problem, C: Tensor) -> Tensor:
    """The expected objective ``E_z (1/N)||Y - X V diag(z/mu) U^T||^2`` of a law with normalized
    covariance ``C`` (Pal et al. 2020, Sec. 3), as a differentiable tensor."""
    from dropreg.linear import induced_regularizer

    A = U @ V.T
    plain = problem.yy - 2.0 * (A * problem.M).sum() + ((A @ problem.sigma) * A).sum()
    return plain + induced_regularizer(U, V, C, problem.sigma)


def law_minimum(problem: Problem, law: Any, width: int, generator: torch.Generator,
                starts: int) -> float:
    """Minimum of ``law``'s expected objective over width-``width`` factors, by the independent
    L-BFGS search of :func:`dropreg.experiments._references.lbfgs_minimize` (any law, also
    those without a closed form, e.g. sliding-seed DropBlock)."""
    from dropreg.experiments._references import lbfgs_minimize
    from dropreg.linear import normalized_covariance_of

    C = normalized_covariance_of(law, width).to(F64)
    D, d = problem.M.shape
    value, _, _ = lbfgs_minimize(lambda U, V: objective_tensor(U, V, problem, C),
                                 ((D, width), (d, width)), generator, starts)
    return value


def basin_minimum(problem: Problem, law: Any, U: Tensor, V: Tensor
                  ) -> tuple[float, Tensor, Tensor]:
    """The local minimum ``(value, U*, V*)`` of ``law``'s expected objective that L-BFGS reaches
    from ``(U, V)`` (:func:`dropreg.experiments._references.lbfgs_descend`): the bottom of the
    basin an SGD iterate lies in (sliding-seed DropBlock's objective has several local minima,
    and flat directions that SGD crosses slowly)."""
    from dropreg.experiments._references import lbfgs_descend
    from dropreg.linear import normalized_covariance_of

    C = normalized_covariance_of(law, U.shape[1]).to(F64)
    return lbfgs_descend(lambda A, B: objective_tensor(A, B, problem, C), U, V)


@dataclass(frozen=True)
class WindowStats:
    """Mean of a recorded series over a final window, its standard error from ``batches``
    non-overlapping batch means (batch means absorb the autocorrelation of SGD iterates), and
    the spread (standard deviation) of the individual values."""

    mean: float
    stderr: float
    spread: float
    n: int
    batches: int


def window_statistics(values: list[float], batches: int = 10) -> WindowStats:
    """Statistics of ``values`` (the final window of a run) by ``batches`` batch means.

    Example:
        >>> w = window_statistics([1.0, 2.0] * 10, batches=5)
        >>> w.mean, w.stderr, w.n
        (1.5, 0.0, 20)
    """
    n = len(values)
    if n < 2 * batches:
        raise ValueError(f"values must hold at least 2 * batches = {2 * batches} numbers, got {n}")
    v = torch.tensor(values, dtype=F64)
    size = n // batches
    means = v[n - size * batches:].reshape(batches, size).mean(1)
    mean, se = mean_and_stderr(means)
    return WindowStats(mean=float(v[n - size * batches:].mean()), stderr=se,
                       spread=float(v.std()), n=n, batches=batches)


@dataclass(frozen=True)
class StationaryChain:
    """Constant-step SGD continued from a converged iterate: the exact expected objective every
    ``every`` steps, its mean after the burn-in with the batch-means standard error, and the
    integrated autocorrelation time ``tau`` (in recorded points) and effective sample count."""

    eta: float
    objective: list[float]
    every: int
    burn_in: int
    mean: float
    stderr: float
    tau: float
    ess: float


def stationary_chain(problem: Problem, law: Any, start: tuple[Tensor, Tensor], eta: float,
                     steps: int, batch: int, generator: torch.Generator, every: int = 10,
                     burn_in: float = 0.2, batches: int = 20) -> StationaryChain:
    """Run ``steps`` of constant-step SGD (step ``eta``, minibatch ``batch``, fresh masks) from
    ``start`` and average the expected objective over the last ``1 - burn_in`` of the chain
    (standard error from ``batches`` batch means)."""
    from dropreg.experiments._series import integrated_autocorrelation_time
    from dropreg.linear import train_masked_sgd

    run = train_masked_sgd(problem.X, problem.Y, start[0].shape[1], law, steps=steps, lr=eta,
                           batch_size=batch, decay_start=1.0, eval_every=every,
                           generator=generator, init=start)
    tail = run.objective[int(burn_in * len(run.objective)):]
    w = window_statistics(tail, batches=batches)
    tau = integrated_autocorrelation_time(torch.tensor(tail, dtype=F64))
    return StationaryChain(eta=eta, objective=run.objective, every=every,
                           burn_in=len(run.objective) - len(tail), mean=w.mean, stderr=w.stderr,
                           tau=tau, ess=len(tail) / tau)


def step_size_limit(coarse: StationaryChain, fine: StationaryChain) -> tuple[float, float]:
    """Richardson extrapolation to ``eta -> 0`` of two stationary means at ``eta`` and ``eta/2``:
    the stationary bias of constant-step SGD is ``c eta + O(eta^2)``, so ``2 E(eta/2) - E(eta)``
    removes its first-order term. Returns ``(limit, standard error)``.

    Example:
        >>> a = StationaryChain(0.2, [], 1, 0, mean=1.2, stderr=0.01, tau=1.0, ess=100.0)
        >>> b = StationaryChain(0.1, [], 1, 0, mean=1.1, stderr=0.01, tau=1.0, ess=100.0)
        >>> tuple(round(v, 4) for v in step_size_limit(a, b))
        (1.0, 0.0224)
    """
    if not math.isclose(fine.eta, coarse.eta / 2):
        raise ValueError(f"fine.eta must be coarse.eta / 2, got {fine.eta} and {coarse.eta}")
    return (2 * fine.mean - coarse.mean, math.sqrt(4 * fine.stderr**2 + coarse.stderr**2))


def init_mlp(sizes: tuple[int, ...], generator: torch.Generator) -> torch.nn.Sequential:
    """A float64 ReLU MLP with layer widths ``sizes``, initialised from ``generator`` as
    ``torch.nn.Linear`` does (weights and biases uniform in ``+-1/sqrt(fan_in)``)."""
    layers: list[torch.nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        lin = torch.nn.utils.skip_init(torch.nn.Linear, a, b, dtype=F64)
        bound = 1.0 / math.sqrt(a)
        with torch.no_grad():
            lin.weight.copy_((2 * torch.rand(b, a, generator=generator, dtype=F64) - 1) * bound)
            lin.bias.copy_((2 * torch.rand(b, generator=generator, dtype=F64) - 1) * bound)
        layers.append(lin)
        if i < len(sizes) - 2:
            layers.append(torch.nn.ReLU())
    return torch.nn.Sequential(*layers)


@dataclass(frozen=True)
class LastLayerRun:
    """A net trained with a mask law on its last hidden layer: the singular values of its
    training predictions, and its exact expected objective ``E`` (features held fixed)."""

    singular_values: Tensor
    objective: float


def train_last_layer(X: Tensor, Y: Tensor, width: int, hidden: int, block_size: int, p: float,
                     steps: int, generator: torch.Generator) -> LastLayerRun:
    """Adam (lr 3e-3, cosine schedule, full batch, fresh masks per example) on the squared loss
    of ``MLP(d-hidden-hidden-width) -> linear head`` with the mask law on the width-``width``
    features (Pal et al. 2020, Sec. 4)."""
    law = law_of(block_size, p)
    N, C = Y.shape
    feat = init_mlp((X.shape[1], hidden, hidden, width), generator)
    head = torch.nn.utils.skip_init(torch.nn.Linear, width, C, bias=False, dtype=F64)
    with torch.no_grad():
        head.weight.copy_((2 * torch.rand(C, width, generator=generator, dtype=F64) - 1)
                          / math.sqrt(width))
    opt = torch.optim.Adam([*feat.parameters(), *head.parameters()], lr=3e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(steps, 1))
    for _ in range(steps):
        z = law.sample((N,), width, generator=generator, dtype=F64) / (1 - p)
        loss = ((head(feat(X) * z) - Y) ** 2).sum() / N
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    with torch.no_grad():
        Phi = feat(X)
        A = head(Phi)
        k = block_size
        Ub = head.weight.T.reshape(width // k, k, C)
        Pb = Phi.T.reshape(width // k, k, N)
        reg = float(((Ub @ Ub.transpose(1, 2)) * (Pb @ Pb.transpose(1, 2))).sum())
        E = float(((Y - A) ** 2).sum()) / N + p / (1 - p) * reg / N
    return LastLayerRun(singular_values=torch.linalg.svdvals(A), objective=E)
