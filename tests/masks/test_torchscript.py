"""Every layer under torch.jit.script, in train and eval mode, and a model containing them.

Scripted layers draw from the eager law: the iid layers give the eager output for the same
generator state, the sliding-block layers the eager dense sampler's output (same seeds, same exact
``1 / E[z]`` per position), with the realised drop fraction p and E[output] = input tested within
5 standard errors. Eval mode is the eager eval output. WeightDrop is refused by name (and the
eval-mode recipe its message gives is tested); a scripted MaskDropout is the identity in eval and
refuses to draw in train.
"""

from __future__ import annotations

import io
import math
import warnings

import pytest
import torch
from torch import nn

from dropreg.masks import KeepExactly, SlidingBlocks, SlidingBlocks2d, SlidingBlocks3d
from dropreg.nn import (
    DropBlock1d,
    DropBlock2d,
    DropBlock3d,
    DropConnectConv2d,
    DropConnectLinear,
    Dropout,
    GaussianDropout,
    MaskDropout,
    WeightDrop,
)
from dropreg.nn import _torchscript as TS
from dropreg.nn.weight_drop import WeightMask


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _script(module: nn.Module) -> torch.jit.ScriptModule:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch >= 2.10 deprecates jit.script
        return torch.jit.script(module)


def _within(emp: torch.Tensor, exact: torch.Tensor, se: torch.Tensor) -> bool:
    return bool(((emp - exact).abs() <= 5 * se + 1e-12).all())


# Layers whose scripted draw is the eager draw op for op: (factory taking a generator, shape).
SAME_STREAM = {
    "Dropout": (lambda g: Dropout(0.3, generator=g), (6, 7)),
    "GaussianDropout": (lambda g: GaussianDropout(0.3, generator=g), (6, 7)),
    "DropBlock1d-fixed": (lambda g: DropBlock1d(0.3, 3, fixed_blocks=True, generator=g),
                          (6, 4, 10)),
    "DropBlock1d-fixed-shared": (lambda g: DropBlock1d(0.3, 4, fixed_blocks=True,
                                                       share_channels=True, generator=g),
                                 (6, 4, 10)),
    "DropBlock3d": (lambda g: DropBlock3d(0.25, 2, generator=g), (3, 2, 4, 5, 5)),
    "DropBlock3d-shared": (lambda g: DropBlock3d(0.25, (1, 2, 3), share_channels=True,
                                                 generator=g), (3, 2, 4, 5, 5)),
    "DropConnectLinear": (lambda g: DropConnectLinear(7, 3, p=0.3, generator=g), (6, 7)),
    "DropConnectConv2d": (lambda g: DropConnectConv2d(3, 4, 3, p=0.3, padding=1, generator=g),
                          (2, 3, 6, 6)),
    "WeightMask": (lambda g: WeightMask(0.3, generator=g), (5, 4)),
}

# Layers whose eager CPU sampler is the sparse one: the scripted draw is the dense sampler's.
DENSE = {
    "DropBlock2d": (lambda g: DropBlock2d(0.2, 3, generator=g), (3, 4, 8, 9),
                    SlidingBlocks2d(0.2, 3), (3, 4), (8, 9)),
    "DropBlock2d-shared-rect": (lambda g: DropBlock2d(0.3, (2, 5), share_channels=True,
                                                      generator=g), (3, 4, 7, 6),
                                SlidingBlocks2d(0.3, (2, 5)), (3, 1), (7, 6)),
    "DropBlock1d": (lambda g: DropBlock1d(0.3, 3, generator=g), (5, 3, 11),
                    SlidingBlocks(0.3, 3), (5, 3), 11),
    "DropBlock1d-2d-input": (lambda g: DropBlock1d(0.3, 4, generator=g), (5, 11),
                             SlidingBlocks(0.3, 4), (5,), 11),
}

