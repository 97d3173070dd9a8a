"""The zhang2022 claims through the runner, and their trainers at test size."""

from __future__ import annotations

import torch

from dropreg.experiments.claims import get_claim
from dropreg.experiments.context import RunCache
from dropreg.experiments.runner import run_claim
from dropreg.experiments.zhang2022 import runs

IDS = (
    "zhang2022.flatter-minima-1d-regression",
    "zhang2022.noise-hessian-alignment",
    "zhang2022.variance-grows-with-curvature",
    "zhang2022.inverse-variance-flatness",
    "zhang2022.last-layer-noise-structure",
    "zhang2022.flatter-minima-mnist1d",
    "zhang2022.loss-profile-mnist1d",
)


def test_claims_registered_with_settings_for_every_profile():
    for cid in IDS:
        c = get_claim(cid)
        assert c.paper == "zhang2022" and c.statement
        assert all(c.settings_for(p) is not None for p in ("smoke", "quick", "full"))


def test_last_layer_claim_reproduces_in_smoke():
    r = run_claim(get_claim("zhang2022.last-layer-noise-structure"), "smoke", seed=0)
    assert r.verdict == "reproduced", r.reason  # exact identity: enumeration vs closed form
    assert r.figures and r.figures[0].png[:4] == b"\x89PNG"


def test_noise_claims_share_one_run_and_draw_figures():
    cache = RunCache()
    a = run_claim(get_claim("zhang2022.noise-hessian-alignment"), "smoke", seed=0, runs=cache)
    b = run_claim(get_claim("zhang2022.variance-grows-with-curvature"), "smoke", seed=0,
                  runs=cache)
    assert len(cache) == 2  # the regression runs and their noise, built once
    assert a.verdict != "error" and b.verdict != "error", (a.error, b.error)
    assert b.details["runs"][0]["slope"] == b.measurements[0].value or len(b.details["runs"]) > 1
    assert all(f.png[:4] == b"\x89PNG" for f in a.figures + b.figures)


def test_regression_gradient_is_that_of_the_net_and_runs_are_seeded():
    s = runs.RegressionSettings(replicates=1, steps=30, width=10, n_points=6, check_every=1)
    (X, y), a = runs.train_regression(s, torch.Generator().manual_seed(0))
    _, b = runs.train_regression(s, torch.Generator().manual_seed(0))
    _, c = runs.train_regression(s, torch.Generator().manual_seed(1))
    assert [(r.replicate, r.p) for r in a] == [(0, 0.0), (0, 0.2)]
    for ra, rb in zip(a, b):
        assert all(torch.equal(u, v) for u, v in zip(ra.net.parameters(), rb.net.parameters()))
    assert not torch.equal(a[0].net[0].weight, c[0].net[0].weight)
    # the loss a run reports is the clean half-MSE of its net
    for r in a:
        assert abs(r.loss - float(runs.half_mse(r.net.eval()(X), y).detach())) < 1e-12
    # the dropout run's matched plain net is the plain run at the first step at or below its loss
    d = a[1]
    assert a[0].matched is None and d.matched is not None
    assert d.matched_loss <= d.loss
    assert abs(d.matched_loss - float(runs.half_mse(d.matched(X), y).detach())) < 1e-12
    if d.matched_step < s.steps:  # then it is the plain run's state after matched_step steps
        (_, _), short = runs.train_regression(
            runs.RegressionSettings(replicates=1, steps=d.matched_step, width=10, n_points=6,
                                    check_every=1), torch.Generator().manual_seed(0))
        assert torch.allclose(short[0].net[0].weight, d.matched[0].weight)


def test_mnist1d_trainer_stops_at_the_target_and_is_seeded():
    g = torch.Generator().manual_seed(0)
    X, y = torch.randn(60, 40, generator=g), torch.randint(0, 10, (60,), generator=g)
    net, epochs = runs.train_mnist1d(X, y, 16, 0.2, 50, torch.Generator().manual_seed(1),
                                     target_loss=1.5)
    assert not net.training and net(X.double()).shape == (60, 10)
    assert epochs < 50 and runs.clean_loss(net, X.double(), y) <= 1.5
    net2, _ = runs.train_mnist1d(X, y, 16, 0.2, epochs, torch.Generator().manual_seed(1))
    assert torch.equal(net[0].weight, net2[0].weight)


def test_forward_with_masks_matches_dropout_law():
    net = torch.nn.Sequential(torch.nn.Identity(), torch.nn.Dropout(0.25))
    out = runs.forward_with_masks(net, torch.ones(20000, dtype=torch.float64),
                                  torch.Generator().manual_seed(0))
    kept = float((out > 0).double().mean())
    assert abs(kept - 0.75) < 4 * (0.75 * 0.25 / 20000) ** 0.5  # 4 binomial s.e.
    assert torch.allclose(out[out > 0], torch.tensor(1 / 0.75, dtype=torch.float64))


def test_autocorrelation_time_of_an_ar1_series():
    # AR(1) with coefficient phi has tau = (1 + phi) / (1 - phi) = 9 for phi = 0.8
    g = torch.Generator().manual_seed(0)
    e = torch.randn(200000, generator=g, dtype=torch.float64)
    x = torch.empty_like(e)
    x[0] = e[0]
    for t in range(1, x.shape[0]):
        x[t] = 0.8 * x[t - 1] + e[t]
    tau = runs.integrated_autocorrelation_time(x)
    assert abs(tau - 9.0) < 0.6, tau  # estimator error ~ tau sqrt(2 (2M + 1) / T) ~ 0.3
