"""Dropout-noise covariance: the exact last-layer formulas (digest A.8) against enumeration of all
masks (A-T4), the Monte Carlo estimators against the exact covariance, alignment (A-T5)."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from dropreg.curvature import (
    DropoutMasks,
    GradientNoise,
    HessianOperator,
    dropout_eta_moments,
    dropout_gradient_noise,
    dropout_gradients,
    last_layer_hessian,
    last_layer_noise_covariance,
    last_layer_noise_covariance_linear,
    last_layer_terms,
    matrix_alignment,
    noise_alignment,
    null_alignment,
)


def _all_masks(m: int, p: float):
    """All 2^m masks z/(1-p) of width m (shared, shape (1, m)) with their probabilities."""
    out = []
    for bits in itertools.product((0.0, 1.0), repeat=m):
        z = torch.tensor(bits, dtype=torch.float64)
        prob = (1 - p) ** float(z.sum()) * p ** float(m - z.sum())
        out.append((DropoutMasks({"4": (z / (1 - p))[None]}, per_example=False), prob))
    return out


def _enumerated_cov(net, loss, X, y, p):
    masks = _all_masks(8, p)
    G = dropout_gradients(net, loss, (X, y), [m for m, _ in masks], chunk_size=64)
    w = torch.tensor([q for _, q in masks], dtype=torch.float64)
    mean = G @ w
    return (G * w) @ G.T - torch.outer(mean, mean), mean


def test_eta_moments_by_enumeration():
    for p in (0.1, 0.5, 0.8):
        q = 1 - p
        vals = torch.tensor([1 / q - 1, -1.0], dtype=torch.float64)
        pr = torch.tensor([q, p], dtype=torch.float64)
        exact = [float((pr * vals**k).sum()) for k in (2, 3, 4)]
        assert dropout_eta_moments(p) == pytest.approx(exact, rel=1e-13, abs=1e-15)
    with pytest.raises(ValueError, match="p"):
        dropout_eta_moments(1.0)


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_a_t4_exact_covariance_shared_and_per_example(p, interp_net, half_mse):
    """A-T4: closed-form Sigma of A.8 equals the covariance over all 2^8 masks (rel < 1e-10)."""
    net, X, y = interp_net(p)
    a, J, A = last_layer_terms(net, X, head="5")
    # shared mask: enumerate the 2^8 masks of the whole batch
    S_enum, _ = _enumerated_cov(net, half_mse, X, y, p)
    S_form = last_layer_noise_covariance(a, J, A, p, per_example=False)
    assert float((S_form - S_enum).norm() / S_enum.norm()) < 1e-10
    # per-example masks: independent across examples, so Sigma = sum_i Cov(grad of loss_i / n)
    n = X.shape[0]
    S_pe = sum(_enumerated_cov(net, half_mse, X[i:i + 1], y[i:i + 1], p)[0] for i in range(n))
    S_pe = S_pe / n**2
    S_form_pe = last_layer_noise_covariance(a, J, A, p, per_example=True)
    assert float((S_form_pe - S_pe).norm() / S_pe.norm()) < 1e-10
    # the Hessian at interpolation is the Gauss-Newton matrix (A-T3)
    H = HessianOperator(net, half_mse, (X, y)).to_dense()
    assert float((H - last_layer_hessian(J)).norm() / H.norm()) < 1e-10
    # the linear term is not the whole covariance: dropped units have eta = -1 (A.8 caveat)
    lin = last_layer_noise_covariance_linear(a, J, p, per_example=True)
    assert float((lin - S_form_pe).norm() / S_form_pe.norm()) > 1e-3


def test_a_t4_mean_gradient_is_gradient_of_r1(half_mse):
    """E_eta grad R^drop = grad (R_S + R_1) at any theta (A.3 / A-T4), by enumeration."""
    torch.manual_seed(5)
    from torch import nn

    p = 0.3
    net = nn.Sequential(nn.Linear(3, 12), nn.ReLU(), nn.Linear(12, 8), nn.ReLU(),
                        nn.Dropout(p), nn.Linear(8, 1)).double()
    X, y = torch.randn(5, 3).double(), torch.randn(5, 1).double()
    _, mean = _enumerated_cov(net, half_mse, X, y, p)
    lam = p / (1 - p)

    params = {k: v.detach() for k, v in net.named_parameters()}

    def total(pd):
        h = torch.func.functional_call(net[:4], {k: v for k, v in pd.items()
                                                 if k[0] in "02"}, (X,))
        W, b = pd["5.weight"], pd["5.bias"]
        rs = half_mse(h @ W.T + b, y)
        r1 = lam / (2 * X.shape[0]) * ((W[0] ** 2) * (h**2)).sum()
        return rs + r1

    g = torch.func.grad(total)(params)
    g = torch.cat([t.reshape(-1) for t in g.values()])
    assert float((g - mean).norm() / mean.norm()) < 1e-10


def test_monte_carlo_noise_matches_exact(interp_net, half_mse, generator):
    """dropout_gradient_noise (nn.Dropout, per-example masks) is unbiased for the exact Sigma."""
    p = 0.2
    net, X, y = interp_net(p)
    a, J, A = last_layer_terms(net, X, head="5")
    Sigma = last_layer_noise_covariance(a, J, A, p)
    S = 3000
    noise = dropout_gradient_noise(net, half_mse, (X, y), S, generator=generator, chunk_size=500)
    assert noise.samples.shape == (Sigma.shape[0], S) and noise.dof == S - 1
    sq = (noise.samples**2).sum(0)
    assert abs(noise.trace() - float(torch.trace(Sigma))) <= 5 * float(sq.std()) / math.sqrt(S)
    H = last_layer_hessian(J)
    v = torch.linalg.eigh(H).eigenvectors[:, -1:]
    pv = (v.T @ noise.samples)[0] ** 2
    exact_pv = float(v[:, 0] @ Sigma @ v[:, 0])
    assert abs(float(noise.projected_variance(v)[0]) - exact_pv) <= 5 * float(pv.std()) / S**0.5
    # centring on the clean gradient: second moment = Sigma + (mean - clean)(mean - clean)^T
    clean = dropout_gradient_noise(net, half_mse, (X, y), 8, center="clean", generator=generator)
    assert float(clean.clean_gradient.norm()) < 1e-10  # interpolation: clean gradient is zero


def test_squared_frobenius_estimators_unbiased(generator):
    """Gram-matrix estimates of ||Sigma||_F^2 (both centrings) are unbiased, skewed noise."""
    P, S, R = 4, 6, 6000
    B = torch.randn(P, P, dtype=torch.float64, generator=generator)
    mu = torch.randn(P, dtype=torch.float64, generator=generator)
    Sigma = B @ B.T  # Var(Exp(1)) = 1
    e = -torch.log(torch.rand(R, S, P, dtype=torch.float64, generator=generator)) - 1.0
    Xs = e @ B.T + mu
    for center in ("mean", "clean"):
        ests = []
        for r in range(R):
            G = Xs[r].T
            if center == "mean":
                Xi, dof = G - G.mean(1, keepdim=True), S - 1
                target = float((Sigma**2).sum())
            else:
                Xi, dof = G, S
                M = Sigma + torch.outer(mu, mu)
                target = float((M**2).sum())
            ests.append(GradientNoise(Xi, center, dof, G.mean(1), None, True).squared_frobenius())
        ests = torch.tensor(ests)
        assert abs(float(ests.mean()) - target) <= 5 * float(ests.std()) / math.sqrt(R)


def test_a_t5_alignment_at_interpolation(interp_net, half_mse, generator):
    """A-T5: cos(H, Sigma_exact) > 0.6 and the random-eigenvector null < 0.1; the matrix-free
    estimator's Tr(H Sigma) agrees with the exact value within 5 s.e."""
    p = 0.1
    net, X, y = interp_net(p)
    a, J, A = last_layer_terms(net, X, head="5")
    H = last_layer_hessian(J)
    Sigma = last_layer_noise_covariance(a, J, A, p)
    cos, null = matrix_alignment(H, Sigma), null_alignment(H, Sigma)
    assert cos > 0.6 and null < 0.1
    noise = dropout_gradient_noise(net, half_mse, (X, y), 2000, generator=generator,
                                   chunk_size=500)
    op = HessianOperator(net, half_mse, (X, y))
    r = noise_alignment(op, noise, k=5, exact_hessian=False, num_matvecs=30, max_noise_hvps=200,
                  generator=generator)
    exact_ths = float((H * Sigma).sum())
    assert abs(r.trace_h_sigma - exact_ths) <= 5 * r.trace_h_sigma_stderr
    r_dense = noise_alignment(H, noise, k=5)
    assert r_dense.cosine > 0.6 and r_dense.null_cosine < 0.1
    assert r_dense.hessian_fro == pytest.approx(float(H.norm()), rel=1e-12)
    # the null value is the mean cosine over Haar-random eigenvectors
    evals_s = torch.linalg.eigvalsh(Sigma)
    cs = []
    for _ in range(300):
        Q, R_ = torch.linalg.qr(torch.randn(H.shape[0], H.shape[0], dtype=torch.float64,
                                            generator=generator))
        Q = Q * torch.sign(torch.diagonal(R_))
        cs.append(matrix_alignment(H, Q @ torch.diag(evals_s) @ Q.T))
    cs = torch.tensor(cs)
    assert abs(float(cs.mean()) - null) <= 5 * float(cs.std()) / math.sqrt(300)