PER_EXAMPLE = {
    "DropConnectLinear-per-example": (lambda g: DropConnectLinear(7, 3, p=0.3, per_example=True,
                                                                  generator=g), (6, 7)),
    "DropConnectConv2d-per-example": (lambda g: DropConnectConv2d(
        3, 4, 3, p=0.3, padding="same", per_example=True, generator=g), (2, 3, 6, 6)),
}

ALL = {**{k: v[:2] for k, v in SAME_STREAM.items()}, **{k: v[:2] for k, v in DENSE.items()},
       **PER_EXAMPLE}


@pytest.mark.parametrize("name", list(ALL))
def test_scripted_eval_is_the_eager_eval(name: str) -> None:
    """Eval mode: the eager output exactly (the input itself for the dropout layers)."""
    make, shape = ALL[name]
    layer = make(None).double().eval()
    x = torch.randn(shape, dtype=torch.float64, generator=_gen(0)) + 3.0
    scripted = _script(layer)
    y = scripted(x)
    assert torch.equal(y, layer(x))
    if not isinstance(layer, (DropConnectLinear, DropConnectConv2d)):
        assert y.data_ptr() == x.data_ptr()


@pytest.mark.parametrize("name", list(SAME_STREAM))
def test_scripted_train_is_the_eager_draw(name: str) -> None:
    """Train mode, same generator seed: the scripted output is the eager one, and random."""
    make, shape = SAME_STREAM[name]
    x = torch.randn(shape, dtype=torch.float64, generator=_gen(1)) + 3.0
    eager = make(_gen(7)).double()
    scripted = _script(make(_gen(7)).double())
    if isinstance(eager, (DropConnectLinear, DropConnectConv2d)):
        scripted.weight.data.copy_(eager.weight.data)
        scripted.bias.data.copy_(eager.bias.data)
    y_eager, y_script = eager(x), scripted(x)
    torch.testing.assert_close(y_script, y_eager, rtol=1e-14, atol=1e-14)
    assert torch.equal(y_script == 0, y_eager == 0)
    assert not torch.allclose(y_script, eager.eval()(x))


@pytest.mark.parametrize("name", list(DENSE))
def test_scripted_sliding_blocks_are_the_dense_sampler(name: str) -> None:
    """Train mode: the scripted DropBlock is ``x * z / E[z]`` with ``z`` the eager dense draw of
    its law from the same seed, and every kept entry is ``x / E[z]`` of its position."""
    make, shape, law, batch, size = DENSE[name]
    x = torch.randn(shape, dtype=torch.float64, generator=_gen(2)) + 3.0
    y = _script(make(_gen(5)))(x)
    draw = law.draw(batch, size, generator=_gen(5), dtype=torch.float64, method="dense")
    ref = x * draw.mask(law.inverse_mean(size))
    assert torch.equal(y == 0, ref == 0) and bool((y == 0).any())
    torch.testing.assert_close(y, ref, rtol=1e-13, atol=0)


@pytest.mark.parametrize(("make", "shape", "law", "size"), [
    (lambda: DropBlock2d(0.25, 3), (300, 4, 7, 9), SlidingBlocks2d(0.25, 3), (7, 9)),
    (lambda: DropBlock2d(0.6, (2, 5), share_channels=True), (1000, 2, 4, 6),
     SlidingBlocks2d(0.6, (2, 5)), (4, 6)),
    (lambda: DropBlock3d(0.25, 3), (200, 4, 4, 5, 5), SlidingBlocks3d(0.25, 3), (4, 5, 5)),
    (lambda: DropBlock1d(0.35, 3), (4000, 9), SlidingBlocks(0.35, 3), 9),
])
def test_scripted_dropblock_drops_exactly_p_and_is_unbiased(make, shape, law, size) -> None:
    """Realised drop fraction p and E[output] = input within 5 s.e. of the per-map sample; kept
    entries are exactly ``1 / E[z]`` of their position (the law's ``inverse_mean``)."""
    y = _script(make())(torch.ones(shape, dtype=torch.float64))
    planes = y.reshape(-1, math.prod(y.shape[-law.event_ndim:]))
    frac = (planes == 0).to(torch.float64).mean(1)
    assert abs(float(frac.mean()) - law.p) <= 5 * float(frac.std()) / math.sqrt(len(frac))
    mean, se = planes.mean(0), planes.std(0) / math.sqrt(len(planes))
    assert _within(mean, torch.ones_like(mean), se)
    inv = law.inverse_mean(size).reshape(-1).expand_as(planes)
    kept = planes != 0
    torch.testing.assert_close(planes[kept], inv[kept], rtol=1e-14, atol=0)


