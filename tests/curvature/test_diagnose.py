"""dropreg.curvature.diagnose: one call, both states, numbers checked against the dense Hessian."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dropreg.curvature import DropoutRisk, HessianOperator, diagnose


def test_diagnose_agrees_with_dense_hessians_and_draws(zoo):
    model, X, y = zoo("resnet", "eval", n=8)
    g = torch.Generator().manual_seed(0)
    d = diagnose(model, F.cross_entropy, (X, y), k=3, num_masks=2, noise_samples=8,
                 trace_matvecs=9, lanczos_steps=8, tol=1e-6, generator=g)
    H = HessianOperator(model, F.cross_entropy, (X, y)).to_dense()
    evals = torch.linalg.eigvalsh(H).flip(0)[:3]
    assert torch.allclose(d.clean.top.eigenvalues, evals, rtol=1e-5, atol=1e-8)
    assert d.clean.top.converged and d.expected.top.converged
    assert bool((d.clean.top.residuals <= 1e-5 * evals[0]).all())
    # Hutch++ estimate within 5 standard errors of the exact trace (plus its exact part)
    assert abs(d.clean.trace.estimate - float(H.trace())) <= 5 * d.clean.trace.stderr + 1e-9
    assert abs(d.clean.density.moment(1) - float(H.trace()) / H.shape[0]) < 1.0
    assert -1 <= d.clean.alignment.cosine <= 1 and d.expected.state == "expected"
    text = d.summary()
    assert "[clean]" in text and "[expected]" in text and "cos(H, Sigma)" in text
    fig = d.plot()
    assert len(fig.axes) == 2 and len(fig.axes[0].lines) == 2


def test_diagnose_refuses_a_model_without_dropout():
    X, y = torch.randn(6, 3, dtype=torch.float64), torch.randint(0, 2, (6,))
    with pytest.raises(ValueError, match="needs dropout sites"):
        diagnose(nn.Linear(3, 2).double(), F.cross_entropy, (X, y))
    assert DropoutRisk(nn.Linear(3, 2).double(), F.cross_entropy, (X, y)).state == "clean"
