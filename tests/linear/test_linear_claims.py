"""Every claim of the linear area runs through the runner and returns a well-formed result.

Cheap claims must reproduce in the quick profile; the SGD, last-layer and training-curve claims
run in the smoke profile (same code, tiny budgets) to keep the suite fast.
"""

from __future__ import annotations

import pytest

from dropreg.experiments.claims import get_claim, registered_claims
from dropreg.experiments.runner import run_claim

QUICK = ["pal2020.expected-objective-identities", "pal2020.low-rank-equal-block-norms",
         "mianjy2018.dropout-equalized-global-optimum", "mianjy2019.deep-linear-envelope",
         "cavazza2018.dropout-expected-objective"]
SMOKE = ["pal2020.dropblock-sgd-reaches-closed-form", "pal2020.last-layer-singular-values",
         "pal2020.dropblock-approximation-training-curves"]


def _check(out) -> None:
    assert out.verdict in ("reproduced", "not reproduced", "inconclusive"), out.error
    assert out.measurements and out.figures
    for fig in out.figures:
        assert fig.png[:4] == b"\x89PNG" and fig.caption


def test_registered():
    ids = {c.id for c in registered_claims()}
    assert set(QUICK + SMOKE) <= ids


@pytest.mark.parametrize("cid", QUICK)
def test_quick_claims_reproduce(cid):
    out = run_claim(get_claim(cid), "quick", seed=0)
    _check(out)
    assert out.verdict == "reproduced"


@pytest.mark.parametrize("cid", SMOKE)
def test_smoke_claims_well_formed(cid):
    out = run_claim(get_claim(cid), "smoke", seed=0)
    _check(out)


def test_basin_minimum_is_a_stationary_point_below_its_start():
    import torch

    from dropreg.experiments.pal2020 import runs
    from dropreg.linear import normalized_covariance_of
    from dropreg.masks import SlidingBlocks

    g = torch.Generator().manual_seed(3)
    prob = runs.regression_problem(runs.ProblemSettings(200, 10, 4, 3, 2, 0.5), g)
    law = SlidingBlocks(0.3, 2)
    U0 = 0.3 * torch.randn(3, 4, generator=g, dtype=torch.float64)
    V0 = 0.3 * torch.randn(4, 4, generator=g, dtype=torch.float64)
    C = normalized_covariance_of(law, 4).to(torch.float64)
    value, U, V = runs.basin_minimum(prob, law, U0, V0)
    U.requires_grad_(True)
    V.requires_grad_(True)
    f = runs.objective_tensor(U, V, prob, C)
    gU, gV = torch.autograd.grad(f, (U, V))
    assert abs(float(f) - value) < 1e-12
    assert value < float(runs.objective_tensor(U0, V0, prob, C))
    assert float(torch.cat([gU.reshape(-1), gV.reshape(-1)]).norm()) < 1e-6


def test_step_size_limit_needs_halved_steps():
    from dropreg.experiments.pal2020.runs import StationaryChain, step_size_limit

    a = StationaryChain(0.2, [], 1, 0, mean=1.2, stderr=0.0, tau=1.0, ess=1.0)
    with pytest.raises(ValueError, match="coarse.eta / 2"):
        step_size_limit(a, a)


def test_sgd_claim_outside_closed_form_condition_is_inconclusive():
    """One block of the full width (b = 1) on a full-rank problem: the convex bound is not
    attainable, so the claim cannot test "SGD reaches the closed form" and must say so."""
    from dropreg.experiments.claims import Outcome
    from dropreg.experiments.context import ClaimContext
    from dropreg.experiments.pal2020.claims import SGDSettings, dropblock_sgd_reaches_closed_form
    from dropreg.experiments.pal2020.runs import ProblemSettings
    from dropreg.linear import solve_dropblock

    s = SGDSettings(ProblemSettings(n=200, n_test=50, d=6, D=6, rank=6, noise=0.1), 4, 50, 32,
                    0.05, ((4, 0.2), (1, 0.2)))
    claim = get_claim("pal2020.dropblock-sgd-reaches-closed-form")
    ctx = ClaimContext.for_claim(claim.id, "smoke", 0, s, shares=claim.shares)
    out = dropblock_sgd_reaches_closed_form(ctx)
    assert isinstance(out, Outcome)
    prob = ctx.shared("pal2020.regression", lambda *_: None, settings=s.problem)
    assert not solve_dropblock(prob.M, 4, 0.2, 4).certificate.attained
    assert out.inconclusive_reason and "DropBlock k=4, p=0.2" in out.inconclusive_reason
    assert "Dropout, p=0.2" not in out.inconclusive_reason       # Dropout's is always attained
    assert out.verdict in ("inconclusive", "not reproduced")