@pytest.mark.parametrize("p", [1e-4, 0.1, 0.3, 0.7, 0.95])
@pytest.mark.parametrize(("law", "size"), [
    (SlidingBlocks2d, (7, 7)), (SlidingBlocks2d, (14, 14)), (SlidingBlocks2d, (8, 5)),
    (SlidingBlocks2d, (1, 9)), (SlidingBlocks3d, (4, 6, 5)), (SlidingBlocks, 10)])
@pytest.mark.parametrize("block", [1, 2, 3, 7])
def test_scripted_seed_rate_is_the_eager_seed_rate(law, size, block, p) -> None:
    """Newton's root of the drop-fraction equation ``f(gamma) = p`` equals scipy's Brent root to
    float64 precision: ``f`` is evaluated to a few eps, so each root lies within ~eps / f'(gamma)
    of the true one, and the two agree within 8 eps / f'(gamma)."""
    law = law(p, block)
    cov = law.coverage(size).to(torch.float64)
    gamma, eager = TS.seed_rate(cov, p), law.seed_rate(size)
    slope = float((cov * (1 - eager) ** (cov - 1)).mean())
    assert abs(gamma - eager) <= 8 * torch.finfo(torch.float64).eps / slope
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        assert torch.jit.script(TS.seed_rate)(cov, p) == gamma


def test_scripted_per_example_drop_connect_moments() -> None:
    """Per example: each row's own mask (rows differ), E[y] = x W^T and Var[y] =
    lam W^2 x^2 within 5 s.e.; convolution: E[y] = conv(x, W) + b within 5 s.e."""
    g = _gen(14)
    p, lam = 0.4, 0.4 / 0.6
    layer = DropConnectLinear(5, 3, p=p, bias=False, per_example=True, generator=g).double()
    scripted = _script(layer)
    x = torch.randn(1, 5, dtype=torch.float64, generator=g).expand(4000, 5)
    y = scripted(x)
    w = layer.weight.detach()
    n = y.shape[0]
    assert _within(y.mean(0), x[0] @ w.T, y.std(0) / math.sqrt(n))
    c = y - y.mean(0)
    se_var = ((c**4).mean(0) - (c**2).mean(0) ** 2).sqrt() / math.sqrt(n)
    assert _within((c**2).mean(0), lam * (w**2) @ (x[0] ** 2), se_var)
    assert scripted(torch.ones(2, 3, 5, dtype=torch.float64)).shape == (2, 3, 3)
    conv = DropConnectConv2d(2, 2, 3, p=0.3, padding=1, per_example=True, generator=g).double()
    x1 = torch.randn(1, 2, 5, 5, dtype=torch.float64, generator=g)
    yc = _script(conv)(x1.expand(3000, 2, 5, 5))
    exact = nn.functional.conv2d(x1, conv.weight, conv.bias, padding=1)[0].detach()
    assert _within(yc.mean(0), exact, yc.std(0) / math.sqrt(yc.shape[0]))
    assert not torch.equal(yc[0], yc[1])


