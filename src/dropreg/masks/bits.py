"""Bernoulli masks as packed bits: exact for every float ``p``, 64 entries per random word.

Per-example DropConnect needs ``N x out x in`` Bernoulli entries; drawing each as a float
uniform (``torch.bernoulli``) costs one 24- or 53-bit uniform per entry. Here each entry is one bit
of an int64 word and the words are drawn in bulk from the generator's integer stream
(``random_`` over the full 64-bit range).

**The law is exact.** An entry is ``[U < p]`` for a uniform ``U = 0.u_1 u_2 ...`` (binary) on
[0, 1), compared with the binary expansion ``p = 0.t_1 t_2 ... t_e`` of the float ``p`` (every
float is a dyadic rational ``k / 2^e``), digit by digit from the most significant: at the first
``j`` with ``u_j != t_j`` the entry is decided, ``1`` if ``t_j = 1`` (so ``U < p``) and ``0``
otherwise; an entry still undecided after the ``e`` digits of ``p`` has ``U >= p`` and is ``0``.
So ``P(entry = 1) = p`` exactly, with no rounding of ``p`` to 24, 32 or 53 bits (Knuth and Yao
1976 read the digits of ``p`` the same way). The 64 lanes of a word are compared at once with
bitwise operations ("bit slicing"), one random word per digit; after digit ``j`` a lane is still
undecided with probability ``2^-j``, and the words whose lanes are all decided are dropped from
the loop (compaction), so a draw costs about 1 random word per 64 entries for ``p = 1/2``,
``b`` words for a ``p`` whose binary expansion ends at digit ``b`` when ``b <= 7`` (``p = 1/4,
3/8, ...``), and on average about 7 words per 64 entries for any other ``p``.

``torch.bernoulli(p)`` on float32 compares a float uniform with ``p`` and so realises ``p`` only
to the precision of its uniform (a float32 uniform has 24 bits: a bias up to ``2^-24``).

Example:
    >>> g = torch.Generator().manual_seed(0)
    >>> words = bernoulli_bits(1000, 0.25, generator=g)
    >>> words.shape, words.dtype
    (torch.Size([16]), torch.int64)
    >>> bits = unpack_bits(words, 1000)
    >>> bits.shape, bits.dtype
    (torch.Size([1000]), torch.bool)
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from fractions import Fraction

import torch

from dropreg._checks import check_int, check_probability

__all__ = ["bernoulli_bits", "binary_digits", "compare_planes", "unpack_bits", "byte_table"]

#: A word whose 64 bits are all set (the int64 ``-1``).
ALL_ONES: int = -1


def binary_digits(p: float) -> list[int]:
    """The binary digits ``t_1, ..., t_e`` of a float ``p`` in [0, 1): ``p = sum_j t_j 2^-j``
    exactly, ``t_e = 1`` (empty for ``p = 0``).

    Example:
        >>> binary_digits(0.375)
        [0, 1, 1]
        >>> len(binary_digits(0.1))  # 0.1 as a float is 3602879701896397 / 2**55
        55
    """
    num, den = Fraction(p).as_integer_ratio()
    e = den.bit_length() - 1
    return [(num >> (e - j)) & 1 for j in range(1, e + 1)]


def compare_planes(digits: list[int], num_words: int,
                   draw: Callable[[int, torch.Tensor | None, torch.Tensor], None],
                   device: torch.device | str | None = None) -> torch.Tensor:
    """Bit-sliced ``[U < p]`` over ``64 * num_words`` lanes: the kernel of :func:`bernoulli_bits`.

    ``draw(j, index, out)`` writes into ``out`` the random words of digit ``j`` (0-based) for the
    words ``index`` (``None``: all ``num_words``); lane ``l`` of word ``w`` has ``u_{j+1} = `` bit
    ``l`` of that word. Per digit, with ``d`` the undecided lanes: ``t = 1`` decides the lanes of
    ``d & ~u`` as 1 (``U < p``) and keeps ``d & u``; ``t = 0`` decides ``d & u`` as 0 and keeps
    ``d & ~u``. Words with no undecided lane leave the loop once they are fewer than half of those
    still in it.

    Example:
        >>> # p = 1/2: one digit t_1 = 1, so the result is the complement of the drawn word
        >>> compare_planes([1], 1, lambda j, index, out: out.fill_(5))
        tensor([-6])
    """
    result = torch.zeros(num_words, dtype=torch.int64, device=device)
    undecided = torch.full((num_words,), ALL_ONES, dtype=torch.int64, device=device)
    u = torch.empty_like(undecided)
    index: torch.Tensor | None = None  # words still in the loop (None: all)
    res = result
    for j, t in enumerate(digits):
        draw(j, index, u)
        if t:
            u.bitwise_and_(undecided)       # d & u: still undecided (u_j = t_j = 1)
            undecided.bitwise_xor_(u)       # d & ~u: decided at digit j, U < p
            res.bitwise_or_(undecided)
        else:
            u.bitwise_not_().bitwise_and_(undecided)  # d & ~u: still undecided (u_j = t_j = 0)
        undecided, u = u, undecided
        if j >= 5 and j + 1 < len(digits):  # compaction
            n_now = int(undecided.numel())
            n_alive = int(torch.count_nonzero(undecided))
            if n_alive == 0:
                break
            if 2 * n_alive <= n_now:
                alive = torch.nonzero(undecided).squeeze(1)
                if index is None:
                    index = alive
                else:
                    result[index] = res
                    index = index[alive]
                res, undecided = res[alive], undecided[alive]
                u = torch.empty_like(undecided)
    if index is not None:
        result[index] = res
    return result


#: Words sampled per block by :func:`bernoulli_bits` (a block's work stays in the CPU cache).
BLOCK_WORDS: int = 2**15


def bernoulli_bits(
    num: int,
    p: float,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """``ceil(num / 64)`` int64 words whose bits are iid Bernoulli(``p``), ``p`` exact.

    Entry ``i`` is bit ``i % 64`` of word ``i // 64`` (:func:`unpack_bits`); the bits past
    ``num`` of the last word are drawn as well. The words are sampled in blocks of
    :data:`BLOCK_WORDS`. See the module docstring for the law and the cost.

    Args:
        num: number of entries (>= 0).
        p: probability that an entry is 1, in [0, 1].
        generator: source of the random words.
        device: device of the words.

    Example:
        >>> w = bernoulli_bits(64 * 4000, 0.3, generator=torch.Generator().manual_seed(1))
        >>> frac = float(unpack_bits(w, 64 * 4000).double().mean())
        >>> abs(frac - 0.3) < 5 * (0.3 * 0.7 / (64 * 4000)) ** 0.5
        True
    """
    num = check_int("num", num, minimum=0)
    p = check_probability("p", p)
    words = -(-num // 64)
    if device is None and generator is not None:
        device = generator.device
    if p == 1.0:
        return torch.full((words,), ALL_ONES, dtype=torch.int64, device=device)
    digits = binary_digits(p)

    def draw(j: int, index: torch.Tensor | None, out: torch.Tensor) -> None:
        out.random_(-(2**63), None, generator=generator)

    out = torch.empty(words, dtype=torch.int64, device=device)
    for start in range(0, words, BLOCK_WORDS):
        n = min(BLOCK_WORDS, words - start)
        out[start:start + n] = compare_planes(digits, n, draw, device)
    return out


@functools.lru_cache(maxsize=32)
def _byte_table_cached(values: tuple[float, float], dtype: torch.dtype,
                       device: torch.device) -> torch.Tensor:
    k = torch.arange(256, device=device)[:, None]
    bits = (k >> torch.arange(8, device=device)[None, :]) & 1
    lo, hi = values
    return torch.where(bits.bool(), torch.tensor(hi, dtype=torch.float64, device=device),
                       torch.tensor(lo, dtype=torch.float64, device=device)).to(dtype)


def byte_table(zero: float, one: float, dtype: torch.dtype,
               device: torch.device | str | None = None) -> torch.Tensor:
    """``(256, 8)`` table: row ``b`` holds ``one`` where bit ``k`` of the byte ``b`` is set and
    ``zero`` elsewhere, so ``table[byte]`` unpacks 8 mask entries at once (a gather).

    Example:
        >>> byte_table(0.0, 2.0, torch.float32)[5]
        tensor([2., 0., 2., 0., 0., 0., 0., 0.])
    """
    device = torch.device(device) if device is not None else torch.device("cpu")
    return _byte_table_cached((float(zero), float(one)), dtype, device)


def unpack_bits(words: torch.Tensor, num: int) -> torch.Tensor:
    """The first ``num`` bits of int64 ``words`` as a bool tensor (entry ``i`` is bit ``i % 64``
    of word ``i // 64``, on any host byte order).

    Example:
        >>> unpack_bits(torch.tensor([6]), 4)
        tensor([False,  True,  True, False])
    """
    shifts = torch.arange(64, device=words.device)
    bits = (words[:, None] >> shifts) & 1
    return bits.reshape(-1)[:num].bool()
