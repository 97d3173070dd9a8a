"""The helmbold2017 claims run through the runner and return well-formed results."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dropreg.experiments.claims import get_claim
from dropreg.experiments.helmbold2017.runs import sgd_batch
from dropreg.experiments.runner import run_claim

FAST = [
    "helmbold2017.negative-dropout-penalty",
    "helmbold2017.label-dependent-penalty",
    "helmbold2017.penalty-exponential-in-depth",
    "helmbold2017.rescaling-invariance",
]
SLOW = [
    "helmbold2017.negative-weights-monotone-target",
    "helmbold2017.dropout-scale-invariant-sgd",
    "helmbold2017.weight-decay-scale-sensitive",
]


def _check(res) -> None:
    assert res.measurements and res.figures
    for fig in res.figures:
        assert fig.png[:4] == b"\x89PNG" and fig.caption
    assert res.verdict in ("reproduced", "not reproduced", "inconclusive"), res.reason


@pytest.mark.parametrize("cid", FAST)
def test_fast_claims_reproduce(cid):
    res = run_claim(get_claim(cid), "quick", seed=0)
    _check(res)
    assert res.verdict == "reproduced", res.reason


@pytest.mark.slow
@pytest.mark.parametrize("cid", SLOW)
def test_slow_claims_are_well_formed(cid):
    _check(run_claim(get_claim(cid), "quick", seed=0))


def test_sgd_batch_matches_autograd_step():
    """One manual-backprop SGD step equals torch autograd on the same net, mask and example."""
    from dropreg.relu import StandardNet, linear_layers

    g = torch.Generator().manual_seed(0)
    net = StandardNet(3, 2, 4, generator=g)
    l1, l2 = linear_layers(net)
    X = torch.randn(1, 1, 3, dtype=torch.float64, generator=g)
    Y = torch.tensor([[0.7]], dtype=torch.float64)
    params = [t.detach().numpy().copy()[None] for t in (l1.weight, l1.bias, l2.weight[0])]
    params.append(l2.bias.detach().numpy().copy())
    keep, wd = np.array([0.5]), np.array([0.3])
    rng = np.random.default_rng(4)
    U = np.random.default_rng(4)
    U.integers(0, 1, size=(1, 1))
    u = U.random((1, 1, 7))[0, 0]
    m = torch.from_numpy((u < 0.5) / 0.5)
    new = sgd_batch(X.numpy(), Y.numpy(), params, keep, wd, 1, rng)
    h = torch.relu(l1(X[0, 0] * m[:3])) * m[3:]
    loss = (l2(h)[0] - Y[0, 0]) ** 2 + 0.15 * sum((p**2).sum() for p in net.parameters())
    grads = torch.autograd.grad(loss, [l1.weight, l1.bias, l2.weight, l2.bias])
    want = [p - 0.01 * gr for p, gr in zip((l1.weight, l1.bias, l2.weight[0], l2.bias),
                                           (grads[0], grads[1], grads[2][0], grads[3]))]
    for a, b in zip(new, want):
        np.testing.assert_allclose(a.reshape(-1), b.detach().numpy().reshape(-1), rtol=1e-12)
