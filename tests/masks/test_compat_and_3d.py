"""DropBlock3d's law by exact enumeration; timm / torchvision arguments of the DropBlock layers."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

import dropreg.nn.functional as DF
from dropreg.masks import SlidingBlocks2d, SlidingBlocks3d
from dropreg.nn import DropBlock2d, DropBlock3d, Dropout, GaussianDropout


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --------------------------------------------------------------------------- SlidingBlocks3d law

VOLUMES = [((2, 3, 3), 2), ((3, 2, 4), (2, 1, 3)), ((2, 2, 2), 5), ((1, 3, 4), (1, 2, 2)),
           ((3, 3, 3), (2, 2, 2))]


@pytest.mark.parametrize(("shape", "block"), VOLUMES)
@pytest.mark.parametrize("p", [0.1, 0.45])
def test_3d_support_matches_closed_form_moments(shape, block, p) -> None:
    """Mean, second moment and drop fraction from the enumerated seed patterns, float64."""
    law = SlidingBlocks3d(p, block)
    masks, probs = law.support(shape)
    flat = masks.reshape(len(probs), -1)
    torch.testing.assert_close(probs.sum(), torch.tensor(1.0, dtype=torch.float64))
    torch.testing.assert_close(probs @ flat, law.mean(shape).reshape(-1), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(flat.T @ (probs[:, None] * flat), law.second_moment(shape),
                               rtol=1e-12, atol=1e-14)
    assert abs(1.0 - float(probs @ flat.mean(1)) - p) < 1e-12


def test_3d_law_reduces_to_2d_on_a_single_slice() -> None:
    """A depth-1 volume with depth-1 blocks is the 2-D law: same mean and covariance."""
    law3, law2 = SlidingBlocks3d(0.3, (1, 2, 3)), SlidingBlocks2d(0.3, (2, 3))
    torch.testing.assert_close(law3.mean((1, 4, 5))[0], law2.mean((4, 5)))
    torch.testing.assert_close(law3.normalized_covariance((1, 4, 5)),
                               law2.normalized_covariance((4, 5)))


@pytest.mark.parametrize(("shape", "block"),
                         [((4, 6, 5), 3), ((7, 7, 7), 7), ((5, 9, 9), (2, 3, 4))])
@pytest.mark.parametrize("p", [0.05, 0.3, 0.9])
def test_3d_drop_fraction_is_exactly_p(shape, block, p) -> None:
    assert abs(SlidingBlocks3d(p, block).drop_fraction(shape) - p) < 1e-12


def test_3d_sampled_masks_follow_the_law() -> None:
    """Keep rate per position and E[z z^T] of 20000 sampled masks within 5 s.e. of the law."""
    law, shape, n = SlidingBlocks3d(0.35, 2), (2, 3, 3), 20_000
    z = law.sample((n,), shape, generator=_gen(3), dtype=torch.float64).reshape(n, -1)
    mu = law.mean(shape).reshape(-1)
    assert bool(((z.mean(0) - mu).abs() <= 5 * z.std(0) / math.sqrt(n) + 1e-12).all())
    prods = z[:, :, None] * z[:, None, :]
    se = prods.std(0) / math.sqrt(n)
    assert bool(((prods.mean(0) - law.second_moment(shape)).abs() <= 5 * se + 1e-12).all())
    scaled = law.sample_scaled((50,), shape, generator=_gen(3), dtype=torch.float64)
    inv = (1 / mu).reshape(shape)
    assert bool(((scaled == 0) | (scaled == inv)).all()) and bool((scaled == inv).any())


def test_drop_block3d_layer_is_unbiased_and_drops_p() -> None:
    """Realised drop fraction and E[output] / input = 1 within 5 s.e.; eval is the identity."""
    layer = DropBlock3d(0.2, 3, generator=_gen(4))
    x = torch.ones(400, 2, 4, 5, 5, dtype=torch.float64)
    y = layer(x)
    frac = (y == 0).to(torch.float64).mean((2, 3, 4)).reshape(-1)
    assert abs(float(frac.mean()) - 0.2) <= 5 * float(frac.std()) / math.sqrt(frac.numel())
    m = y.reshape(-1, 100)
    assert bool(((m.mean(0) - 1).abs() <= 5 * m.std(0) / math.sqrt(m.shape[0])).all())
    assert layer.eval()(x) is x
    assert isinstance(layer.law, SlidingBlocks3d)
    with pytest.raises(ValueError, match="ndim 5"):
        DF.drop_block3d(torch.ones(2, 3, 4, 4), 0.1, 3)


def test_share_channels_3d() -> None:
    y = DropBlock3d(0.3, 2, share_channels=True, generator=_gen(5))(torch.ones(3, 4, 3, 3, 3))
    assert bool(((y == 0) == (y[:, :1] == 0)).all())


# --------------------------------------------------------------------------- timm / torchvision


@pytest.mark.parametrize("cls", [DropBlock2d, DropBlock3d])
def test_timm_defaults_and_drop_prob_alias(cls) -> None:
    layer = cls()
    assert (layer.p, layer.block_size) == (0.1, 7)
    layer.drop_prob = 0.3  # what timm-era schedulers do
    assert layer.p == 0.3 and layer.drop_prob == 0.3 and layer.law.p == 0.3
    assert cls(drop_prob=0.2).p == 0.2 and cls(0.2).p == 0.2
    with pytest.raises(TypeError, match="not both"):
        cls(0.1, drop_prob=0.2)
    with pytest.raises(ValueError, match=r"p must be in \[0, 1\]"):
        layer.drop_prob = 2.0
    assert cls(couple_channels=True).share_channels is True
    layer.couple_channels = False
    assert layer.share_channels is False


@pytest.mark.parametrize("name", ["batchwise", "fast"])
def test_timm_removed_arguments_warn(name) -> None:
    with pytest.warns(DeprecationWarning, match=name):
        layer = DropBlock2d(0.1, 3, **{name: True})
    assert layer.p == 0.1


@pytest.mark.parametrize(("kwargs", "hint"), [({"scale_by_keep": False}, "law.sample"),
                                              ({"gamma_scale": 2.0}, "set p"),
                                              ({"with_noise": True}, "GaussianDropout")])
def test_refused_timm_options_say_what_to_use(kwargs, hint) -> None:
    with pytest.raises(ValueError, match=hint):
        DropBlock2d(0.1, 3, **kwargs)


def test_rate_like_attribute_cannot_be_set_silently() -> None:
    layer = DropBlock2d(0.1, 3)
    for name in ["drop_rate", "keep_prob", "dropout"]:
        with pytest.raises(AttributeError, match="'p'"):
            setattr(layer, name, 0.5)
    with pytest.raises(AttributeError):
        Dropout(0.1).drop_rate = 0.2
    layer.some_other_name = 1  # ordinary attributes stay allowed
    assert layer.some_other_name == 1


def test_torchvision_positional_layer_and_functional() -> None:
    """``(p, block_size, inplace, eps)`` and ``drop_block2d(x, p, block_size, inplace, eps,
    training)`` as torchvision; inplace writes into the input when no gradient flows."""
    layer = DropBlock2d(0.2, 3, True, 1e-6, generator=_gen(6))
    assert layer.inplace and layer.eps == 1e-6
    x = torch.ones(2, 3, 8, 8)
    y = layer(x)
    assert y is x and bool((x == 0).any())
    x = torch.ones(2, 3, 8, 8)
    assert DF.drop_block2d(x, 0.2, 3, False, 1e-6, False) is x
    y = DF.drop_block2d(x, 0.2, 3, True, 1e-6, True, generator=_gen(6))
    assert y is x and bool((x == 0).any())
    xg = torch.ones(2, 3, 8, 8, requires_grad=True)
    yg = DF.drop_block2d(xg, 0.2, 3, True, 1e-6, True, generator=_gen(6))
    assert yg is not xg  # autograd recording: computed out of place
    yg.sum().backward()
    torch.testing.assert_close(xg.grad, yg.detach())
    with pytest.raises(ValueError, match="eps"):
        DF.drop_block2d(x, 0.2, 3, False, -1.0)
    x3 = torch.ones(2, 2, 4, 4, 4)
    assert DF.drop_block3d(x3, 0.2, 2, True, 1e-6, True, generator=_gen(1)) is x3


def test_zero_dim_tensor_p() -> None:
    """``p`` given as a 0-dim tensor, as ``nn.Dropout`` accepts it; other tensors refused."""
    for layer in (Dropout(torch.tensor(0.3)), GaussianDropout(torch.tensor(0.3)),
                  DropBlock2d(torch.tensor(0.3), 3), DropBlock3d(torch.tensor(0.3), 3)):
        assert layer.p == pytest.approx(0.3) and isinstance(layer.p, float)
    with pytest.raises(TypeError, match="0-dim"):
        Dropout(torch.tensor([0.3]))
    x = torch.ones(2, 3, 6, 6)
    a = DF.drop_block2d(x, torch.tensor(0.25), 3, generator=_gen(2))
    b = DF.drop_block2d(x, 0.25, 3, generator=_gen(2))
    assert torch.equal(a, b)


def test_no_deprecation_warning_on_plain_use() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        DropBlock2d(0.1, 3)(torch.ones(1, 1, 5, 5))
