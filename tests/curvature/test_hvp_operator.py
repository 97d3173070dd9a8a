"""HVPs of the three dropout states against torch.autograd.functional.hessian (float64)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dropreg.curvature import (
    DropoutMasks,
    HessianOperator,
    flatten_params,
    sample_masks,
    unflatten_params,
)


def _net():
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Dropout(0.3), nn.Linear(5, 4), nn.Tanh(),
                         nn.Dropout(0.5), nn.Linear(4, 2)).double()


def _manual_loss(flat, like, X, y, masks):
    """Explicit formula of the net's loss with masks (None = clean), for autograd's hessian."""
    p = unflatten_params(flat, like)
    total = 0.0
    for m in masks:
        h = torch.tanh(X @ p["0.weight"].T + p["0.bias"])
        h = h if m is None else h * m.masks["2"]
        h = torch.tanh(h @ p["3.weight"].T + p["3.bias"])
        h = h if m is None else h * m.masks["5"]
        out = h @ p["6.weight"].T + p["6.bias"]
        total = total + ((out - y) ** 2).mean()
    return total / len(masks)


@pytest.mark.parametrize("state", ["clean", "fixed", "expected", "shared"])
@pytest.mark.parametrize("method", ["forward-over-reverse", "double-backward"])
@pytest.mark.parametrize("batch_size", [None, 3])
def test_hvp_matches_autograd_hessian(state, method, batch_size, generator):
    net = _net().train()
    X = torch.randn(7, 3, dtype=torch.float64, generator=generator)
    y = torch.randn(7, 2, dtype=torch.float64, generator=generator)
    like = {k: v.detach() for k, v in net.named_parameters()}
    if state == "clean":
        masks, dropout = [None], "clean"
    elif state == "fixed":
        masks = sample_masks(net, X, 1, generator=generator)
        dropout = masks[0]
    elif state == "shared":
        masks = sample_masks(net, X, 2, per_example=False, generator=generator)
        dropout = masks
    else:
        masks = sample_masks(net, X, 3, generator=generator)
        dropout = masks
    H_ref = torch.autograd.functional.hessian(
        lambda f: _manual_loss(f, like, X, y, masks), flatten_params(like))
    loss = lambda o, t: ((o - t) ** 2).mean()  # noqa: E731  (mse_loss has no forward-mode AD)
    op = HessianOperator(net, loss, (X, y), dropout=dropout, batch_size=batch_size,
                         method=method)
    V = torch.randn(op.num_params, 3, dtype=torch.float64, generator=generator)
    HV = op @ V
    assert op.num_matvecs == 3
    assert torch.allclose(HV, H_ref @ V, rtol=0, atol=1e-10 * float(H_ref.abs().max()))
    ref_loss = float(_manual_loss(flatten_params(like), like, X, y, masks))
    assert abs(op.loss() - ref_loss) <= 1e-12 * abs(ref_loss)
    g_ref = torch.func.grad(lambda f: _manual_loss(f, like, X, y, masks))(flatten_params(like))
    assert torch.allclose(op.gradient(), g_ref, rtol=0, atol=1e-12)


def test_auto_falls_back_to_double_backward(generator):
    """torch.nn.functional.mse_loss has no forward-mode AD in this torch: 'auto' falls back."""
    net = _net()
    X = torch.randn(6, 3, dtype=torch.float64, generator=generator)
    y = torch.randn(6, 2, dtype=torch.float64, generator=generator)
    op = HessianOperator(net, nn.functional.mse_loss, (X, y))
    ref = HessianOperator(net, nn.functional.mse_loss, (X, y), method="double-backward")
    v = torch.randn(op.num_params, dtype=torch.float64, generator=generator)
    assert torch.allclose(op.matvec(v), ref.matvec(v), rtol=0, atol=1e-12)
    assert op.method in ("forward-over-reverse", "double-backward")


def test_train_mode_is_ignored_and_restored(generator):
    net = _net().train()
    X = torch.randn(6, 3, dtype=torch.float64, generator=generator)
    y = torch.randn(6, 2, dtype=torch.float64, generator=generator)
    op = HessianOperator(net, nn.functional.mse_loss, (X, y))
    assert op.loss() == op.loss()  # clean state: deterministic although net.training
    net.eval()
    assert op.loss() == pytest.approx(float(nn.functional.mse_loss(net(X), y)), rel=1e-14)
    assert "forward" not in net[2].__dict__  # patched forwards removed


class _Gate(nn.Module):
    """A dropout-like layer that is not a torch dropout module: output = input * random mask."""

    def forward(self, x):
        if not self.training:
            return x
        return x * (torch.rand(x.shape[1:]) < 0.5).to(x.dtype) * 2.0


def test_custom_dropout_module_captured_by_ones(generator):
    torch.manual_seed(3)
    net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), _Gate(), nn.Linear(4, 1)).double()
    X = torch.randn(5, 3, dtype=torch.float64, generator=generator)
    ms = sample_masks(net, X, 2, is_dropout=lambda m: isinstance(m, _Gate), generator=generator)
    m = ms[0].masks["2"]
    assert m.shape == (5, 4) and set(m.unique().tolist()) <= {0.0, 2.0}
    op = HessianOperator(net, nn.functional.mse_loss, (X, torch.zeros(5, 1).double()),
                         dropout=ms[0], is_dropout=lambda m: isinstance(m, _Gate))
    with torch.no_grad():
        h = torch.tanh(net[0](X)) * m
        ref = float((net[3](h) ** 2).mean())
    assert op.loss() == pytest.approx(ref, rel=1e-14)


def test_dropout2d_masks_are_per_channel(generator):
    net = nn.Sequential(nn.Conv2d(2, 3, 3), nn.Dropout2d(0.5)).double()
    X = torch.randn(4, 2, 5, 5, dtype=torch.float64)
    m = sample_masks(net, X, 1, generator=generator)[0].masks["1"]
    assert m.shape == (4, 3, 1, 1)


def test_bad_arguments(generator):
    net = _net()
    X, y = torch.randn(4, 3).double(), torch.randn(4, 2).double()
    with pytest.raises(ValueError, match="method"):
        HessianOperator(net, nn.functional.mse_loss, (X, y), method="fast")
    with pytest.raises(ValueError, match="batch_size"):
        HessianOperator(net, nn.functional.mse_loss, (X, y), batch_size=0)
    with pytest.raises(ValueError, match="rows"):
        HessianOperator(net, nn.functional.mse_loss, (X, y[:3]))
    with pytest.raises(ValueError, match="params"):
        HessianOperator(net, nn.functional.mse_loss, (X, y), params=["nope"])
    bad = DropoutMasks({"2": torch.ones(3, 5), "5": torch.ones(3, 4)})
    with pytest.raises(ValueError, match="rows"):
        HessianOperator(net, nn.functional.mse_loss, (X, y), dropout=bad)
    with pytest.raises(ValueError, match="num_masks"):
        sample_masks(net, X, 0)


def test_sampling_masks_leaves_batchnorm_stats_alone(generator):
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Dropout(0.5)).double().train()
    before = net[1].running_mean.clone()
    sample_masks(net, torch.randn(6, 3, dtype=torch.float64, generator=generator), 2,
                 generator=generator)
    assert torch.equal(net[1].running_mean, before)


def test_dropreg_layers_are_dropout_by_default(generator):
    """dropreg.nn layers (Dropout, DropBlock2d) get fixed masks without any predicate."""
    from dropreg.nn import DropBlock2d, Dropout

    torch.manual_seed(4)
    net = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.Tanh(), DropBlock2d(0.2, 3),
                        nn.Flatten(), nn.Linear(2 * 6 * 6, 5), nn.Tanh(), Dropout(0.3),
                        nn.Linear(5, 1)).double()
    X = torch.randn(4, 1, 6, 6, dtype=torch.float64, generator=generator)
    y = torch.randn(4, 1, dtype=torch.float64, generator=generator)
    ms = sample_masks(net, X, 1, generator=generator)[0]
    assert set(ms.masks) == {"2", "6"} and ms.masks["2"].shape == (4, 2, 6, 6)
    op = HessianOperator(net, nn.functional.mse_loss, (X, y), dropout=ms)
    with torch.no_grad():
        h = torch.tanh(net[0](X)) * ms.masks["2"]
        h = torch.tanh(net[4](h.flatten(1))) * ms.masks["6"]
        ref = float(nn.functional.mse_loss(net[7](h), y))
    assert op.loss() == pytest.approx(ref, rel=1e-13)
    assert op.loss() == op.loss()
