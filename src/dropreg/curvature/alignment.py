"""Alignment of the dropout noise covariance with the Hessian, without forming P x P matrices.

Zhang, Zhou & Xu 2022 (``docs/papers/zhang2022.md``, "Comparing the noise with the Hessian"):
``cos(H, Sigma) = Tr(H Sigma) / (||H||_F ||Sigma||_F)``, projected variances
``v_k^T Sigma v_k`` on the top Hessian eigenvectors and their Spearman correlation with
``lambda_k``, and the null value of a matrix with ``Sigma``'s spectrum and Haar-random
eigenvectors, whose expected cosine is ``tr(H) tr(Sigma) / (P ||H||_F ||Sigma||_F)`` (because
``E[Q diag(s) Q^T] = (tr Sigma / P) I``).

Estimators: ``Tr(H Sigma) = (1/dof) sum_s xi_s^T H xi_s`` (one HVP per noise sample, unbiased);
``||Sigma||_F^2`` unbiased from the Gram matrix (:meth:`GradientNoise.squared_frobenius`);
``||H||_F`` and ``tr H`` exactly from the dense Hessian for small models, by Hutchinson /
Hutch++ otherwise. The ratio of unbiased estimates is consistent, not exactly unbiased.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from dropreg._random import mean_and_stderr
from dropreg.curvature.lanczos import EigenResult, Operator, as_operator, top_eigenpairs
from dropreg.curvature.noise import GradientNoise, squared_frobenius_from_gram
from dropreg.curvature.trace import squared_frobenius, stochastic_trace

__all__ = ["AlignmentResult", "matrix_alignment", "noise_alignment", "null_alignment", "spearman"]


def spearman(x: Tensor, y: Tensor) -> float:
    """Spearman rank correlation (average ranks for ties).

    Example:
        >>> spearman(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([10.0, 30.0, 20.0]))
        0.5
    """
    from scipy.stats import spearmanr

    return float(spearmanr(x.double().numpy(), y.double().numpy()).statistic)


def matrix_alignment(H: Tensor, S: Tensor) -> float:
    """``<H, S>_F / (||H||_F ||S||_F)`` of two dense matrices.

    Example:
        >>> matrix_alignment(torch.eye(3), 2 * torch.eye(3))
        1.0
    """
    return float((H * S).sum() / (H.norm() * S.norm()))


def null_alignment(H: Tensor, S: Tensor) -> float:
    """Expected cosine between ``H`` and ``Q S Q^T`` for Haar-random orthogonal ``Q`` (dense).

    Example:
        >>> round(null_alignment(torch.diag(torch.tensor([1.0, 0.0])), torch.eye(2)), 6)
        0.707107
    """
    P = H.shape[0]
    return float(torch.trace(H) * torch.trace(S) / (P * H.norm() * S.norm()))


@dataclass(frozen=True)
class AlignmentResult:
    """Alignment of ``Sigma`` with ``H``.

    Attributes:
        cosine: ``Tr(H Sigma) / (||H||_F ||Sigma||_F)``.
        null_cosine: expected cosine for ``Sigma``'s spectrum with random eigenvectors.
        trace_h_sigma: estimate of ``Tr(H Sigma)`` with its ``trace_h_sigma_stderr``.
        hessian_fro, sigma_fro: Frobenius norms used.
        hessian_trace, sigma_trace: traces used by the null value.
        eigenvalues: top ``k`` Hessian eigenvalues; ``projected_variances``: ``v_k^T Sigma v_k``.
        spearman: rank correlation of the two (``nan`` when ``k < 3``).
        num_matvecs: Hessian-vector products spent.
        exact_hessian: whether ``||H||_F``, ``tr H`` and the eigenpairs came from the dense ``H``.
        cosine_stderr: delete-a-group jackknife (20 groups of noise samples) standard error of
            ``cosine`` from the noise sampling (the Hessian's norm is held fixed).

    Example:
        >>> H = torch.diag(torch.tensor([4.0, 1.0, 0.0], dtype=torch.float64))
        >>> xi = torch.tensor([[2.0, -2.0, 2.0, -2.0], [1.0, 1.0, -1.0, -1.0],
        ...                    [0.0, 0.0, 0.0, 0.0]], dtype=torch.float64)
        >>> r = noise_alignment(H, GradientNoise(xi, "clean", 4, xi.mean(1), None, True), k=2)
        >>> r.trace_h_sigma, r.exact_hessian, r.eigenvalues.tolist()  # Tr(H Sigma) = 16 + 1
        (17.0, True, [4.0, 1.0])
    """

    cosine: float
    null_cosine: float
    trace_h_sigma: float
    trace_h_sigma_stderr: float
    hessian_fro: float
    sigma_fro: float
    hessian_trace: float
    sigma_trace: float
    eigenvalues: Tensor
    projected_variances: Tensor
    spearman: float
    num_matvecs: int
    exact_hessian: bool
    cosine_stderr: float = float("nan")


def noise_alignment(
    op: Operator | Tensor,
    noise: GradientNoise,
    *,
    k: int = 20,
    exact_hessian: bool | None = None,
    num_matvecs: int = 100,
    max_noise_hvps: int | None = None,
    eigen: EigenResult | None = None,
    tol: float = 1e-6,
    generator: torch.Generator | None = None,
) -> AlignmentResult:
    """Alignment of dropout noise with the Hessian (Zhang, Zhou & Xu 2022), matrix-free.

    Args:
        op: the Hessian (:class:`HessianOperator`, any ``matvec``/``shape`` object, or dense).
        noise: from :func:`dropout_gradient_noise` at the same parameters.
        k: number of top Hessian eigen-directions for projected variances.
        exact_hessian: form the dense Hessian (P products) for exact ``||H||_F``, ``tr H`` and
            eigenpairs; default: when P <= 2000.
        num_matvecs: products for Hutchinson ``||H||_F^2`` and Hutch++ ``tr H`` otherwise.
        max_noise_hvps: use only this many noise samples for ``Tr(H Sigma)`` (unbiased still).
        eigen: precomputed top eigenpairs (skips Lanczos).
        tol: Lanczos residual tolerance.
        generator: for the stochastic estimators.

    Example:
        >>> H = torch.diag(torch.tensor([4.0, 1.0, 0.0], dtype=torch.float64))
        >>> xi = torch.tensor([[2.0, -2.0, 2.0, -2.0], [1.0, 1.0, -1.0, -1.0],
        ...                    [0.0, 0.0, 0.0, 0.0]], dtype=torch.float64)
        >>> noise = GradientNoise(xi, "clean", 4, xi.mean(1), None, True)
        >>> r = noise_alignment(H, noise, k=2)
        >>> r.trace_h_sigma, r.projected_variances.tolist()  # Sigma = diag(4, 1, 0) exactly here
        (17.0, [4.0, 1.0])
    """
    matvec, P, dtype = as_operator(op)
    if noise.samples.shape[0] != P:
        raise ValueError(f"noise has {noise.samples.shape[0]} parameters, operator has {P}")
    if not isinstance(k, int) or not 1 <= k <= P:
        raise ValueError(f"k must be an int in [1, {P}], got {k!r}")
    used = 0
    if exact_hessian is None:
        exact_hessian = P <= 2000
    Xi = noise.samples
    S = Xi.shape[1]
    m = S if max_noise_hvps is None else min(int(max_noise_hvps), S)
    if m < 2:
        raise ValueError(f"max_noise_hvps must be >= 2, got {max_noise_hvps!r}")
    # E[xi_s xi_s^T] = Sigma * c, c = (S-1)/S for mean-centred samples, 1 otherwise
    c = noise.dof / S
    if exact_hessian:
        if isinstance(op, Tensor):
            H = op.to(dtype)
        elif hasattr(op, "to_dense"):
            H = op.to_dense()
            used += P
        else:
            H = torch.stack([matvec(e) for e in torch.eye(P, dtype=dtype)], dim=1)
            H = (H + H.T) / 2
            used += P
        quad = ((H @ Xi.to(dtype)[:, :m]) * Xi[:, :m]).sum(0).double() / c
        h_fro = float(H.norm())
        h_tr = float(torch.trace(H))
        if eigen is None:
            evals, evecs = torch.linalg.eigh(H)
            order = torch.argsort(evals, descending=True)[:k]
            evals, evecs = evals[order], evecs[:, order]
        else:
            evals, evecs = eigen.eigenvalues[:k], eigen.eigenvectors[:, :k]
    else:
        quad = torch.stack([(matvec(Xi[:, s].to(dtype)) * Xi[:, s]).sum() for s in range(m)])
        quad = quad.double() / c
        used += m
        fro = squared_frobenius(op, num_matvecs, generator=generator)
        trh = stochastic_trace(op, max(num_matvecs, 6), "hutch++", generator=generator)
        used += fro.num_matvecs + trh.num_matvecs
        h_fro = math.sqrt(max(fro.estimate, 0.0))
        h_tr = trh.estimate
        if eigen is None:
            eigen = top_eigenpairs(op, k=k, tol=tol, generator=generator)
            used += eigen.iterations
        evals, evecs = eigen.eigenvalues[:k], eigen.eigenvectors[:, :k]
    tr_hs, tr_hs_se = mean_and_stderr(quad)
    s_fro_sq = noise.squared_frobenius()
    if not s_fro_sq > 0:
        raise ValueError(f"the unbiased estimate of ||Sigma||_F^2 is {s_fro_sq:.3e} <= 0: too few "
                         f"noise samples ({noise.num_samples}) for this noise level; draw more")
    s_fro = math.sqrt(s_fro_sq)
    s_tr = noise.trace()
    denom = h_fro * s_fro
    cos = tr_hs / denom if denom > 0 else float("nan")
    null = h_tr * s_tr / (P * denom) if denom > 0 else float("nan")
    pv = noise.projected_variance(evecs)
    rho = spearman(evals, pv) if evals.numel() >= 3 else float("nan")
    cos_se = _jackknife_cosine(quad, noise.gram(), noise.center, h_fro)
    return AlignmentResult(cos, null, tr_hs, tr_hs_se, h_fro, s_fro, h_tr, s_tr,
                           evals.double(), pv, rho, used, exact_hessian, cos_se)


def _jackknife_cosine(quad: Tensor, G: Tensor, center: str, h_fro: float,
                      groups: int = 20) -> float:
    """Delete-a-group jackknife s.e. of ``mean(quad) / (h_fro * ||Sigma||_F)``."""
    S, m = G.shape[0], quad.numel()
    B = min(groups, m, S)
    if B < 2 or S - -(-S // B) < 4:
        return float("nan")
    vals = []
    for b in range(B):
        keep = torch.arange(S) % B != b
        keep_q = torch.arange(m) % B != b
        sf = squared_frobenius_from_gram(G[keep][:, keep], center)
        if sf <= 0:
            return float("nan")
        vals.append(float(quad[keep_q].mean()) / (h_fro * math.sqrt(sf)))
    v = torch.tensor(vals, dtype=torch.float64)
    return float(math.sqrt((B - 1) / B * float(((v - v.mean()) ** 2).sum())))