def test_shared_and_per_batch_masks_match_exact(interp_net, half_mse, generator):
    """Shared masks (one per data set) and masks shared by batches of one example (= the
    per-example law) both estimate their exact covariance without bias."""
    p = 0.3
    net, X, y = interp_net(p)
    a, J, A = last_layer_terms(net, X, head="5")
    S = 3000
    for kwargs, per_example in (({"per_example": False}, False),
                                ({"per_example": False, "batch_size": 1}, True)):
        Sigma = last_layer_noise_covariance(a, J, A, p, per_example=per_example)
        noise = dropout_gradient_noise(net, half_mse, (X, y), S, generator=generator,
                                       chunk_size=1000, **kwargs)
        sq = (noise.samples**2).sum(0)
        se = float(sq.std()) / math.sqrt(S)
        assert abs(noise.trace() - float(torch.trace(Sigma))) <= 5 * se


def test_noise_argument_errors(interp_net, half_mse):
    net, X, y = interp_net(0.2)
    with pytest.raises(ValueError, match="num_samples"):
        dropout_gradient_noise(net, half_mse, (X, y), 1)
    with pytest.raises(ValueError, match="center"):
        dropout_gradient_noise(net, half_mse, (X, y), 4, center="median")
    with pytest.raises(ValueError, match="chunk_size"):
        dropout_gradient_noise(net, half_mse, (X, y), 4, chunk_size=0)


