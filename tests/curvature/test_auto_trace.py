"""auto_trace (curvature/trace.py) against its definition in float64: the Hutchinson branch is
the pilots + stochastic_trace, the deflated branch is tr(V^T A V) + Hutchinson on (I - P) A (I - P)
over the other pilots and new probes, each with exactly num_matvecs products; the choice's
statistic; and the exact-variance formulas that the trace benchmark uses, against brute force
and spreads."""

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
from dropreg.curvature.trace import (
    AUTO_CONCENTRATION,
    AUTO_PILOT_PROBES,
    _auto_trace,
    spectral_concentration,
)

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
    """On a flat spectrum auto_trace is the four pilots' z^T A z followed by exactly the samples
    of stochastic_trace with N - 4 products from the same generator state: N probes for N
    products, none spent on the choice alone."""
    A = _Counted(_matrix(FLAT))
    for seed in range(3):
        A.num_matvecs = 0
        r = auto_trace(A, 60, generator=torch.Generator().manual_seed(seed))
        assert r.method == "auto:hutchinson" and r.num_matvecs == 60 == A.num_matvecs
        assert r.samples.numel() == 60
        g = torch.Generator().manual_seed(seed)
        Z = rademacher((300, AUTO_PILOT_PROBES), generator=g, dtype=torch.float64)
        h = stochastic_trace(A.A, 60 - AUTO_PILOT_PROBES, generator=g)
        assert torch.equal(r.samples[AUTO_PILOT_PROBES:], h.samples)
        torch.testing.assert_close(r.samples[:AUTO_PILOT_PROBES], (Z * (A.A @ Z)).sum(0),
                                   rtol=1e-12, atol=0)
        assert r.estimate == pytest.approx(float(r.samples.mean()), rel=1e-15)


def test_deflated_branch_equals_definition() -> None:
    """With the Lanczos basis V (first column z_1 / sqrt(n), z_1 the first pilot) the estimate is
    tr(V^T A V) plus the mean of g^T (I - P) A (I - P) g over the other pilots and the next
    Rademacher draws, by brute force, with exactly N products; projecting V out removes
    ||T||_F^2 + 2 beta^2 of ||A||_F^2, the identity the stopping rule uses."""
    A = _Counted(_matrix(_outliers()))
    n, m = 100, AUTO_PILOT_PROBES
    r, info = _auto_trace(A, 40, None, torch.Generator().manual_seed(4))
    k = info["steps"]
    assert r.method == "auto:deflated" and 3 <= k <= 20
    assert r.num_matvecs == 40 == A.num_matvecs and r.samples.numel() == 40 - k
    g = torch.Generator().manual_seed(4)
    Z = rademacher((n, m), generator=g, dtype=torch.float64)
    G = torch.cat([Z[:, 1:], rademacher((n, 40 - k - (m - 1)), generator=g,
                                         dtype=torch.float64)], dim=1)
    V = info["basis"].T
    torch.testing.assert_close(V.T @ V, torch.eye(k, dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close(V[:, 0], Z[:, 0] / math.sqrt(n), atol=1e-15, rtol=0)
    P = V @ V.T
    B = (torch.eye(n, dtype=torch.float64) - P) @ A.A @ (torch.eye(n, dtype=torch.float64) - P)
    samples = torch.stack([G[:, i] @ B @ G[:, i] for i in range(40 - k)])
    torch.testing.assert_close(r.samples, samples, rtol=1e-10, atol=1e-10)
    assert r.estimate == pytest.approx(float(torch.trace(V.T @ A.A @ V) + samples.mean()),
                                       abs=1e-9)
    a, b, _ = lanczos_tridiagonal(lambda v: A.A @ v, Z[:, 0], k + 1)
    T = torch.diag(a[:k]) + torch.diag(b[: k - 1], 1) + torch.diag(b[: k - 1], -1)
    removed = float(T.square().sum()) + 2 * float(b[k - 1]) ** 2
    assert float(B.square().sum()) == pytest.approx(float(A.A.square().sum()) - removed,
                                                    rel=1e-9)


def test_spectral_concentration() -> None:
    """Rank one gives (m - 1) / (m + 1) for any probes; over many Gaussian probe sets the ratio
    of the mean ||G||_F^2 to the mean tr(G)^2 gives sum lambda^4 / (sum lambda^2)^2 (the
    first-order expectation the statistic inverts); a flat spectrum and C equal outliers fall
    on the two sides of auto_trace's threshold 1 / N."""
    g = torch.Generator().manual_seed(0)
    u = torch.randn(30, dtype=torch.float64, generator=g)
    A1 = 3.0 * torch.outer(u, u) / u.square().sum()
    Z = torch.randn(30, 4, dtype=torch.float64, generator=g)
    assert spectral_concentration((A1 @ Z).T @ (A1 @ Z)) == pytest.approx(3 / 5, rel=1e-12)
    ev = torch.cat([torch.full((5,), 4.0, dtype=torch.float64),
                    torch.linspace(0.0, 0.3, 45, dtype=torch.float64)])
    A = _matrix(ev)
    r = float((ev**4).sum() / (ev.square().sum()) ** 2)
    fro, tr2 = [], []
    for _ in range(4000):
        Y = A @ torch.randn(50, 4, dtype=torch.float64, generator=g)
        G = Y.T @ Y
        fro.append(float(G.square().sum()))
        tr2.append(float(G.trace()) ** 2)
    ratio = statistics.mean(fro) / statistics.mean(tr2)
    # m E||G||^2 / E[tr G]^2 with E[tr G]^2 = m^2 (tr A^2)^2 + 2 m tr A^4: exact for Gaussians
    exact = (4 * ((ev.square().sum()) ** 2 + 5 * (ev**4).sum())
             / (16 * (ev.square().sum()) ** 2 + 8 * (ev**4).sum()))
    assert ratio == pytest.approx(float(exact), rel=0.03)
    assert (4 * float(exact) - 1) / 5 == pytest.approx(r, rel=0.25)  # first order in r
    N = 40
    flat, outl = [], []
    for s in range(50):
        gs = torch.Generator().manual_seed(s)
        flat.append(_auto_trace(_matrix(FLAT), N, None, gs)[1]["concentration"])
        outl.append(_auto_trace(_matrix(_outliers()), N, None, gs)[1]["concentration"])
    assert max(flat) < AUTO_CONCENTRATION / N < min(outl)


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
    else:  # N Rademacher probes for N products: Hutchinson's variance, which the spread sees
        assert statistics.mean(mse) == pytest.approx(hutchinson_variance(A) / N, rel=1e-12)


def test_auto_trace_errors() -> None:
    A = torch.eye(20, dtype=torch.float64)
    with pytest.raises(ValueError, match="lanczos_steps"):
        auto_trace(A, 20, lanczos_steps=19)
    with pytest.raises(ValueError, match="lanczos_steps"):
        auto_trace(A, 20, lanczos_steps=1)
    with pytest.raises(ValueError, match="num_matvecs"):
        auto_trace(A, 7)
