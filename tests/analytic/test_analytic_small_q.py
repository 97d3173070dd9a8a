"""The small-q limit of dropout's gradient noise against exact enumeration of all masks."""

from __future__ import annotations

import itertools

import torch

from dropreg.analytic.small_q import one_unit_deletion_masks, small_q_noise_trace
from dropreg.curvature import dropout_gradients
from dropreg.sites import DropoutMasks


def _net(g):
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Dropout(0.1),
                              torch.nn.Linear(4, 3)).double()
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64))
    return net


def test_small_q_trace_is_the_limit_of_the_enumerated_covariance():
    g = torch.Generator().manual_seed(0)
    net = _net(g)
    x, y = torch.randn(1, 3, generator=g, dtype=torch.float64), torch.tensor([2])
    loss = torch.nn.functional.cross_entropy
    limit = small_q_noise_trace(net, loss, x, y)
    name = next(iter(one_unit_deletion_masks(net, x)[0].masks))
    for q in (1e-3, 1e-4):
        bits = list(itertools.product((0.0, 1.0), repeat=4))
        masks = [DropoutMasks({name: torch.tensor([b], dtype=torch.float64) / (1 - q)})
                 for b in bits]
        w = torch.tensor([q ** (4 - sum(b)) * (1 - q) ** sum(b) for b in bits],
                         dtype=torch.float64)
        G = dropout_gradients(net, loss, (x, y), masks)
        mean = G @ w
        tr = float((((G - mean[:, None]) ** 2).sum(0) * w).sum())
        # the next term is O(q): relative deviation below 20 q (the O(q) coefficient is of
        # order the number of units)
        assert abs(tr / q - limit) / limit < 20 * q, (q, tr / q, limit)
    assert limit > 0


def test_one_unit_deletion_masks_count():
    net = _net(torch.Generator().manual_seed(1))
    masks = one_unit_deletion_masks(net, torch.zeros(1, 3, dtype=torch.float64))
    assert len(masks) == 5 and float(masks[0].masks[next(iter(masks[0].masks))].sum()) == 4