def test_scripted_layout_inplace_and_errors() -> None:
    """channels_last is kept, ``inplace`` writes into the input without autograd, a wrong ndim
    raises with the function's name (as torch.jit.Error, how TorchScript surfaces a raise), p = 1
    gives zeros."""
    x = torch.randn(2, 3, 8, 8).contiguous(memory_format=torch.channels_last)
    y = _script(DropBlock2d(0.3, 3))(x)
    assert y.is_contiguous(memory_format=torch.channels_last)
    x = torch.ones(2, 3, 8, 8)
    with torch.no_grad():
        y = _script(DropBlock2d(0.3, 3, inplace=True))(x)
    assert y.data_ptr() == x.data_ptr() and bool((x == 0).any())
    with pytest.raises(torch.jit.Error, match="drop_block2d: input must have ndim 4"):
        _script(DropBlock2d(0.3, 3))(torch.ones(3, 8, 8))
    with pytest.raises(torch.jit.Error, match="drop_block3d: input must have ndim 5"):
        _script(DropBlock3d(0.3, 3))(torch.ones(3, 8, 8, 8))
    for layer, shape in ((DropBlock2d(1.0, 3), (2, 3, 5, 5)), (Dropout(1.0), (4,)),
                         (DropBlock1d(1.0, 2, fixed_blocks=True), (3, 5))):
        assert torch.equal(_script(layer)(torch.ones(shape)), torch.zeros(shape))


def test_scripted_model_trains_evaluates_and_saves() -> None:
    """A CNN with BatchNorm, DropBlock2d, Dropout and DropConnectLinear: the scripted model
    trains (gradients flow, random output), its eval output is the eager one, and it survives
    torch.jit.save / load."""
    torch.manual_seed(0)  # weights only; the layers' masks come from their generators
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), DropBlock2d(0.2, 3),
        nn.Conv2d(8, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), Dropout(0.3),
        DropConnectLinear(4 * 8 * 8, 5, p=0.2), GaussianDropout(0.1))
    scripted = _script(model)
    x = torch.randn(6, 3, 8, 8, generator=_gen(3))
    out1, out2 = scripted(x), scripted(x)
    assert not torch.allclose(out1, out2)
    out1.sum().backward()
    grads = [p.grad for p in scripted.parameters()]
    assert all(g is not None and bool(torch.isfinite(g).all()) for g in grads)
    model.eval()
    scripted.eval()
    torch.testing.assert_close(scripted(x), model(x))
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # as torch.jit.script
        torch.jit.save(scripted, buffer)
        buffer.seek(0)
        loaded = torch.jit.load(buffer)
    torch.testing.assert_close(loaded(x), model(x))


def test_weight_drop_refuses_script_by_name_and_its_recipe_works() -> None:
    """WeightDrop (parametrize, ``*args``) cannot be scripted: the error says why, also from
    inside a model; the eval-mode recipe of the message gives a scripted wrapped module."""
    wd = WeightDrop(nn.LSTM(3, 4, batch_first=True), "weight_hh_l0", p=0.5)
    with pytest.raises(TypeError, match="WeightDrop cannot be compiled by torch.jit.script"):
        _script(wd)
    with pytest.raises(TypeError, match="parametrize"):
        _script(nn.Sequential(nn.Linear(3, 3), WeightDrop(nn.Linear(3, 3), "weight")))
    wd = WeightDrop(nn.Linear(3, 4), "weight", p=0.5)
    x = torch.randn(2, 5, 3, generator=_gen(4))
    wd.eval()
    expected = wd(x)
    for name in wd.weights:
        torch.nn.utils.parametrize.remove_parametrizations(wd.module, name)
    torch.testing.assert_close(_script(wd.module)(x), expected)


def test_scripted_mask_dropout_is_identity_in_eval_and_refuses_to_draw() -> None:
    layer = MaskDropout(KeepExactly(2))
    scripted = _script(layer)
    x = torch.randn(3, 4)
    with pytest.raises(torch.jit.Error, match="MaskDropout cannot draw under torch.jit.script"):
        scripted(x)
    scripted.eval()
    assert scripted(x).data_ptr() == x.data_ptr()
