"""auto_trace (curvature/trace.py) against its definition in float64: the Hutchinson branch is
stochastic_trace, the deflated branch is tr(V^T A V) + Hutchinson on (I - P) A (I - P); and the
exact-variance formulas that the trace benchmark uses, against brute force and spreads."""

from __future__ import annotations

import importlib.util
import itertools
import math
import statistics
from pathlib import Path

import pytest
import torch

from dropreg._random import rademacher
from dropreg.curvature import (
    auto_trace,
    hutchinson_variance,
    lanczos_iteration,
    lanczos_tridiagonal,
    stochastic_trace,
)
from dropreg.curvature.trace import _auto_trace

R = 300  # seeds per statistical test
BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_curvature.py"


def _matrix(eigenvalues: torch.Tensor, seed: int = 0) -> torch.Tensor:
    n = eigenvalues.numel()
    U, _ = torch.linalg.qr(torch.randn(n, n, dtype=torch.float64,
                                       generator=torch.Generator().manual_seed(seed)))
    return U @ torch.diag(eigenvalues) @ U.T


def _outliers() -> torch.Tensor:
    """Five outliers (one negative) above a small bulk of 95: deflation's case."""
    bulk = 0.1 * torch.randn(95, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    return torch.cat([torch.tensor([20.0, 15.0, 10.0, -8.0, 5.0], dtype=torch.float64), bulk])


FLAT = torch.linspace(1.0, 2.0, 300, dtype=torch.float64)


class _Counted:
    """A dense symmetric matrix as an operator that counts its products."""

    def __init__(self, A: torch.Tensor) -> None:
        self.A, self.shape, self.dtype, self.num_matvecs = A, tuple(A.shape), A.dtype, 0

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        self.num_matvecs += 1
        return self.A @ v


def _bench():
    spec = importlib.util.spec_from_file_location("bench_curvature", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_hutchinson_variance_by_enumeration() -> None:
    """Over all 2^5 sign vectors, the variance of z^T A z is 2 (||A||_F^2 - sum a_ii^2)."""
    B = torch.randn(5, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    A = B + B.T
    q = torch.tensor([float(torch.tensor(z, dtype=torch.float64) @ A
                            @ torch.tensor(z, dtype=torch.float64))
                      for z in itertools.product([-1.0, 1.0], repeat=5)], dtype=torch.float64)
    assert float(q.mean()) == pytest.approx(float(A.trace()), abs=1e-12)
    assert hutchinson_variance(A) == pytest.approx(float(q.var(unbiased=False)), rel=1e-12)
    with pytest.raises(TypeError, match="A must be a Tensor"):
        hutchinson_variance([[1.0]])
    with pytest.raises(ValueError, match="symmetric"):
        hutchinson_variance(torch.tensor([[1.0, 2.0], [0.0, 1.0]], dtype=torch.float64))


def test_lanczos_iteration_is_lanczos_tridiagonal() -> None:
    """The step-by-step Lanczos gives the same alpha, beta and basis as lanczos_tridiagonal, and
    its last beta is the norm of the residual A q_j - alpha_j q_j - beta_(j-1) q_(j-1)."""
    A = _matrix(_outliers())
    v0 = torch.randn(100, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    a, b, Q = lanczos_tridiagonal(lambda v: A @ v, v0, 8)
    steps = list(lanczos_iteration(lambda v: A @ v, v0, 8))
    assert [s[0] for s in steps] == a.tolist() and [s[1] for s in steps[:-1]] == b.tolist()
    assert torch.equal(steps[-1][2], Q)
    r = A @ Q[-1] - a[-1] * Q[-1] - b[-1] * Q[-2]
    assert steps[-1][1] == pytest.approx(float(r.norm()), rel=1e-8)


def test_hutchinson_branch_is_stochastic_trace() -> None:
    """On a flat spectrum auto_trace is z^T A z followed by exactly the samples of
    stochastic_trace with N - 2 products from the same generator state, N products in all."""
    A = _Counted(_matrix(FLAT))
    for seed in range(3):
        A.num_matvecs = 0
        r = auto_trace(A, 60, generator=torch.Generator().manual_seed(seed))
        assert r.method == "auto:hutchinson" and r.num_matvecs == 60 == A.num_matvecs
        g = torch.Generator().manual_seed(seed)
        z = rademacher((300,), generator=g, dtype=torch.float64)
        h = stochastic_trace(A.A, 58, generator=g)
        assert torch.equal(r.samples[1:], h.samples)
        assert float(r.samples[0]) == pytest.approx(float(z @ A.A @ z), rel=1e-12)
        assert r.estimate == pytest.approx(float(r.samples.mean()), rel=1e-15)


def test_deflated_branch_equals_definition() -> None:
    """With the Lanczos basis V (first column z / sqrt(n)) the estimate is tr(V^T A V) plus the
    mean of g^T (I - P) A (I - P) g over the next Rademacher draws, by brute force; projecting V
    out removes ||T||_F^2 + 2 beta^2 of ||A||_F^2, the identity the stopping rule uses."""
    A = _matrix(_outliers())
    n = 100
    r, info = _auto_trace(A, 40, None, torch.Generator().manual_seed(4))
    k = info["steps"]
    assert r.method == "auto:deflated" and 3 <= k <= 20 and r.num_matvecs == 40
    g = torch.Generator().manual_seed(4)
    z = rademacher((n,), generator=g, dtype=torch.float64)
    G = rademacher((n, 40 - k), generator=g, dtype=torch.float64)
    V = info["basis"].T
    torch.testing.assert_close(V.T @ V, torch.eye(k, dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close(V[:, 0], z / math.sqrt(n), atol=1e-15, rtol=0)
    P = V @ V.T
    B = (torch.eye(n, dtype=torch.float64) - P) @ A @ (torch.eye(n, dtype=torch.float64) - P)
    samples = torch.stack([G[:, i] @ B @ G[:, i] for i in range(40 - k)])
    torch.testing.assert_close(r.samples, samples, rtol=1e-10, atol=1e-10)
    assert r.estimate == pytest.approx(float(torch.trace(V.T @ A @ V) + samples.mean()),
                                       abs=1e-9)
    a, b, _ = lanczos_tridiagonal(lambda v: A @ v, z, k + 1)
    T = torch.diag(a[:k]) + torch.diag(b[: k - 1], 1) + torch.diag(b[: k - 1], -1)
    removed = float(T.square().sum()) + 2 * float(b[k - 1]) ** 2
    assert float(B.square().sum()) == pytest.approx(float(A.square().sum()) - removed, rel=1e-9)


@pytest.mark.parametrize("eigs", [[5.0, -2.0, 1.0], [3.0]])
def test_deflated_is_exact_on_low_rank(eigs: list[float]) -> None:
    """Rank r with distinct eigenvalues: the Krylov space of z reaches the range of A in r + 1
    steps, so the residual operator is 0 and the estimate is the trace, with s.e. 0."""
    ev = torch.cat([torch.tensor(eigs, dtype=torch.float64), torch.zeros(50 - len(eigs),
                                                                         dtype=torch.float64)])
    A = _matrix(ev)
    for seed in range(5):
        r = auto_trace(A, 20, generator=torch.Generator().manual_seed(seed))
        assert r.method == "auto:deflated"
        assert r.estimate == pytest.approx(sum(eigs), abs=1e-10) and r.stderr < 1e-10


@pytest.mark.parametrize("case", ["outliers", "flat"])
def test_unbiased_and_exact_conditional_variance(case: str) -> None:
    """Over R seeds the mean is within 5 s.e. of the trace, and the benchmark's exact
    conditional MSE averaged over the seeds agrees with the plain spread of the estimates within
    5 of the spread's own s.e. (relative sqrt(2 / (R - 1)) = 8%); with outliers the variance is
    below a hundredth of Hutchinson's with the same products (measured: about 1/2000)."""
    ev = _outliers() if case == "outliers" else FLAT
    A = _matrix(ev)
    N = 40
    bench = _bench()
    diag, fro2 = A.diagonal().clone(), float(A.square().sum())
    est, mse = [], []
    for s in range(R):
        r, info = _auto_trace(A, N, None, torch.Generator().manual_seed(s))
        assert r.method == ("auto:deflated" if case == "outliers" else "auto:hutchinson")
        est.append(r.estimate)
        mse.append(bench.conditional_mse(info, lambda v: A @ v, diag, fro2, N))
    spread2 = statistics.variance(est)
    assert abs(statistics.mean(est) - float(ev.sum())) <= 5 * math.sqrt(spread2 / R)
    assert abs(statistics.mean(mse) - spread2) <= 5 * spread2 * math.sqrt(2 / (R - 1))
    if case == "outliers":
        assert spread2 < hutchinson_variance(A) / N / 100
    else:  # N - 1 Rademacher probes: exactly Hutchinson's variance with one probe fewer
        assert statistics.mean(mse) == pytest.approx(hutchinson_variance(A) / (N - 1), rel=0.01)


def test_auto_trace_errors() -> None:
    A = torch.eye(20, dtype=torch.float64)
    with pytest.raises(ValueError, match="lanczos_steps"):
        auto_trace(A, 20, lanczos_steps=19)
    with pytest.raises(ValueError, match="lanczos_steps"):
        auto_trace(A, 20, lanczos_steps=1)
    with pytest.raises(ValueError, match="num_matvecs"):
        auto_trace(A, 7)
