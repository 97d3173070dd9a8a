"""Spectral density by stochastic Lanczos quadrature (SLQ; Ghorbani, Krishnan, Xiao 2019).

For a Rademacher probe ``v / ||v||``, ``m`` Lanczos steps give the Gauss quadrature
``sum_k w_k delta(t - theta_k)`` of the probe's spectral measure (``theta_k`` the Ritz values,
``w_k`` the squared first components of the tridiagonal matrix's eigenvectors). Averaging over
probes estimates the empirical spectral density ``(1/P) sum_i delta(t - lambda_i)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from dropreg._checks import check_int
from dropreg._random import rademacher
from dropreg.curvature.lanczos import Operator, as_operator, lanczos_tridiagonal

__all__ = ["SpectralDensity", "spectral_density"]


@dataclass(frozen=True)
class SpectralDensity:
    """Quadrature nodes and weights of each probe (each row's weights sum to 1).

    Example:
        >>> A = torch.diag(torch.tensor([0.0, 0.0, 1.0, 3.0], dtype=torch.float64))
        >>> d = spectral_density(A, 2, 4, generator=torch.Generator().manual_seed(0))
        >>> len(d.nodes), d.num_params, [round(float(w.sum()), 12) for w in d.weights]
        (2, 4, [1.0, 1.0])
    """

    nodes: list[Tensor]
    weights: list[Tensor]
    num_params: int

    def evaluate(self, grid: Tensor, sigma: float) -> Tensor:
        """Gaussian-broadened density on ``grid`` (integrates to 1 over the real line).

        Example:
            >>> A = torch.diag(torch.tensor([0.0, 0.0, 1.0, 3.0], dtype=torch.float64))
            >>> d = spectral_density(A, 2, 4, generator=torch.Generator().manual_seed(0))
            >>> grid = torch.linspace(-3.0, 6.0, 2001, dtype=torch.float64)
            >>> round(float(torch.trapezoid(d.evaluate(grid, 0.2), grid)), 6)
            1.0
        """
        if not sigma > 0:
            raise ValueError(f"sigma must be > 0, got {sigma}")
        grid = grid.double()
        out = torch.zeros_like(grid)
        for th, w in zip(self.nodes, self.weights):
            z = (grid[:, None] - th[None, :]) / sigma
            out += (w[None, :] * torch.exp(-0.5 * z**2)).sum(1)
        return out / (len(self.nodes) * sigma * math.sqrt(2 * math.pi))

    def moment(self, k: int) -> float:
        """Estimate of ``(1/P) tr(A^k)`` (exact for ``k < 2m`` per probe, up to probe noise).

        Example:
            Rademacher probes of a diagonal matrix have no probe noise:

            >>> A = torch.diag(torch.tensor([0.0, 0.0, 1.0, 3.0], dtype=torch.float64))
            >>> d = spectral_density(A, 2, 4, generator=torch.Generator().manual_seed(0))
            >>> round(d.moment(0), 10), round(d.moment(2), 10)  # 1 and (1 + 9) / 4
            (1.0, 2.5)
        """
        return float(sum((w * th**k).sum() for th, w in zip(self.nodes, self.weights))
                     / len(self.nodes))


def spectral_density(
    op: Operator | Tensor,
    num_probes: int = 4,
    lanczos_steps: int = 80,
    *,
    generator: torch.Generator | None = None,
) -> SpectralDensity:
    """Spectral density of a symmetric operator by stochastic Lanczos quadrature.

    Uses ``num_probes * lanczos_steps`` operator products (fewer on invariant subspaces).

    Example:
        >>> A = torch.diag(torch.tensor([0.0, 0.0, 1.0, 3.0], dtype=torch.float64))
        >>> d = spectral_density(A, 2, 4, generator=torch.Generator().manual_seed(0))
        >>> round(d.moment(1), 10)  # tr(A)/P exactly for Rademacher probes of a diagonal matrix
        1.0
    """
    matvec, n, dtype = as_operator(op)
    device = getattr(op, "device", None) if not isinstance(op, Tensor) else op.device
    check_int("num_probes", num_probes)
    check_int("lanczos_steps", lanczos_steps)
    nodes, weights = [], []
    for _ in range(num_probes):
        v = rademacher((n,), generator=generator, dtype=dtype, device=device)
        a, b, _ = lanczos_tridiagonal(matvec, v, min(lanczos_steps, n))
        T = torch.diag(a) + torch.diag(b, 1) + torch.diag(b, -1)
        th, S = torch.linalg.eigh(T)
        nodes.append(th)
        weights.append(S[0] ** 2)
    return SpectralDensity(nodes, weights, n)