def test_to_scipy_eigsh_agrees(interp_net, half_mse):
    from scipy.sparse.linalg import eigsh

    net, X, y = interp_net(0.2)
    op = HessianOperator(net, half_mse, (X, y))
    H = op.to_dense()
    val = eigsh(op.to_scipy(), k=1, which="LA", tol=1e-12, return_eigenvectors=False)[0]
    assert val == pytest.approx(float(torch.linalg.eigvalsh(H)[-1]), rel=1e-9)


def test_alignment_cosine_stderr_matches_spread(interp_net, half_mse, generator):
    """The jackknife s.e. of the cosine agrees with the spread over independent repeats
    (5 standard errors of a standard deviation from R repeats)."""
    p = 0.2
    net, X, y = interp_net(p)
    H = HessianOperator(net, half_mse, (X, y)).to_dense()
    R = 40
    cos, ses = [], []
    for _ in range(R):
        noise = dropout_gradient_noise(net, half_mse, (X, y), 200, generator=generator,
                                       chunk_size=200)
        r = noise_alignment(H, noise, k=3)
        cos.append(r.cosine)
        ses.append(r.cosine_stderr)
    sd = float(torch.tensor(cos).std())
    se = float(torch.tensor(ses).mean())
    assert abs(sd / se - 1.0) <= 5 / math.sqrt(2 * (R - 1))
