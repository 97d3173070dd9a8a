"""Stochastic trace and squared Frobenius norm of a symmetric operator, with standard errors.

* Hutchinson: ``tr(A) = E[z^T A z]`` for Rademacher ``z``; estimate = mean of ``num_matvecs``
  samples, s.e. = sample std / sqrt(num_matvecs).
* Hutch++ (Meyer, Musco, Musco, Woodruff 2021): with ``m = num_matvecs`` split in thirds,
  ``Q = orth(A S)`` for ``m/3`` Rademacher columns ``S``; ``tr(A) = tr(Q^T A Q) + tr of the
  deflated rest`` by Hutchinson with the last third. The s.e. is that of the Hutchinson part
  (the first part is exact given ``Q``); unbiased like Hutchinson, with far smaller variance for
  matrices with fast-decaying spectra such as Hessians.
* ``||A||_F^2 = E||A z||^2`` for Rademacher or Gaussian ``z``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from dropreg._checks import check_int
from dropreg._random import mean_and_stderr, rademacher
from dropreg.curvature.lanczos import Operator, as_operator

__all__ = ["TraceResult", "squared_frobenius", "stochastic_trace"]


@dataclass(frozen=True)
class TraceResult:
    """A stochastic estimate: ``estimate``, its standard error ``stderr``, ``num_matvecs`` used,
    the per-probe ``samples`` of the stochastic part and the ``method``.

    Example:
        >>> A = torch.diag(torch.arange(1.0, 11.0, dtype=torch.float64))
        >>> r = stochastic_trace(A, 30, generator=torch.Generator().manual_seed(0))
        >>> r.method, r.num_matvecs, r.samples.shape, r.estimate
        ('hutchinson', 30, torch.Size([30]), 55.0)
    """

    estimate: float
    stderr: float
    num_matvecs: int
    samples: Tensor
    method: str


def _apply(matvec, Z: Tensor) -> Tensor:
    return torch.stack([matvec(c) for c in Z.T], dim=1)


def stochastic_trace(
    op: Operator | Tensor,
    num_matvecs: int = 100,
    method: Literal["hutchinson", "hutch++"] = "hutchinson",
    *,
    generator: torch.Generator | None = None,
) -> TraceResult:
    """Trace of a symmetric operator by Hutchinson or Hutch++ with its standard error.

    Args:
        op: a :class:`HessianOperator`, an object with ``matvec``/``shape``, or a square tensor.
        num_matvecs: operator products to spend (>= 2; >= 6 for Hutch++, used in thirds).
        method: ``"hutchinson"`` or ``"hutch++"``.
        generator: for the Rademacher probes.

    Example:
        >>> A = torch.diag(torch.arange(1.0, 11.0, dtype=torch.float64))
        >>> r = stochastic_trace(A, 30, generator=torch.Generator().manual_seed(0))
        >>> r.estimate, r.stderr  # Rademacher probes are exact for a diagonal matrix
        (55.0, 0.0)
        >>> g = torch.Generator().manual_seed(0)
        >>> round(stochastic_trace(A, 30, "hutch++", generator=g).estimate, 6)
        55.0
    """
    matvec, n, dtype = as_operator(op)
    device = getattr(op, "device", None) if not isinstance(op, Tensor) else op.device
    if method not in ("hutchinson", "hutch++"):
        raise ValueError(f"method must be 'hutchinson' or 'hutch++', got {method!r}")
    if method == "hutchinson":
        check_int("num_matvecs", num_matvecs, minimum=2)
        Z = rademacher((n, num_matvecs), generator=generator, dtype=dtype, device=device)
        s = (Z * _apply(matvec, Z)).sum(0).double()
        est, se = mean_and_stderr(s)
        return TraceResult(est, se, num_matvecs, s, method)
    if not isinstance(num_matvecs, int) or num_matvecs < 6:
        raise ValueError(f"num_matvecs must be an int >= 6 for hutch++, got {num_matvecs!r}")
    k = num_matvecs // 3
    k_h = num_matvecs - 2 * k
    S = rademacher((n, k), generator=generator, dtype=dtype, device=device)
    Q, _ = torch.linalg.qr(_apply(matvec, S))
    AQ = _apply(matvec, Q)
    exact = float(torch.trace(Q.T @ AQ))
    G = rademacher((n, k_h), generator=generator, dtype=dtype, device=device)
    G = G - Q @ (Q.T @ G)
    AG = _apply(matvec, G)
    AG = AG - Q @ (Q.T @ AG)
    s = (G * AG).sum(0).double()
    est, se = mean_and_stderr(s)
    return TraceResult(exact + est, se, 2 * k + k_h, s, method)


def squared_frobenius(
    op: Operator | Tensor, num_matvecs: int = 100, *, generator: torch.Generator | None = None
) -> TraceResult:
    """``||A||_F^2 = E||A z||^2`` (Rademacher ``z``) with its standard error.

    Example:
        >>> A = torch.tensor([[2.0, 1.0], [1.0, 3.0]], dtype=torch.float64)
        >>> r = squared_frobenius(A, 4000, generator=torch.Generator().manual_seed(0))
        >>> abs(r.estimate - 15.0) < 5 * r.stderr
        True
    """
    matvec, n, dtype = as_operator(op)
    device = getattr(op, "device", None) if not isinstance(op, Tensor) else op.device
    check_int("num_matvecs", num_matvecs, minimum=2)
    Z = rademacher((n, num_matvecs), generator=generator, dtype=dtype, device=device)
    s = (_apply(matvec, Z) ** 2).sum(0).double()
    est, se = mean_and_stderr(s)
    return TraceResult(est, se, num_matvecs, s, "hutchinson-frobenius")
