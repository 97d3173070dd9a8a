"""Every layer under torch.jit.trace, torch.compile(fullgraph=True), torch.export (train and eval)
and torch.func.vmap(randomness="different"); under capture the DropBlock layers take the dense
sampler, whose realised drop fraction is p and whose output is unbiased (tested here)."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from dropreg.masks.base import capturing
from dropreg.nn import (
    DropBlock1d,
    DropBlock2d,
    DropBlock3d,
    DropConnectConv2d,
    DropConnectLinear,
    Dropout,
    GaussianDropout,
)

LAYERS = {
    "DropBlock2d": (lambda: DropBlock2d(0.2, 3), (4, 3, 8, 8)),
    "DropBlock1d": (lambda: DropBlock1d(0.2, 3), (4, 3, 10)),
    "DropBlock3d": (lambda: DropBlock3d(0.2, 2), (2, 3, 4, 4, 4)),
    "Dropout": (lambda: Dropout(0.2), (4, 5)),
    "GaussianDropout": (lambda: GaussianDropout(0.2), (4, 5)),
    "DropConnectLinear": (lambda: DropConnectLinear(5, 3, p=0.2), (4, 5)),
    "DropConnectLinear-per-example": (lambda: DropConnectLinear(5, 3, p=0.2, per_example=True),
                                      (4, 5)),
    "DropConnectConv2d": (lambda: DropConnectConv2d(3, 2, 3, p=0.2), (2, 3, 6, 6)),
}


def _run(path: str, layer: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if path == "trace":
            return torch.jit.trace(layer, x, check_trace=False)(x)
        if path == "compile":
            torch._dynamo.reset()
            return torch.compile(layer, fullgraph=True)(x)
        if path == "export-train":
            return torch.export.export(layer.train(), (x,)).module()(x)
        if path == "export-eval":
            return torch.export.export(layer.eval(), (x,)).module()(x)
        if path == "vmap":
            return torch.func.vmap(layer, randomness="different")(torch.stack([x, x]))[0]
    raise AssertionError(path)


@pytest.mark.parametrize("path", ["trace", "compile", "export-train", "export-eval", "vmap"])
@pytest.mark.parametrize("name", list(LAYERS))
def test_every_layer_captures_on_every_path(name: str, path: str) -> None:
    """The captured layer runs; in training it is random (some entry changed), in eval exact."""
    make, shape = LAYERS[name]
    layer = make()
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0)) + 3.0
    eager_eval = layer.eval()(x)
    layer.train()
    y = _run(path, layer, x)
    assert y.shape == eager_eval.shape
    if path == "export-eval":
        torch.testing.assert_close(y, eager_eval)
    else:
        assert not torch.allclose(y, eager_eval)


@pytest.mark.parametrize("path", ["compile", "export-train", "vmap", "trace"])
@pytest.mark.parametrize(("cls", "shape"), [(DropBlock2d, (200, 4, 7, 9)),
                                            (DropBlock3d, (100, 4, 4, 5, 5))])
def test_captured_dropblock_drops_exactly_p_and_is_unbiased(path, cls, shape) -> None:
    """The dense sampler taken under capture: mean drop fraction p and E[output] = input, each
    within 5 standard errors of the per-map sample."""
    layer = cls(0.25, 3)
    x = torch.ones(shape, dtype=torch.float64)
    y = _run(path, layer, x)
    planes = y.reshape(shape[0] * shape[1], -1)
    frac = (planes == 0).to(torch.float64).mean(1)
    assert abs(float(frac.mean()) - 0.25) <= 5 * float(frac.std()) / math.sqrt(len(frac))
    mean = planes.mean(0)
    se = planes.std(0) / math.sqrt(len(planes))
    assert bool(((mean - 1).abs() <= 5 * se).all())


def test_vmap_gives_each_entry_its_own_mask_and_capturing_is_detected() -> None:
    seen = []

    def f(x: torch.Tensor) -> torch.Tensor:
        seen.append(capturing())
        return DropBlock2d(0.3, 2)(x)

    y = torch.func.vmap(f, randomness="different")(torch.ones(3, 2, 2, 6, 6))
    assert seen == [True] and not capturing()
    assert not torch.equal(y[0], y[1]) and not torch.equal(y[1], y[2])


def test_per_example_drop_connect_keeps_the_autocast_dtype() -> None:
    """Under bf16 autocast the per-example path returns bf16, as the per-batch path does."""
    x = torch.randn(4, 5)
    for per_example in (False, True):
        layer = DropConnectLinear(5, 3, p=0.2, per_example=per_example)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert layer(x).dtype == torch.bfloat16, per_example


@pytest.mark.parametrize("path", ["eager", "compile"])
@pytest.mark.parametrize("share", [False, True])
def test_channels_last_layout_is_kept_and_values_match(path: str, share: bool) -> None:
    """channels_last in, channels_last out (as ``nn.Dropout``); the same draw as on the
    contiguous tensor in eager mode; gradients equal the output's mask."""
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    xc = x.contiguous(memory_format=torch.channels_last).requires_grad_(True)
    layer = DropBlock2d(0.3, 3, share_channels=share)
    if path == "compile":
        torch._dynamo.reset()
        layer = torch.compile(layer, fullgraph=True)
        y = layer(xc)
    else:
        layer.generator = torch.Generator().manual_seed(5)
        y = layer(xc)
        layer.generator = torch.Generator().manual_seed(5)
        torch.testing.assert_close(y, layer(x))
    assert y.is_contiguous(memory_format=torch.channels_last)
    y.sum().backward()
    torch.testing.assert_close(xc.grad * xc.detach(), y.detach())
