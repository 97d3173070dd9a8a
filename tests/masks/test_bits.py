"""Packed Bernoulli bits (dropreg.masks.bits): the law is exactly [U < p] for every float p."""

from __future__ import annotations

import math
import sys
from fractions import Fraction

import pytest
import torch

from dropreg.masks.bits import (
    bernoulli_bits,
    binary_digits,
    byte_table,
    compare_planes,
    unpack_bits,
)


def _lane_bits(words: torch.Tensor) -> torch.Tensor:
    """(n_words, 64) 0/1 int64: lane l of word w."""
    return (words[:, None] >> torch.arange(64)) & 1


@pytest.mark.parametrize("num,e", [(1, 1), (1, 2), (3, 3), (5, 4), (7, 5), (13, 6), (63, 6)])
def test_exact_probability_by_enumerating_every_bit_pattern(num: int, e: int) -> None:
    """p = num / 2^e: the 64 lanes of a word see all 2^6 patterns of 6 digits (lane l, digit j:
    bit j of l), so exactly 64 p lanes are 1 -- the law is Bernoulli(p) with no rounding."""
    p = num / 2**e
    digits = binary_digits(p)
    assert sum(t * Fraction(1, 2 ** (j + 1)) for j, t in enumerate(digits)) == Fraction(p)
    # digit j of lane l = bit (5 - j) of l, so lane l reads U = l / 64 (as a signed int64 word)
    planes = [sum(((lane >> (5 - j)) & 1) << lane for lane in range(64)) for j in range(6)]
    planes = [w - 2**64 if w >= 2**63 else w for w in planes]

    def draw(j, index, out):
        out.fill_(planes[j])

    res = compare_planes(digits, 3, draw)
    ones = _lane_bits(res).sum(1)
    assert ones.tolist() == [64 * num // 2**e] * 3
    # and lane l is 1 exactly when U = l / 64 < p
    assert _lane_bits(res)[0].tolist() == [int(Fraction(l, 64) < Fraction(p)) for l in range(64)]


@pytest.mark.parametrize("p", [0.1, 0.3, 0.5, 0.7, 1e-3, 1 - 2**-53, 2**-60, 5e-324, 0.0])
def test_each_lane_is_u_below_p_against_exact_arithmetic(p: float) -> None:
    """Random digit words (a fixed table): every lane equals [U < p] computed with integers on
    the first e digits (e = all the digits of p), through the compaction path."""
    digits = binary_digits(p)
    e = len(digits)
    n_words = 96
    g = torch.Generator().manual_seed(1)
    table = torch.empty(max(e, 1), n_words, dtype=torch.int64).random_(-(2**63), None,
                                                                       generator=g)

    def draw(j, index, out):
        out.copy_(table[j] if index is None else table[j, index])

    res = _lane_bits(compare_planes(digits, n_words, draw))
    num = Fraction(p).numerator * 2**e // Fraction(p).denominator if e else 0
    bits = _lane_bits(table.reshape(-1)).view(max(e, 1), n_words, 64)  # digit, word, lane
    for w in range(0, n_words, 7):
        for lane in range(0, 64, 5):
            u = 0
            for j in range(e):
                u = 2 * u + int(bits[j, w, lane])
            assert int(res[w, lane]) == int(u < num), (w, lane)


@pytest.mark.parametrize("p", [0.5, 0.3, 0.1, 0.01, 0.9])
def test_bernoulli_bits_moments_within_standard_error(p: float) -> None:
    """Mean of the bits within 5 s.e. of p, the correlation of neighbouring entries (across lanes
    and across words) within 5 s.e. of 0, and each lane position at rate p within 5 s.e."""
    n = 64 * 20000
    bits = unpack_bits(bernoulli_bits(n, p, generator=torch.Generator().manual_seed(2)), n)
    z = bits.to(torch.float64)
    se = math.sqrt(p * (1 - p) / n)
    assert abs(float(z.mean()) - p) <= 5 * se
    c = (z - p) / math.sqrt(p * (1 - p))
    for lag in (1, 64):
        assert abs(float((c[lag:] * c[:-lag]).mean())) <= 5 / math.sqrt(n - lag)
    per_lane = z.view(-1, 64).mean(0)
    assert float((per_lane - p).abs().max()) <= 5 * math.sqrt(p * (1 - p) / (n // 64))


def test_edges_layout_and_errors() -> None:
    assert bernoulli_bits(0, 0.3).numel() == 0
    assert bool((bernoulli_bits(100, 1.0) == -1).all())
    assert bool((bernoulli_bits(100, 0.0) == 0).all())
    g = torch.Generator().manual_seed(3)
    assert torch.equal(bernoulli_bits(1000, 0.3, generator=torch.Generator().manual_seed(3)),
                       bernoulli_bits(1000, 0.3, generator=g))
    words = bernoulli_bits(640, 0.4, generator=g)
    bits = unpack_bits(words, 640)
    if sys.byteorder == "little":  # the byte table reads the words' bytes in the same order
        table = byte_table(0.0, 1.0, torch.float64)
        assert torch.equal(table[words.view(torch.uint8).long()].reshape(-1), bits.double())
    with pytest.raises(ValueError, match="num"):
        bernoulli_bits(-1, 0.5)
    with pytest.raises(ValueError, match="p must be in"):
        bernoulli_bits(10, 1.5)
