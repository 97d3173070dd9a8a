"""Minibatch SGD on a one-hidden-layer linear net with sampled dropout-type masks.

"Dropout is SGD on its expected objective" (Pal et al. 2020; ``docs/papers/pal2020.md``,
"Expected objective of Dropout"): the
gradient of the sampled loss is an unbiased estimate of the gradient of
:func:`~dropreg.linear.expected_loss`. This trainer draws one mask per example from any mask law,
takes plain SGD steps with a constant-then-``1/t`` step schedule, and records the exact expected
objective along the way, so runs can be compared with the closed forms.

Example:
    >>> import torch
    >>> from dropreg.masks import Bernoulli
    >>> g = torch.Generator().manual_seed(0)
    >>> X = torch.randn(64, 3, generator=g, dtype=torch.float64)
    >>> Y = X @ torch.randn(3, 2, generator=g, dtype=torch.float64)
    >>> run = train_masked_sgd(X, Y, 4, Bernoulli(0.2), steps=200, lr=0.05, generator=g)
    >>> run.objective[-1] < run.objective[0]
    True
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from dropreg._checks import check_int
from dropreg.linear.objective import expected_objective_from_moments, normalized_covariance_of

__all__ = ["SGDRun", "train_masked_sgd", "masked_loss_grad"]


@dataclass(frozen=True)
class SGDRun:
    """Result of :func:`train_masked_sgd`.

    Attributes:
        U, V: final factors (``(D, r)``, ``(d, r)``).
        steps: the steps at which the objective was recorded.
        objective: exact expected objective ``E_z loss`` at those steps.
        seconds: wall time of the SGD loop, evaluations excluded.
        lr: step size of each recorded step.
        times: cumulative SGD wall time (evaluations excluded) at each recorded step.
        plain_loss: training loss without masks, ``(1/N)||Y - X V U^T||^2``, at those steps.

    Example:
        The expected objective is the plain loss plus a nonnegative regularizer:

        >>> from dropreg.masks import Blocks
        >>> X = torch.eye(4, dtype=torch.float64) * 2
        >>> run = train_masked_sgd(X, X[:, :2], 4, Blocks(0.5, 2), steps=10, lr=0.01,
        ...                        batch_size=4, generator=torch.Generator().manual_seed(0))
        >>> all(o >= loss for o, loss in zip(run.objective, run.plain_loss)), len(run.steps)
        (True, 11)
    """

    U: Tensor
    V: Tensor
    steps: list[int]
    objective: list[float]
    seconds: float
    lr: list[float]
    times: list[float]
    plain_loss: list[float]


def masked_loss_grad(U: Tensor, V: Tensor, X: Tensor, Y: Tensor, zs: Tensor
                     ) -> tuple[Tensor, Tensor]:
    """Gradients in ``(U, V)`` of ``(1/B) sum_b ||y_b - U diag(zs_b) V^T x_b||^2`` with scaled
    masks ``zs = z / mu`` (one row per example); an unbiased estimate of the gradient of the
    expected loss when ``z`` is drawn from the law.

    Example:
        >>> import torch
        >>> o = torch.ones(1, 1)
        >>> masked_loss_grad(o, o, o, 2 * o, o)        # d/du (2 - u v)^2 = -2 (2 - 1) v
        (tensor([[-2.]]), tensor([[-2.]]))
    """
    H = (X @ V) * zs
    dP = (2.0 / X.shape[0]) * (H @ U.T - Y)
    return dP.T @ H, X.T @ ((dP @ U) * zs)


def train_masked_sgd(X: Tensor, Y: Tensor, width: int, law: Any, *, steps: int, lr: float,
                     batch_size: int = 256, decay_start: float = 0.3, decay_scale: float = 0.02,
                     init_scale: float = 0.1, eval_every: int | None = None,
                     generator: torch.Generator | None = None,
                     init: tuple[Tensor, Tensor] | None = None) -> SGDRun:
    """SGD on ``(1/B) sum_b ||y_b - U diag(z_b / mu) V^T x_b||^2`` with fresh masks ``z_b ~ law``.

    The sampled gradient is unbiased for the expected objective (``docs/papers/pal2020.md``,
    "Expected objective of Dropout"); the paper's experiment "SGD reaches the closed form" is run
    with this trainer.

    Step size: ``lr`` for the first ``decay_start`` fraction of the steps, then
    ``lr / (1 + (t - t_0) / (decay_scale * steps))`` (a ``1/t`` decay, which the Robbins-Monro
    conditions need for convergence to a minimizer rather than to a noise ball).

    Args:
        X: ``(N, d)`` inputs; Y: ``(N, D)`` targets (float64 recommended).
        width: hidden width ``r``.
        law: a mask law (``dropreg.masks``): ``sample``, ``mean``, ``normalized_covariance``.
        steps: number of SGD steps; lr: initial step size; batch_size: examples per step.
        init_scale: standard deviation of the random initial weights.
        eval_every: record the exact objective every this many steps (default ``steps // 50``).
        generator: randomness of the initialization, batches and masks.
        init: optional initial ``(U, V)``.

    Example:
        >>> import torch
        >>> from dropreg.masks import Blocks
        >>> X = torch.eye(4, dtype=torch.float64) * 2
        >>> run = train_masked_sgd(X, X[:, :2], 4, Blocks(0.5, 2), steps=10, lr=0.01,
        ...                        batch_size=4, generator=torch.Generator().manual_seed(0))
        >>> len(run.steps), run.U.shape
        (11, torch.Size([2, 4]))
    """
    steps = check_int("steps", steps)
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr}")
    if X.dim() != 2 or Y.dim() != 2 or X.shape[0] != Y.shape[0]:
        raise ValueError(f"X and Y must be (N, d) and (N, D), got {tuple(X.shape)}, "
                         f"{tuple(Y.shape)}")
    dtype = X.dtype
    N, d = X.shape
    D = Y.shape[1]
    r = width
    gen = generator
    if init is None:
        U = init_scale * torch.randn(D, r, generator=gen, dtype=dtype)
        V = init_scale * torch.randn(d, r, generator=gen, dtype=dtype)
    else:
        U, V = init[0].clone().to(dtype), init[1].clone().to(dtype)
    mu = law.mean(r).to(dtype)
    C = normalized_covariance_of(law, r).to(dtype)
    M = Y.T @ X / N
    sigma = X.T @ X / N
    yy = float((Y**2).sum()) / N
    every = eval_every or max(1, steps // 50)
    rec_steps, rec_lr, rec_t = [0], [lr], [0.0]
    rec_obj = [expected_objective_from_moments(U, V, M, sigma, yy, C)]
    zero = torch.zeros_like(C)
    rec_plain = [expected_objective_from_moments(U, V, M, sigma, yy, zero)]
    t_start = int(decay_start * steps)
    tau = max(decay_scale * steps, 1.0)
    elapsed = 0.0
    B = min(batch_size, N)
    for t in range(steps):
        tic = time.perf_counter()
        eta = lr if t < t_start else lr / (1.0 + (t - t_start) / tau)
        idx = torch.randint(0, N, (B,), generator=gen)
        Xb, Yb = X[idx], Y[idx]
        z = law.sample((B,), r, generator=gen, dtype=dtype) / mu
        gU, gV = masked_loss_grad(U, V, Xb, Yb, z)
        U = U - eta * gU
        V = V - eta * gV
        elapsed += time.perf_counter() - tic
        if (t + 1) % every == 0 or t + 1 == steps:
            rec_steps.append(t + 1)
            rec_obj.append(expected_objective_from_moments(U, V, M, sigma, yy, C))
            rec_lr.append(eta)
            rec_t.append(elapsed)
            rec_plain.append(expected_objective_from_moments(U, V, M, sigma, yy, zero))
    return SGDRun(U=U, V=V, steps=rec_steps, objective=rec_obj, seconds=elapsed, lr=rec_lr,
                  times=rec_t, plain_loss=rec_plain)
