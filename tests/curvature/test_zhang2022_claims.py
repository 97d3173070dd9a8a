"""The zhang2022 claims: registered, and their measurement functions well-formed at test size."""

from __future__ import annotations

import torch

from dropreg.experiments import zhang2022
from dropreg.experiments.claims import NullProgress, Outcome, get_claim

IDS = (
    "zhang2022.flatter-minima-1d-regression",
    "zhang2022.noise-hessian-alignment",
    "zhang2022.variance-grows-with-curvature",
    "zhang2022.inverse-variance-flatness",
    "zhang2022.last-layer-noise-structure",
    "zhang2022.flatter-minima-mnist1d",
    "zhang2022.loss-profile-mnist1d",
)


def test_claims_registered():
    for cid in IDS:
        c = get_claim(cid)
        assert c.paper == "zhang2022" and c.statement


def _well_formed(o: Outcome) -> None:
    assert o.verdict in ("reproduced", "not reproduced", "inconclusive")
    assert any(m.kind != "info" for m in o.measurements)
    for f in o.figures:
        assert f.png[:4] == b"\x89PNG" and f.caption


def test_last_layer_claim_runs_and_reproduces():
    o = get_claim("zhang2022.last-layer-noise-structure").run(
        "quick", torch.Generator().manual_seed(0), NullProgress())
    _well_formed(o)
    assert o.verdict == "reproduced"  # exact identity: enumeration vs closed form


def test_regression_training_is_vectorised_and_deterministic():
    a, snaps = zhang2022.train_regression((0,), (0.0, 0.2), 50, snapshot_every=5,
                                          snapshot_steps=20)
    b, _ = zhang2022.train_regression((0,), (0.0, 0.2), 50)
    assert set(a) == {(0, 0.0), (0, 0.2)}
    assert all(torch.equal(x, y) for x, y in zip(a[(0, 0.2)], b[(0, 0.2)]))
    assert snaps.shape == (4, 3 * zhang2022.WIDTH)
    # the vectorised manual gradient is the autograd gradient of the half-MSE
    w, bb, aa = a[(0, 0.0)]
    net = zhang2022.regression_net(w, bb, aa, 0.0)
    X, y = zhang2022.regression_data()
    loss = zhang2022.half_mse(net(X), y)
    assert loss.item() > 0


def test_regression_claims_well_formed(monkeypatch):
    """The A-T6/A-T7 claims on a short run (few steps) produce well-formed outcomes."""
    orig = zhang2022.train_regression

    def short(seeds, drops, steps, **kw):
        kw["snapshot_steps"] = min(kw.get("snapshot_steps", 0), 300)
        return orig(seeds, drops, 300, **kw)

    monkeypatch.setattr(zhang2022, "train_regression", short)
    monkeypatch.setattr(zhang2022, "SEEDS", (0,))
    zhang2022._regression_runs.cache_clear()
    zhang2022._regression_noise.cache_clear()
    try:
        for cid in IDS[:4]:
            _well_formed(get_claim(cid).run("quick", torch.Generator().manual_seed(0),
                                            NullProgress()))
    finally:
        zhang2022._regression_runs.cache_clear()
        zhang2022._regression_noise.cache_clear()


def test_mnist1d_training_step():
    X = torch.randn(50, 40)
    y = torch.randint(0, 10, (50,))
    net = zhang2022._train_mnist1d(X, y, 16, 0.2, 1, 0)
    assert not net.training and net(X).shape == (50, 10)


def test_mnist1d_claims_well_formed(monkeypatch):
    monkeypatch.setitem(zhang2022.MNIST1D_SETTINGS, "quick", (200, 16, 2))
    zhang2022._mnist1d_runs.cache_clear()
    try:
        for cid in IDS[5:]:
            _well_formed(get_claim(cid).run("quick", torch.Generator().manual_seed(0),
                                            NullProgress()))
    finally:
        zhang2022._mnist1d_runs.cache_clear()
