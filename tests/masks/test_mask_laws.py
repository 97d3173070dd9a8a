"""Mask laws: support against closed-form moments (exact), samples against moments (5 s.e.)."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dropreg.masks import (
    SUPPORT_LIMIT,
    Bernoulli,
    Blocks,
    Custom,
    Gaussian,
    KeepExactly,
    MaskLaw,
    SlidingBlocks,
    SlidingBlocks2d,
    sliding_seed_rate,
)

ATOL = 1e-13


def _random_custom(width: int, size: int, seed: int) -> Custom:
    g = torch.Generator().manual_seed(seed)
    masks = (torch.rand(size, width, generator=g, dtype=torch.float64) < 0.6).to(torch.float64)
    masks[0] = 1.0  # every unit kept with positive probability
    probs = torch.rand(size, generator=g, dtype=torch.float64)
    return Custom(masks, probs / probs.sum())


LAWS_1D = [
    Bernoulli(0.0),
    Bernoulli(0.3),
    Bernoulli(0.9),
    Blocks(0.4, 1),
    Blocks(0.4, 2),
    Blocks(0.25, 3),  # 3 does not divide 7 or 8: shorter last block
    SlidingBlocks(0.3, 1),
    SlidingBlocks(0.3, 3),
    SlidingBlocks(0.6, 4),
    SlidingBlocks(0.1, 20),  # block longer than the width: clipped
    KeepExactly(1),
    KeepExactly(3),
    KeepExactly(7),
]


def _enumerate_moments(masks, probs):
    mu = probs @ masks
    second = masks.T @ (probs[:, None] * masks)
    return mu, second / torch.outer(mu, mu) - 1.0


@pytest.mark.parametrize("law", LAWS_1D, ids=repr)
@pytest.mark.parametrize("width", [7, 8])
def test_support_reproduces_closed_form_moments(law: MaskLaw, width: int) -> None:
    masks, probs = law.support(width)
    assert masks.dtype == probs.dtype == torch.float64
    assert masks.shape[1] == width and probs.shape == (masks.shape[0],)
    assert bool((probs > 0).all())
    assert abs(float(probs.sum()) - 1.0) < ATOL
    assert torch.unique(masks, dim=0).shape[0] == masks.shape[0]  # no duplicate masks
    mu, C = _enumerate_moments(masks, probs)
    torch.testing.assert_close(law.mean(width), mu, rtol=0, atol=ATOL)
    torch.testing.assert_close(law.normalized_covariance(width), C, rtol=0, atol=1e-12)
    torch.testing.assert_close(law.second_moment(width), masks.T @ (probs[:, None] * masks),
                               rtol=0, atol=ATOL)


def test_custom_support_and_moments() -> None:
    law = _random_custom(5, 9, seed=3)
    masks, probs = law.support(5)
    mu, C = _enumerate_moments(masks, probs)
    torch.testing.assert_close(law.mean(5), mu, rtol=0, atol=ATOL)
    torch.testing.assert_close(law.normalized_covariance(5), C, rtol=0, atol=1e-12)
    # duplicates are merged
    dup = Custom(torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]),
                 torch.tensor([0.25, 0.25, 0.5]))
    m, p = dup.support(2)
    assert m.shape == (2, 2) and sorted(p.tolist()) == [0.5, 0.5]


def test_blocks_structure_matches_pal() -> None:
    """C = lam (I_b kron 1_k 1_k^T) when k divides r (digest §2.3)."""
    p, k, b = 0.3, 3, 4
    lam = p / (1 - p)
    eye, ones = torch.eye(b, dtype=torch.float64), torch.ones(k, k, dtype=torch.float64)
    expected = lam * torch.kron(eye, ones)
    torch.testing.assert_close(Blocks(p, k).normalized_covariance(k * b), expected, rtol=0, atol=0)
    # non-divisible width: last block is the remainder
    z = Blocks(0.5, 3).sample((200,), 7, generator=torch.Generator().manual_seed(1))
    assert bool((z[:, 6] == z[:, 6]).all()) and bool((z[:, 0] == z[:, 2]).all())
    assert not bool((z[:, 5] == z[:, 6]).all())


def test_keep_exactly_formula_from_digest() -> None:
    r, s = 6, 2
    C = KeepExactly(s).normalized_covariance(r)
    a, c = (r - s) * r / (s * (r - 1)), (r - s) / (s * (r - 1))
    expected = a * torch.eye(r, dtype=torch.float64) - c * torch.ones(r, r, dtype=torch.float64)
    torch.testing.assert_close(C, expected, rtol=0, atol=ATOL)


def test_sliding_blocks_drops_exactly_p_and_covariance_formula() -> None:
    for width, k, p in itertools.product([5, 7, 16, 50], [1, 2, 3, 7], [1e-6, 0.1, 0.5, 0.95]):
        law = SlidingBlocks(p, k)
        assert abs(law.drop_fraction(width) - p) <= 1e-14 * p
        gamma = law.seed_rate(width)
        kk = min(k, width)
        # |S_i ∩ S_j| by brute force over seed positions
        S = [{s for s in range(width - kk + 1) if s <= i < s + kk} for i in range(width)]
        inter = torch.tensor([[len(S[i] & S[j]) for j in range(width)] for i in range(width)],
                             dtype=torch.float64)
        torch.testing.assert_close(law.normalized_covariance(width),
                                   (1 - gamma) ** (-inter) - 1, rtol=1e-12, atol=1e-14)


def test_sliding_seed_rate_small_p_is_relatively_exact() -> None:
    law = SlidingBlocks2d(1e-9, 7)
    assert abs(law.drop_fraction((56, 56)) - 1e-9) <= 1e-22
    assert sliding_seed_rate(torch.tensor([1, 1]), 0.25) == 0.25


@pytest.mark.parametrize("block", [1, 2, 3, (2, 3), (5, 1), 9])
@pytest.mark.parametrize("shape", [(3, 3), (4, 5), (2, 6)])
def test_2d_law_support_matches_moments(block, shape) -> None:
    law = SlidingBlocks2d(0.35, block)
    H, W = shape
    kh, kw = law.effective_block(shape)
    if 2 ** ((H - kh + 1) * (W - kw + 1)) > SUPPORT_LIMIT:
        pytest.skip("support too large")
    masks, probs = law.support(shape)
    assert masks.shape[1:] == (H, W)
    assert abs(float(probs.sum()) - 1.0) < ATOL
    flat = masks.reshape(masks.shape[0], -1)
    mu, C = _enumerate_moments(flat, probs)
    torch.testing.assert_close(law.mean(shape).reshape(-1), mu, rtol=0, atol=ATOL)
    torch.testing.assert_close(law.normalized_covariance(shape), C, rtol=0, atol=1e-12)
    assert abs(float(1 - mu.mean()) - 0.35) < 1e-14  # exact p by enumeration


def test_2d_law_drop_fraction_exact_on_many_maps() -> None:
    for H, W, b, p in itertools.product([1, 2, 5, 7, 8, 14, 28, 56], [3, 7, 13], [1, 2, 3, 5, 7, 9],
                                        [1e-7, 0.05, 0.1, 0.3, 0.9]):
        d = SlidingBlocks2d(p, b).drop_fraction((H, W))
        assert abs(d - p) <= 1e-14 * p, (H, W, b, p, d)


# --------------------------------------------------------------------------- sampling

SAMPLED = [
    (Bernoulli(0.3), 7),
    (Blocks(0.4, 3), 7),
    (SlidingBlocks(0.3, 3), 9),
    (KeepExactly(3), 7),
    (Gaussian(0.3), 6),
    (_random_custom(5, 7, seed=5), 5),
]


@pytest.mark.parametrize(("law", "width"), SAMPLED, ids=lambda v: repr(v))
def test_sample_moments_within_5_standard_errors(law: MaskLaw, width: int) -> None:
    n = 40_000
    g = torch.Generator().manual_seed(11)
    z = law.sample((n // 4, 4), width, generator=g, dtype=torch.float64).reshape(n, width)
    mu = law.mean(width)
    emp_mu = z.mean(0)
    se_mu = z.std(0) / math.sqrt(n)
    assert bool(((emp_mu - mu).abs() <= 5 * se_mu + 1e-15).all())
    prods = z[:, :, None] * z[:, None, :]
    emp_S = prods.mean(0)
    se_S = prods.std(0) / math.sqrt(n)
    S = law.second_moment(width)
    assert bool(((emp_S - S).abs() <= 5 * se_S + 1e-15).all())


def test_sample_2d_moments() -> None:
    law = SlidingBlocks2d(0.3, (3, 2))
    n = 20_000
    z = law.sample((n,), (5, 4), generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    z = z.reshape(n, -1)
    mu = law.mean((5, 4)).reshape(-1)
    assert bool(((z.mean(0) - mu).abs() <= 5 * z.std(0) / math.sqrt(n)).all())
    prods = z[:, :, None] * z[:, None, :]
    se = prods.std(0) / math.sqrt(n)
    assert bool(((prods.mean(0) - law.second_moment((5, 4))).abs() <= 5 * se + 1e-15).all())


@pytest.mark.parametrize("law", [Bernoulli(0.5), Blocks(0.5, 2), SlidingBlocks(0.5, 3),
                                 KeepExactly(2), Gaussian(0.5), _random_custom(5, 4, 0)],
                         ids=repr)
def test_sample_shape_dtype_determinism(law: MaskLaw) -> None:
    w = 5
    a = law.sample((2, 3), w, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    b = law.sample((2, 3), w, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    assert a.shape == (2, 3, w) and a.dtype == torch.float64
    assert torch.equal(a, b)
    assert law.sample((), w).shape == (w,)
    assert law.sample((0,), w).shape == (0, w)
    assert law.sample((4,), w, dtype=torch.bfloat16).dtype == torch.bfloat16


def test_keep_exactly_keeps_exactly() -> None:
    z = KeepExactly(3).sample((100,), 8, generator=torch.Generator().manual_seed(0))
    assert bool((z.sum(-1) == 3).all())


def test_p_one_and_p_zero() -> None:
    assert torch.equal(Bernoulli(1.0).sample((3,), 4), torch.zeros(3, 4))
    assert torch.equal(Bernoulli(0.0).sample((3,), 4), torch.ones(3, 4))
    assert torch.equal(SlidingBlocks(1.0, 2).sample((3,), 4), torch.zeros(3, 4))
    assert torch.equal(SlidingBlocks2d(1.0, 2).sample((3,), (4, 4)), torch.zeros(3, 4, 4))
    assert torch.equal(SlidingBlocks2d(0.0, 3).sample((3,), (4, 4)), torch.ones(3, 4, 4))
    for law in [Bernoulli(1.0), Blocks(1.0, 2), SlidingBlocks(1.0, 2), KeepExactly(0)]:
        with pytest.raises(ValueError, match="undefined"):
            law.normalized_covariance(4)
        m, p = law.support(4)
        assert m.shape == (1, 4) and float(m.sum()) == 0.0 and float(p[0]) == 1.0


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan")])
def test_bad_p_value(bad) -> None:
    for cls in (Bernoulli, Gaussian):
        with pytest.raises(ValueError, match="p must be in"):
            cls(bad)
    with pytest.raises(ValueError, match="p must be in"):
        SlidingBlocks2d(bad, 3)


def test_bad_types_and_ranges() -> None:
    with pytest.raises(TypeError, match="p must be a real"):
        Bernoulli("0.5")
    with pytest.raises(TypeError, match="p must be a real"):
        Bernoulli(True)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        Gaussian(1.0)
    with pytest.raises(TypeError, match="block_size must be an int"):
        Blocks(0.1, 2.0)
    with pytest.raises(ValueError, match="block_size must be an int >= 1"):
        SlidingBlocks(0.1, 0)
    with pytest.raises(ValueError, match="block_size"):
        SlidingBlocks2d(0.1, (1, 2, 3))
    with pytest.raises(ValueError, match="width >= keep"):
        KeepExactly(5).mean(3)
    with pytest.raises(ValueError, match="width must be an int >= 1"):
        Bernoulli(0.1).mean(0)
    with pytest.raises(TypeError, match="dtype"):
        Bernoulli(0.1).sample((2,), 3, dtype=torch.int64)
    with pytest.raises(ValueError, match="SUPPORT_LIMIT"):
        Bernoulli(0.1).support(17)
    with pytest.raises(ValueError, match="no finite support"):
        Gaussian(0.1).support(2)
    with pytest.raises(ValueError, match="sum to 1"):
        Custom([[1.0, 0.0]], [0.5])
    with pytest.raises(ValueError, match="width 2"):
        Custom([[1.0, 0.0]], [1.0]).mean(3)
    with pytest.raises(ValueError, match="undefined"):
        Custom([[1.0, 0.0]], [1.0]).normalized_covariance(2)
    with pytest.raises(TypeError, match="shape"):
        SlidingBlocks2d(0.1, 3).mean(4)


@settings(max_examples=60, deadline=None)
@given(H=st.integers(1, 40), W=st.integers(1, 40), bh=st.integers(1, 12), bw=st.integers(1, 12),
       p=st.floats(1e-9, 1.0, exclude_max=True))
def test_2d_law_exact_p_property(H, W, bh, bw, p) -> None:
    law = SlidingBlocks2d(p, (bh, bw))
    assert abs(law.drop_fraction((H, W)) - p) <= 1e-13 * p
    mu = law.mean((H, W))
    assert mu.shape == (H, W) and bool((mu >= 0).all()) and bool((mu <= 1).all())
    assert 0.0 <= law.seed_rate((H, W)) <= p + 1e-15
