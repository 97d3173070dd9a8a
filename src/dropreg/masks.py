"""Mask laws: distributions of a random keep-mask ``z`` with exact first and second moments.

A *mask law* is the distribution of a random keep-mask ``z`` over ``width`` units. A dropout-type
layer applies ``h -> h * z / E[z]``, so everything the theory needs is a function of the mean
``mu = E[z]`` and of the *normalized covariance* ``C_ij = Cov(z_i, z_j) / (mu_i mu_j)`` (digest
``pal2020_structured_dropout.md`` §1.2 and §2.3), or, for exact checks on small widths, of the whole
support. Every law here provides:

- :meth:`MaskLaw.sample` -- masks of shape ``(*batch_shape, width)`` from an explicit generator;
- :meth:`MaskLaw.mean` -- ``E[z]`` as a float64 ``(width,)`` tensor, in closed form;
- :meth:`MaskLaw.normalized_covariance` -- ``C`` as a float64 ``(width, width)`` tensor;
- :meth:`MaskLaw.support` -- every mask with its probability, for brute-force checks. It raises
  ``ValueError`` when more than :data:`SUPPORT_LIMIT` configurations would have to be enumerated.

``p`` is the **drop** probability everywhere, as in ``torch.nn.Dropout``; papers that use the keep
probability ``theta`` are converted with ``p = 1 - theta``. ``lam = p / (1 - p)``.

The 2-D law :class:`SlidingBlocks2d` (DropBlock on an ``H x W`` map) has the same methods with a
``shape=(H, W)`` argument in place of ``width``.

Example:
    >>> law = Bernoulli(0.25)
    >>> law.mean(3)
    tensor([0.7500, 0.7500, 0.7500], dtype=torch.float64)
    >>> masks, probs = law.support(2)
    >>> float(probs.sum())
    1.0
    >>> z = law.sample((4,), 3, generator=torch.Generator().manual_seed(0))
    >>> z.shape
    torch.Size([4, 3])
"""

from __future__ import annotations

import abc
import functools
import itertools
import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass

import torch

__all__ = [
    "SUPPORT_LIMIT",
    "MaskLaw",
    "Bernoulli",
    "Blocks",
    "SlidingBlocks",
    "KeepExactly",
    "Gaussian",
    "Custom",
    "SlidingBlocks2d",
    "sliding_seed_rate",
]

#: Largest number of configurations (seed patterns, block patterns or masks) that ``support``
#: enumerates; above it ``support`` raises ``ValueError``.
SUPPORT_LIMIT: int = 2**16

_UNDEFINED = "{}: the normalized covariance is undefined because E[z] = 0 (every unit dropped)"


# --------------------------------------------------------------------------- validation helpers


def _check_probability(name: str, value: object, *, allow_one: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number in [0, 1], got {value!r}")
    v = float(value)
    hi_ok = v <= 1.0 if allow_one else v < 1.0
    if not (v >= 0.0 and hi_ok):
        rng = "[0, 1]" if allow_one else "[0, 1)"
        raise ValueError(f"{name} must be in {rng}, got {value!r}")
    return v


def _check_positive_int(name: str, value: object, *, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int >= {minimum}, got {value!r}")
    v = int(value)
    if v < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return v


def _check_batch_shape(batch_shape: object) -> tuple[int, ...]:
    if isinstance(batch_shape, numbers.Integral) and not isinstance(batch_shape, bool):
        batch_shape = (int(batch_shape),)
    if not isinstance(batch_shape, (tuple, list, torch.Size)):
        raise TypeError(f"batch_shape must be a tuple of ints >= 0, got {batch_shape!r}")
    out = []
    for s in batch_shape:
        out.append(_check_positive_int("batch_shape entry", s, minimum=0))
    return tuple(out)


def _check_float_dtype(dtype: torch.dtype) -> None:
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating-point torch.dtype, got {dtype!r}")


def _check_support_size(name: str, count: int) -> None:
    if count > SUPPORT_LIMIT:
        raise ValueError(
            f"{name}.support would enumerate {count} configurations, more than SUPPORT_LIMIT = "
            f"{SUPPORT_LIMIT}; use a smaller width, or the closed-form mean() and "
            "normalized_covariance()"
        )


def _all_bits(m: int) -> torch.Tensor:
    """All 2**m binary vectors of length m as a float64 (2**m, m) tensor (row b = bits of b)."""
    codes = torch.arange(2**m, dtype=torch.int64)[:, None]
    return ((codes >> torch.arange(m, dtype=torch.int64)) & 1).to(torch.float64)


def _aggregate(masks: torch.Tensor, probs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Merge identical masks (rows), summing their probabilities; drop zero-probability rows."""
    flat = masks.reshape(masks.shape[0], -1)
    uniq, inverse = torch.unique(flat, dim=0, return_inverse=True)
    agg = torch.zeros(uniq.shape[0], dtype=torch.float64).index_add_(0, inverse, probs)
    keep = agg > 0
    return uniq[keep].reshape(-1, *masks.shape[1:]), agg[keep]


def _normalized_from_moments(mu: torch.Tensor, second: torch.Tensor, name: str) -> torch.Tensor:
    if bool((mu <= 0).any()):
        raise ValueError(
            f"{name}: the normalized covariance Cov(z_i, z_j) / (mu_i mu_j) is undefined because "
            "some unit is never kept (E[z_i] = 0)"
        )
    return second / torch.outer(mu, mu) - 1.0


def _bernoulli_keep(
    shape: tuple[int, ...],
    keep: float,
    generator: torch.Generator | None,
    dtype: torch.dtype,
    device: torch.device | str | None,
) -> torch.Tensor:
    out = torch.empty(shape, dtype=dtype, device=device)
    return out.bernoulli_(keep, generator=generator)


# --------------------------------------------------------------------------- base class


class MaskLaw(abc.ABC):
    """Distribution of a keep-mask ``z`` over ``width`` units; layers apply ``h * z / E[z]``.

    Subclasses implement :meth:`sample`, :meth:`mean`, :meth:`normalized_covariance` and
    :meth:`support`; :meth:`second_moment` and :meth:`drop_fraction` follow from them.

    Example:
        The moments agree exactly with the enumerated support:

        >>> law = Blocks(0.25, 2)
        >>> masks, probs = law.support(4)
        >>> bool(torch.allclose(probs @ masks, law.mean(4)))
        True
        >>> bool(torch.allclose(masks.T @ (probs[:, None] * masks), law.second_moment(4)))
        True
    """

    @abc.abstractmethod
    def sample(
        self,
        batch_shape: tuple[int, ...],
        width: int,
        *,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> torch.Tensor:
        """Draw independent masks, one per batch index: a ``(*batch_shape, width)`` tensor.

        Example:
            >>> z = Bernoulli(0.5).sample((2, 3), 5, generator=torch.Generator().manual_seed(0),
            ...                           dtype=torch.float64)
            >>> z.shape, z.dtype, bool(((z == 0) | (z == 1)).all())
            (torch.Size([2, 3, 5]), torch.float64, True)
        """

    @abc.abstractmethod
    def mean(self, width: int) -> torch.Tensor:
        """``E[z_i]`` as a float64 ``(width,)`` tensor.

        Example:
            >>> KeepExactly(1).mean(4)
            tensor([0.2500, 0.2500, 0.2500, 0.2500], dtype=torch.float64)
        """

    @abc.abstractmethod
    def normalized_covariance(self, width: int) -> torch.Tensor:
        """``Cov(z_i, z_j) / (mu_i mu_j)`` as a float64 ``(width, width)`` tensor.

        Raises ``ValueError`` where some ``mu_i = 0`` (e.g. ``p = 1``): it is undefined there.

        Example:
            >>> Bernoulli(0.2).normalized_covariance(2)  # lam I, lam = p / (1 - p)
            tensor([[0.2500, 0.0000],
                    [0.0000, 0.2500]], dtype=torch.float64)
        """

    @abc.abstractmethod
    def support(self, width: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Every mask of positive probability: ``(masks (S, width), probs (S,))``, float64.

        Raises ``ValueError`` above :data:`SUPPORT_LIMIT` enumerated configurations.

        Example:
            >>> masks, probs = Blocks(0.5, 2).support(4)  # 2 blocks: 4 equally likely masks
            >>> masks.shape, probs.tolist()
            (torch.Size([4, 4]), [0.25, 0.25, 0.25, 0.25])
        """

    def second_moment(self, width: int) -> torch.Tensor:
        """``E[z z^T]`` as a float64 ``(width, width)`` tensor (= ``(C + 1) * mu mu^T``).

        Example:
            >>> Bernoulli(0.5).second_moment(2)  # E z_i^2 = 1 - p, E z_i z_j = (1 - p)^2
            tensor([[0.5000, 0.2500],
                    [0.2500, 0.5000]], dtype=torch.float64)
        """
        mu = self.mean(width)
        return (self.normalized_covariance(width) + 1.0) * torch.outer(mu, mu)

    def drop_fraction(self, width: int) -> float:
        """Expected fraction of dropped units, ``1 - mean(E[z_i])`` (for 0/1 masks).

        Example:
            >>> round(Blocks(0.3, 4).drop_fraction(10), 12), KeepExactly(3).drop_fraction(4)
            (0.3, 0.25)
        """
        return float((1.0 - self.mean(width)).mean())

    @staticmethod
    def _width(width: object) -> int:
        return _check_positive_int("width", width)


# --------------------------------------------------------------------------- Bernoulli


@dataclass(frozen=True)
class Bernoulli(MaskLaw):
    """Plain Dropout: ``z_i`` iid Bernoulli(1 - p).

    Moments (digest §2.3): ``mu = (1 - p) 1`` and ``C = lam I`` with ``lam = p / (1 - p)``.

    Args:
        p: drop probability in [0, 1] (a paper's keep probability ``theta`` is ``1 - p``).

    Example:
        >>> Bernoulli(0.5).normalized_covariance(2)
        tensor([[1., 0.],
                [0., 1.]], dtype=torch.float64)
    """

    p: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "p", _check_probability("p", self.p))

    def sample(
        self,
        batch_shape: tuple[int, ...],
        width: int,
        *,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> torch.Tensor:
        width = self._width(width)
        _check_float_dtype(dtype)
        shape = (*_check_batch_shape(batch_shape), width)
        return _bernoulli_keep(shape, 1.0 - self.p, generator, dtype, device)

    def mean(self, width: int) -> torch.Tensor:
        return torch.full((self._width(width),), 1.0 - self.p, dtype=torch.float64)

    def normalized_covariance(self, width: int) -> torch.Tensor:
        width = self._width(width)
        if self.p == 1.0:
            raise ValueError(_UNDEFINED.format("Bernoulli(p=1)"))
        return torch.eye(width, dtype=torch.float64) * (self.p / (1.0 - self.p))

    def support(self, width: int) -> tuple[torch.Tensor, torch.Tensor]:
        width = self._width(width)
        _check_support_size("Bernoulli", 2**width)
        masks = _all_bits(width)
        k = masks.sum(1)
        probs = (1.0 - self.p) ** k * self.p ** (width - k)
        keep = probs > 0
        return masks[keep], probs[keep]


# --------------------------------------------------------------------------- Blocks (Pal et al.)


@dataclass(frozen=True)
class Blocks(MaskLaw):
    """DropBlock as analysed by Pal et al.: contiguous non-overlapping blocks, kept or dropped.

    Units ``0..width-1`` are cut into blocks ``[g k, (g + 1) k)`` of ``k = block_size`` units; each
    block is kept with probability ``1 - p``, independently. When ``k`` does not divide ``width``
    the last block is the shorter remainder ``[k * (width // k), width)``, kept or dropped as one
    block with the same probability (so every unit still has ``E[z_i] = 1 - p``). ``k = 1`` is
    :class:`Bernoulli`.

    Moments (digest §1.2, §2.3): ``mu = (1 - p) 1``, ``C_ij = lam`` when ``i`` and ``j`` are in the
    same block and 0 otherwise (``C = lam (I_b kron 1_k 1_k^T)`` when ``k`` divides ``width``).

    Args:
        p: drop probability of each block, in [0, 1].
        block_size: units per block, an int >= 1.

    Example:
        >>> Blocks(0.5, 2).normalized_covariance(3)
        tensor([[1., 1., 0.],
                [1., 1., 0.],
                [0., 0., 1.]], dtype=torch.float64)
    """

    p: float
    block_size: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "p", _check_probability("p", self.p))
        object.__setattr__(self, "block_size", _check_positive_int("block_size", self.block_size))

    def n_blocks(self, width: int) -> int:
        """Number of blocks, ``ceil(width / block_size)``.

        Example:
            >>> Blocks(0.5, 3).n_blocks(7)
            3
        """
        return -(-self._width(width) // self.block_size)

    def block_index(self, width: int) -> torch.Tensor:
        """Block of each unit, an int64 ``(width,)`` tensor.

        Example:
            >>> Blocks(0.5, 3).block_index(7).tolist()
            [0, 0, 0, 1, 1, 1, 2]
        """
        return torch.arange(self._width(width)) // self.block_size

    def sample(
        self,
        batch_shape: tuple[int, ...],
        width: int,
        *,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> torch.Tensor:
        width = self._width(width)
        _check_float_dtype(dtype)
        shape = (*_check_batch_shape(batch_shape), self.n_blocks(width))
        blocks = _bernoulli_keep(shape, 1.0 - self.p, generator, dtype, device)
        return blocks.repeat_interleave(self.block_size, dim=-1)[..., :width]

    def mean(self, width: int) -> torch.Tensor:
        return torch.full((self._width(width),), 1.0 - self.p, dtype=torch.float64)

    def normalized_covariance(self, width: int) -> torch.Tensor:
        g = self.block_index(width)
        if self.p == 1.0:
            raise ValueError(_UNDEFINED.format("Blocks(p=1)"))
        return (g[:, None] == g[None, :]).to(torch.float64) * (self.p / (1.0 - self.p))

    def support(self, width: int) -> tuple[torch.Tensor, torch.Tensor]:
        width = self._width(width)
        b = self.n_blocks(width)
        _check_support_size("Blocks", 2**b)
        bits = _all_bits(b)
        k = bits.sum(1)
        probs = (1.0 - self.p) ** k * self.p ** (b - k)
        masks = bits[:, self.block_index(width)]
        keep = probs > 0
        return masks[keep], probs[keep]


# --------------------------------------------------------------------------- sliding blocks


def _coverage_1d(width: int, k: int) -> torch.Tensor:
    """Seeds [lo_i, hi_i] covering unit i; valid seeds are 0..width-k, each zeroing k units."""
    i = torch.arange(width)
    lo = (i - k + 1).clamp(min=0)
    hi = i.clamp(max=width - k)
    return torch.stack([lo, hi])


def _overlap_1d(width: int, k: int) -> torch.Tensor:
    """|S_i ∩ S_j| for the seed sets of units i, j: an int64 (width, width) tensor."""
    lo, hi = _coverage_1d(width, k)
    inter = torch.minimum(hi[:, None], hi[None, :]) - torch.maximum(lo[:, None], lo[None, :]) + 1
    return inter.clamp(min=0)


@functools.lru_cache(maxsize=1024)
def _solve_seed_rate(counts: tuple[tuple[int, int], ...], p: float) -> float:
    """Seed rate gamma such that sum_n c_n (1 - (1 - gamma)^n) / sum_n c_n = p.

    ``counts`` lists ``(n, c_n)``: ``c_n`` positions are covered by ``n >= 1`` seed positions. The
    mean drop fraction is increasing in gamma from 0 (gamma = 0) to 1 (gamma = 1), so the root is
    unique; it is bracketed and found by Brent's method to relative precision ~1e-15, with the drop
    fraction evaluated without cancellation (``-expm1(n log1p(-gamma))``).
    """
    if p == 0.0:
        return 0.0
    if p == 1.0:
        return 1.0
    import numpy as np
    from scipy.optimize import brentq

    n = np.array([c[0] for c in counts], dtype=np.float64)
    w = np.array([c[1] for c in counts], dtype=np.float64)
    w = w / w.sum()

    def excess(gamma: float) -> float:
        if gamma >= 1.0:
            return 1.0 - p
        return float(np.dot(w, -np.expm1(n * math.log1p(-gamma)))) - p

    # Bracket: gamma <= 1 - (1 - gamma)^n <= n gamma for n >= 1, so the drop fraction lies in
    # [gamma, mean(n) gamma] and the root in [p / mean(n), p].
    lo, hi = p / float(np.dot(w, n)), p
    f_lo, f_hi = excess(lo), excess(hi)
    if f_lo >= 0:
        return lo
    if f_hi <= 0:
        return hi
    return float(brentq(excess, lo, hi, xtol=1e-300, rtol=8.9e-16, maxiter=500))


def sliding_seed_rate(coverage: torch.Tensor, p: float) -> float:
    """Seed rate ``gamma`` making the mean drop fraction exactly ``p``.

    Position ``i`` is dropped unless all of its ``coverage[i] = n_i >= 1`` covering seeds are off,
    so ``E[z_i] = (1 - gamma)^{n_i}`` and the mean drop fraction is
    ``mean_i (1 - (1 - gamma)^{n_i})``; this solves it ``= p`` (unique root, cached).

    Args:
        coverage: integer tensor of covering-seed counts (any shape), all >= 1.
        p: requested drop fraction in [0, 1].

    Returns:
        ``gamma`` in [0, 1].

    Example:
        >>> g = sliding_seed_rate(torch.tensor([1, 2, 1]), 0.5)  # (2 g + 1 - (1 - g)^2) / 3 = 0.5
        >>> round(g, 6), round(2 - 2.5 ** 0.5, 6)
        (0.418861, 0.418861)
    """
    p = _check_probability("p", p)
    cov = torch.as_tensor(coverage).reshape(-1).to(torch.int64)
    if cov.numel() == 0 or bool((cov < 1).any()):
        raise ValueError("coverage must be a non-empty tensor of ints >= 1")
    vals, mult = torch.unique(cov, return_counts=True)
    counts = tuple((int(v), int(m)) for v, m in zip(vals.tolist(), mult.tolist()))
    return _solve_seed_rate(counts, p)


@dataclass(frozen=True)
class SlidingBlocks(MaskLaw):
    """1-D DropBlock in the style of Ghiasi et al., with the seed rate solved so it drops exactly p.

    Seeds sit at the valid positions ``s = 0..width-k`` (``k = min(block_size, width)``; a block
    longer than the width is clipped to it) and are on independently with probability ``gamma``;
    an on seed zeros units ``s..s+k-1``. Unit ``i`` is covered by ``n_i = |S_i|`` seeds, so
    ``E[z_i] = (1 - gamma)^{n_i}``: units near the ends are dropped less often. ``gamma`` is solved
    numerically (:func:`sliding_seed_rate`) so that the mean drop fraction
    ``mean_i (1 - E[z_i])`` equals ``p`` exactly, and a layer rescales each unit by its own fixed
    ``1 / E[z_i]``.

    Moments (digest §2.3): ``C_ij = (1 - gamma)^{-|S_i ∩ S_j|} - 1``.

    Args:
        p: mean drop fraction in [0, 1].
        block_size: units zeroed by one seed, an int >= 1 (``1`` is :class:`Bernoulli`).

    Example:
        >>> law = SlidingBlocks(0.3, 3)
        >>> round(law.drop_fraction(10), 12)
        0.3
    """

    p: float
    block_size: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "p", _check_probability("p", self.p))
        object.__setattr__(self, "block_size", _check_positive_int("block_size", self.block_size))

    def effective_block(self, width: int) -> int:
        """``min(block_size, width)``.

        Example:
            >>> SlidingBlocks(0.1, 5).effective_block(3)
            3
        """
        return min(self.block_size, self._width(width))

    def coverage(self, width: int) -> torch.Tensor:
        """``n_i``: number of seed positions covering unit ``i``, int64 ``(width,)``.

        Example:
            >>> SlidingBlocks(0.1, 3).coverage(6).tolist()  # seeds at 0..3, each covers 3 units
            [1, 2, 3, 3, 2, 1]
        """
        width = self._width(width)
        lo, hi = _coverage_1d(width, self.effective_block(width))
        return hi - lo + 1

    def seed_rate(self, width: int) -> float:
        """Probability ``gamma`` that a seed is on, solved so the mean drop fraction is ``p``.

        Example:
            >>> SlidingBlocks(0.25, 1).seed_rate(8)  # block_size 1: gamma = p
            0.25
        """
        return sliding_seed_rate(self.coverage(width), self.p)

    def sample(
        self,
        batch_shape: tuple[int, ...],
        width: int,
        *,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> torch.Tensor:
        width = self._width(width)
        _check_float_dtype(dtype)
        batch_shape = _check_batch_shape(batch_shape)
        k = self.effective_block(width)
        seeds = _bernoulli_keep(
            (*batch_shape, width - k + 1), self.seed_rate(width), generator, dtype, device
        )
        flat = seeds.reshape(-1, 1, width - k + 1)
        dropped = torch.nn.functional.max_pool1d(
            torch.nn.functional.pad(flat, (k - 1, k - 1)), k, stride=1
        )
        return (1.0 - dropped).reshape(*batch_shape, width)

    def mean(self, width: int) -> torch.Tensor:
        gamma = self.seed_rate(width)
        n = self.coverage(width).to(torch.float64)
        return torch.exp(n * math.log1p(-gamma)) if gamma < 1 else torch.zeros_like(n)

    def drop_fraction(self, width: int) -> float:
        """Expected fraction of dropped units (``p`` up to rounding), without cancellation.

        Example:
            >>> round(SlidingBlocks(0.05, 4).drop_fraction(9), 12)
            0.05
        """
        gamma = self.seed_rate(width)
        if gamma >= 1.0:
            return 1.0
        n = self.coverage(width).to(torch.float64)
        return float((-torch.expm1(n * math.log1p(-gamma))).mean())

    def normalized_covariance(self, width: int) -> torch.Tensor:
        width = self._width(width)
        gamma = self.seed_rate(width)
        if gamma >= 1.0:
            raise ValueError(_UNDEFINED.format("SlidingBlocks(p=1)"))
        inter = _overlap_1d(width, self.effective_block(width)).to(torch.float64)
        return torch.expm1(-inter * math.log1p(-gamma))

    def support(self, width: int) -> tuple[torch.Tensor, torch.Tensor]:
        width = self._width(width)
        k = self.effective_block(width)
        m = width - k + 1
        _check_support_size("SlidingBlocks", 2**m)
        gamma = self.seed_rate(width)
        seeds = _all_bits(m)
        on = seeds.sum(1)
        probs = gamma**on * (1.0 - gamma) ** (m - on)
        # unit i dropped iff a seed s with lo_i <= s <= hi_i is on
        lo, hi = _coverage_1d(width, k)
        s = torch.arange(m)
        cover = ((s[None, :] >= lo[:, None]) & (s[None, :] <= hi[:, None])).to(torch.float64)
        masks = ((seeds @ cover.T) == 0).to(torch.float64)
        return _aggregate(masks, probs)


# --------------------------------------------------------------------------- keep exactly s


@dataclass(frozen=True)
class KeepExactly(MaskLaw):
    """Keep exactly ``keep`` of the ``width`` units, the subset uniform over all ``C(width, keep)``.

    Moments (digest §2.3), with ``r = width`` and ``s = keep``: ``mu = s / r``,
    ``C = [(r - s) r / (s (r - 1))] I - [(r - s) / (s (r - 1))] 1 1^T`` (diagonal ``(r - s) / s``).

    Args:
        keep: number of kept units, an int >= 0 (must be <= ``width`` when used).

    Example:
        >>> KeepExactly(2).mean(4)
        tensor([0.5000, 0.5000, 0.5000, 0.5000], dtype=torch.float64)
        >>> KeepExactly(2).sample((1,), 4, generator=torch.Generator().manual_seed(0)).sum()
        tensor(2.)
    """

    keep: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "keep", _check_positive_int("keep", self.keep, minimum=0))

    def _check(self, width: object) -> int:
        width = self._width(width)
        if self.keep > width:
            raise ValueError(
                f"KeepExactly(keep={self.keep}) needs width >= keep, got width={width}"
            )
        return width

    def sample(
        self,
        batch_shape: tuple[int, ...],
        width: int,
        *,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> torch.Tensor:
        width = self._check(width)
        _check_float_dtype(dtype)
        shape = (*_check_batch_shape(batch_shape), width)
        # float64 keys: ties (which would bias the argsort order) have probability ~ width^2 2^-54
        u = torch.rand(shape, generator=generator, dtype=torch.float64, device=device)
        idx = u.argsort(dim=-1)[..., : self.keep]
        return torch.zeros(shape, dtype=dtype, device=device).scatter_(-1, idx, 1.0)

    def mean(self, width: int) -> torch.Tensor:
        width = self._check(width)
        return torch.full((width,), self.keep / width, dtype=torch.float64)

    def normalized_covariance(self, width: int) -> torch.Tensor:
        r = self._check(width)
        s = self.keep
        if s == 0:
            raise ValueError(_UNDEFINED.format("KeepExactly(keep=0)"))
        if r == 1:
            return torch.zeros((1, 1), dtype=torch.float64)
        off = -(r - s) / (s * (r - 1))
        return torch.eye(r, dtype=torch.float64) * ((r - s) / s - off) + off

    def support(self, width: int) -> tuple[torch.Tensor, torch.Tensor]:
        r = self._check(width)
        count = math.comb(r, self.keep)
        _check_support_size("KeepExactly", count)
        masks = torch.zeros((count, r), dtype=torch.float64)
        for row, subset in enumerate(itertools.combinations(range(r), self.keep)):
            masks[row, list(subset)] = 1.0
        return masks, torch.full((count,), 1.0 / count, dtype=torch.float64)


# --------------------------------------------------------------------------- Gaussian


@dataclass(frozen=True)
class Gaussian(MaskLaw):
    """Gaussian (multiplicative) dropout: ``z_i`` iid ``N(1, lam)`` with ``lam = p / (1 - p)``.

    It matches the first two moments of ``Bernoulli(p)`` after rescaling: ``mu = 1``,
    ``C = lam I``. ``p = 1`` (infinite variance) is not allowed. The law is continuous, so it has
    **no finite support**: :meth:`support` raises ``ValueError``.

    Args:
        p: drop probability of the Bernoulli law it imitates, in [0, 1).

    Example:
        >>> Gaussian(0.5).normalized_covariance(2)
        tensor([[1., 0.],
                [0., 1.]], dtype=torch.float64)
    """

    p: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "p", _check_probability("p", self.p, allow_one=False))

    @property
    def lam(self) -> float:
        """Variance of ``z_i``, ``p / (1 - p)``."""
        return self.p / (1.0 - self.p)

    def sample(
        self,
        batch_shape: tuple[int, ...],
        width: int,
        *,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> torch.Tensor:
        width = self._width(width)
        _check_float_dtype(dtype)
        shape = (*_check_batch_shape(batch_shape), width)
        noise = torch.randn(shape, generator=generator, dtype=dtype, device=device)
        return noise.mul_(math.sqrt(self.lam)).add_(1.0)

    def mean(self, width: int) -> torch.Tensor:
        return torch.ones(self._width(width), dtype=torch.float64)

    def normalized_covariance(self, width: int) -> torch.Tensor:
        return torch.eye(self._width(width), dtype=torch.float64) * self.lam

    def support(self, width: int) -> tuple[torch.Tensor, torch.Tensor]:
        raise ValueError(
            "Gaussian is a continuous law: it has no finite support to enumerate; use mean(), "
            "normalized_covariance() or sample()"
        )

    def drop_fraction(self, width: int) -> float:
        """Gaussian masks drop no unit exactly; returns 0.

        Example:
            >>> Gaussian(0.5).drop_fraction(3)
            0.0
        """
        return 0.0


# --------------------------------------------------------------------------- custom finite law


@dataclass(frozen=True, eq=False)
class Custom(MaskLaw):
    """Any law with finite support: masks ``(S, width)`` drawn with probabilities ``probs (S,)``.

    Masks may be real-valued (not only 0/1). Moments are exact sums over the support:
    ``mu = probs @ masks`` and ``E[z z^T] = masks^T diag(probs) masks``.

    Args:
        masks: ``(S, width)`` tensor (or nested sequence) of masks.
        probs: ``(S,)`` non-negative probabilities summing to 1 (within 1e-9 for float64 input,
            1e-5 for lower precision); they are stored in float64, divided by their sum.

    Example:
        >>> law = Custom([[1.0, 0.0], [0.0, 1.0]], [0.5, 0.5])
        >>> law.normalized_covariance(2)
        tensor([[ 1., -1.],
                [-1.,  1.]], dtype=torch.float64)
    """

    masks: torch.Tensor
    probs: torch.Tensor

    def __post_init__(self) -> None:
        masks = torch.as_tensor(self.masks, dtype=torch.float64).detach().cpu()
        raw = torch.as_tensor(self.probs)
        tol = 1e-9 if raw.dtype == torch.float64 or not raw.is_floating_point() else 1e-5
        probs = raw.to(torch.float64).detach().cpu()
        if masks.ndim != 2 or masks.shape[0] < 1 or masks.shape[1] < 1:
            raise ValueError(f"masks must be a non-empty (S, width) tensor, got shape "
                             f"{tuple(masks.shape)}")
        if probs.shape != (masks.shape[0],):
            raise ValueError(f"probs must have shape ({masks.shape[0]},) to match masks, got "
                             f"{tuple(probs.shape)}")
        if not bool(torch.isfinite(masks).all()):
            raise ValueError("masks must be finite")
        if bool((probs < 0).any()) or not bool(torch.isfinite(probs).all()):
            raise ValueError("probs must be finite and >= 0")
        total = float(probs.sum())
        if abs(total - 1.0) > tol:
            raise ValueError(f"probs must sum to 1 (within {tol:g}), got sum {total!r}")
        probs = probs / total
        object.__setattr__(self, "masks", masks)
        object.__setattr__(self, "probs", probs)

    @property
    def width(self) -> int:
        """Number of units of every mask."""
        return int(self.masks.shape[1])

    def _check(self, width: object) -> int:
        width = self._width(width)
        if width != self.width:
            raise ValueError(f"Custom law has width {self.width}, got width={width}")
        return width

    def __repr__(self) -> str:
        return f"Custom(support_size={self.masks.shape[0]}, width={self.width})"

    def sample(
        self,
        batch_shape: tuple[int, ...],
        width: int,
        *,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> torch.Tensor:
        width = self._check(width)
        _check_float_dtype(dtype)
        batch_shape = _check_batch_shape(batch_shape)
        n = math.prod(batch_shape)
        masks = self.masks.to(dtype=dtype, device=device)
        if n == 0:
            return masks.new_zeros((*batch_shape, width))
        # inverse-CDF sampling: no category limit, deterministic given the generator
        cdf = torch.cumsum(self.probs, 0)
        cdf = (cdf / cdf[-1]).to(device=device)
        u = torch.rand(n, generator=generator, dtype=torch.float64, device=device)
        idx = torch.searchsorted(cdf, u, right=True).clamp_(max=masks.shape[0] - 1)
        return masks[idx].reshape(*batch_shape, width)

    def mean(self, width: int) -> torch.Tensor:
        self._check(width)
        return self.probs @ self.masks

    def second_moment(self, width: int) -> torch.Tensor:
        self._check(width)
        return self.masks.T @ (self.probs[:, None] * self.masks)

    def normalized_covariance(self, width: int) -> torch.Tensor:
        return _normalized_from_moments(self.mean(width), self.second_moment(width), "Custom")

    def support(self, width: int) -> tuple[torch.Tensor, torch.Tensor]:
        self._check(width)
        return _aggregate(self.masks, self.probs)


# --------------------------------------------------------------------------- 2-D DropBlock law


def _pair(name: str, value: object) -> tuple[int, int]:
    if isinstance(value, Sequence) and not isinstance(value, str):
        if len(value) != 2:
            raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
        return (_check_positive_int(name, value[0]), _check_positive_int(name, value[1]))
    v = _check_positive_int(name, value)
    return (v, v)


@dataclass(frozen=True)
class SlidingBlocks2d:
    """DropBlock on an ``H x W`` map (Ghiasi et al.), with the seed rate solved to drop exactly p.

    Seeds sit on the valid-centre grid ``(H - kh + 1) x (W - kw + 1)``, where
    ``(kh, kw) = (min(bh, H), min(bw, W))`` (a block larger than the map is clipped to it); each is
    on with probability ``gamma`` and an on seed at ``(s, t)`` zeros rows ``s..s+kh-1`` and columns
    ``t..t+kw-1``. Position ``(i, j)`` is covered by ``n_ij = a_i b_j`` seeds (``a``, ``b`` the 1-D
    counts), so ``E[z_ij] = (1 - gamma)^{n_ij}``; ``gamma`` is solved so that the mean drop fraction
    over the map is exactly ``p`` on every map size (edges and overlaps included). Odd and even
    block sizes and non-square maps and blocks are all allowed. A layer rescales each position by
    its fixed ``1 / E[z_ij]``, not by a batch-wide empirical count.

    Moments: ``C_(ij),(i'j') = (1 - gamma)^{-|S_ij ∩ S_i'j'|} - 1`` over the ``H * W`` positions in
    row-major order, with ``|S_ij ∩ S_i'j'|`` the product of the row and column overlaps.

    Args:
        p: mean drop fraction in [0, 1].
        block_size: int or ``(bh, bw)``, each >= 1.

    Example:
        >>> law = SlidingBlocks2d(0.1, 7)
        >>> round(law.drop_fraction((7, 7)), 12), round(law.seed_rate((7, 7)), 12)
        (0.1, 0.1)
        >>> law.normalized_covariance((3, 4)).shape
        torch.Size([12, 12])
    """

    p: float
    block_size: int | tuple[int, int]

    def __post_init__(self) -> None:
        object.__setattr__(self, "p", _check_probability("p", self.p))
        bh, bw = _pair("block_size", self.block_size)
        if not isinstance(self.block_size, numbers.Integral):
            object.__setattr__(self, "block_size", (bh, bw))

    def _shape(self, shape: object) -> tuple[int, int]:
        if not isinstance(shape, Sequence) or isinstance(shape, str) or len(shape) != 2:
            raise TypeError(f"shape must be a pair (H, W) of ints >= 1, got {shape!r}")
        return (_check_positive_int("H", shape[0]), _check_positive_int("W", shape[1]))

    def effective_block(self, shape: tuple[int, int]) -> tuple[int, int]:
        """``(min(bh, H), min(bw, W))``.

        Example:
            >>> SlidingBlocks2d(0.1, (3, 5)).effective_block((4, 4))
            (3, 4)
        """
        H, W = self._shape(shape)
        bh, bw = _pair("block_size", self.block_size)
        return (min(bh, H), min(bw, W))

    def coverage(self, shape: tuple[int, int]) -> torch.Tensor:
        """``n_ij``: number of seeds covering each position, int64 ``(H, W)``.

        Example:
            >>> SlidingBlocks2d(0.1, 2).coverage((2, 3)).tolist()  # a = [1, 1], b = [1, 2, 1]
            [[1, 2, 1], [1, 2, 1]]
        """
        H, W = self._shape(shape)
        kh, kw = self.effective_block((H, W))
        lo, hi = _coverage_1d(H, kh)
        a = hi - lo + 1
        lo, hi = _coverage_1d(W, kw)
        b = hi - lo + 1
        return a[:, None] * b[None, :]

    def seed_rate(self, shape: tuple[int, int]) -> float:
        """Probability ``gamma`` that a valid seed is on, solved so the mean drop fraction is p.

        Example:
            >>> SlidingBlocks2d(0.3, 1).seed_rate((4, 4))  # 1 x 1 blocks: gamma = p
            0.3
        """
        return sliding_seed_rate(self.coverage(shape), self.p)

    def mean(self, shape: tuple[int, int]) -> torch.Tensor:
        """``E[z_ij]`` as a float64 ``(H, W)`` tensor.

        Example:
            >>> law = SlidingBlocks2d(0.2, 2)
            >>> mu = law.mean((3, 3))
            >>> mu.shape, round(1 - float(mu.mean()), 12)  # mean drop fraction is exactly p
            (torch.Size([3, 3]), 0.2)
        """
        gamma = self.seed_rate(shape)
        n = self.coverage(shape).to(torch.float64)
        return torch.exp(n * math.log1p(-gamma)) if gamma < 1 else torch.zeros_like(n)

    def drop_fraction(self, shape: tuple[int, int]) -> float:
        """Expected fraction of dropped positions (``p`` up to rounding).

        Example:
            >>> round(SlidingBlocks2d(0.15, (2, 3)).drop_fraction((5, 6)), 12)
            0.15
        """
        gamma = self.seed_rate(shape)
        n = self.coverage(shape).to(torch.float64)
        if gamma >= 1:
            return 1.0
        return float((-torch.expm1(n * math.log1p(-gamma))).mean())

    def normalized_covariance(self, shape: tuple[int, int]) -> torch.Tensor:
        """``Cov(z_ij, z_i'j') / (mu_ij mu_i'j')`` as float64 ``(H*W, H*W)`` (row-major).

        Example:
            >>> C = SlidingBlocks2d(0.2, 1).normalized_covariance((2, 2))  # 1 x 1: Bernoulli
            >>> bool(torch.allclose(C, 0.25 * torch.eye(4, dtype=torch.float64)))
            True
        """
        H, W = self._shape(shape)
        kh, kw = self.effective_block((H, W))
        gamma = self.seed_rate((H, W))
        if gamma >= 1.0:
            raise ValueError(_UNDEFINED.format("SlidingBlocks2d(p=1)"))
        inter = torch.kron(_overlap_1d(H, kh), _overlap_1d(W, kw)).to(torch.float64)
        return torch.expm1(-inter * math.log1p(-gamma))

    def second_moment(self, shape: tuple[int, int]) -> torch.Tensor:
        """``E[z z^T]`` over the flattened positions, float64 ``(H*W, H*W)``.

        Example:
            >>> law = SlidingBlocks2d(0.2, 2)
            >>> masks, probs = law.support((3, 3))
            >>> flat = masks.reshape(len(probs), -1)
            >>> bool(torch.allclose(flat.T @ (probs[:, None] * flat), law.second_moment((3, 3))))
            True
        """
        mu = self.mean(shape).reshape(-1)
        return (self.normalized_covariance(shape) + 1.0) * torch.outer(mu, mu)

    def sample(
        self,
        batch_shape: tuple[int, ...],
        shape: tuple[int, int],
        *,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> torch.Tensor:
        """Independent keep-masks, a ``(*batch_shape, H, W)`` tensor of 0/1.

        Example:
            >>> z = SlidingBlocks2d(0.1, 3).sample((2, 4), (8, 8),
            ...                                    generator=torch.Generator().manual_seed(0))
            >>> z.shape, bool(((z == 0) | (z == 1)).all())
            (torch.Size([2, 4, 8, 8]), True)
        """
        H, W = self._shape(shape)
        _check_float_dtype(dtype)
        batch_shape = _check_batch_shape(batch_shape)
        kh, kw = self.effective_block((H, W))
        seeds = _bernoulli_keep(
            (math.prod(batch_shape), 1, H - kh + 1, W - kw + 1),
            self.seed_rate((H, W)), generator, dtype, device,
        )
        dropped = torch.nn.functional.max_pool2d(
            torch.nn.functional.pad(seeds, (kw - 1, kw - 1, kh - 1, kh - 1)), (kh, kw), stride=1
        )
        return (1.0 - dropped).reshape(*batch_shape, H, W)

    def support(self, shape: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Every mask ``(S, H, W)`` with its probability ``(S,)``, float64; ``ValueError`` when
        more than :data:`SUPPORT_LIMIT` seed patterns would be enumerated.

        Example:
            >>> masks, probs = SlidingBlocks2d(0.2, 2).support((3, 3))  # 2 x 2 seed grid
            >>> masks.shape, round(float(probs.sum()), 12)
            (torch.Size([16, 3, 3]), 1.0)
        """
        H, W = self._shape(shape)
        kh, kw = self.effective_block((H, W))
        mh, mw = H - kh + 1, W - kw + 1
        _check_support_size("SlidingBlocks2d", 2 ** (mh * mw))
        gamma = self.seed_rate((H, W))
        seeds = _all_bits(mh * mw)
        on = seeds.sum(1)
        probs = gamma**on * (1.0 - gamma) ** (mh * mw - on)
        dropped = torch.nn.functional.max_pool2d(
            torch.nn.functional.pad(seeds.reshape(-1, 1, mh, mw), (kw - 1, kw - 1, kh - 1, kh - 1)),
            (kh, kw), stride=1,
        )
        return _aggregate((1.0 - dropped).reshape(-1, H, W), probs)
