"""3-D DropBlock on ``D x H x W`` volumes, the seed rate solved to drop exactly ``p``.

The law of torchvision's ``DropBlock3d`` seeding (Ghiasi et al. 2018, Section 3, extended to
volumes as torchvision does), with the exactness of :class:`~dropreg.masks.SlidingBlocks2d`:
seeds sit on the valid-centre grid ``(D - kd + 1) x (H - kh + 1) x (W - kw + 1)`` (``(kd, kh, kw)``
the block clipped to the volume), each on with probability ``gamma``; an on seed zeros the
``kd x kh x kw`` block it starts. Position ``(d, i, j)`` is covered by ``n = a_d b_i c_j`` seeds
(the 1-D counts of each axis), so ``E[z] = (1 - gamma)^n``, and ``gamma`` is solved
(:func:`~dropreg.masks.sliding_seed_rate`) so that the mean drop fraction is exactly ``p``. Two
positions share the seeds of the product of their per-axis overlaps, so the normalized covariance
is ``(1 - gamma)^{-|S ∩ S'|} - 1`` with ``|S ∩ S'|`` the product of the three 1-D overlaps
(the 1-D sliding-block covariance of Pal et al. 2020, Section 3, applied per axis).

Example:
    >>> law = SlidingBlocks3d(0.2, 2)
    >>> round(law.drop_fraction((3, 4, 4)), 12)
    0.2
    >>> law.coverage((2, 2, 3))[0].tolist()
    [[1, 2, 1], [1, 2, 1]]
"""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from dropreg._checks import check_int, check_probability
from dropreg.masks.base import (
    UNDEFINED,
    MaskLaw,
    aggregate,
    all_bits,
    capturing,
    check_support_size,
    independent_probs,
    keep_draw,
)
from dropreg.masks.sliding import _count_1d, _dilate, _overlap_1d, sliding_seed_rate

__all__ = ["SlidingBlocks3d"]


def _triple(value: object) -> tuple[int, int, int]:
    if isinstance(value, Sequence) and not isinstance(value, str):
        if len(value) != 3:
            raise ValueError(f"block_size must be an int or a triple of ints, got {value!r}")
        return tuple(check_int("block_size", v) for v in value)  # type: ignore[return-value]
    v = check_int("block_size", value)
    return (v, v, v)


def _coverage_3d(D: int, H: int, W: int, kd: int, kh: int, kw: int) -> torch.Tensor:
    return (_count_1d(D, kd)[:, None, None] * _count_1d(H, kh)[None, :, None]
            * _count_1d(W, kw)[None, None, :])


@functools.lru_cache(maxsize=128)
def _mean_on_volume(p: float, geometry: tuple[int, ...]) -> tuple[float, torch.Tensor]:
    """``(gamma, E[z])`` (float64 ``(D, H, W)``) for a ``(D, H, W, kd, kh, kw)`` geometry."""
    n = _coverage_3d(*geometry)
    gamma = sliding_seed_rate(n, p)
    n = n.to(torch.float64)
    mean = torch.exp(n * math.log1p(-gamma)) if gamma < 1 else torch.zeros_like(n)
    return gamma, mean


@torch.compiler.assume_constant_result
def _seed_rate_constant(p: float, geometry: tuple[int, ...]) -> float:
    """``gamma`` of the volume, a constant of a captured graph (solved once, at capture)."""
    return _mean_on_volume(p, geometry)[0]


def _expand_seeds_3d(seeds: torch.Tensor, geometry: tuple[int, ...]) -> torch.Tensor:
    """0/1 indicator ``(S, D, H, W)`` of the positions dropped by each 0/1 seed pattern."""
    D, H, W, kd, kh, kw = geometry
    grid = seeds.reshape(-1, 1, D - kd + 1, H - kh + 1, W - kw + 1)
    return _dilate(grid, (kd, kh, kw))[:, 0]


@dataclass(frozen=True)
class SlidingBlocks3d(MaskLaw):
    """DropBlock on a ``D x H x W`` volume, with the seed rate solved to drop exactly ``p``.

    ``size`` is the volume's shape ``(D, H, W)``; masks are ``(*batch_shape, D, H, W)`` and the
    moments are over the ``D * H * W`` positions in row-major order. A block larger than the
    volume is clipped to it. A layer rescales each position by its fixed ``1 / E[z]``.

    Args:
        p: mean drop fraction in [0, 1].
        block_size: int or ``(bd, bh, bw)``, each >= 1.

    Example:
        >>> z = SlidingBlocks3d(0.1, 3).sample((2,), (4, 5, 5),
        ...                                    generator=torch.Generator().manual_seed(0))
        >>> z.shape, bool(((z == 0) | (z == 1)).all())
        (torch.Size([2, 4, 5, 5]), True)
    """

    event_ndim = 3

    p: float
    block_size: int | tuple[int, int, int]

    def __post_init__(self) -> None:
        object.__setattr__(self, "p", check_probability("p", self.p))
        block = _triple(self.block_size)
        if not isinstance(self.block_size, numbers.Integral):
            object.__setattr__(self, "block_size", block)
        object.__setattr__(self, "_block", block)

    def _geometry(self, size: object) -> tuple[int, int, int, int, int, int]:
        if not isinstance(size, Sequence) or isinstance(size, str) or len(size) != 3:
            raise TypeError(f"shape must be a triple (D, H, W) of ints >= 1, got {size!r}")
        D, H, W = (check_int(n, v) for n, v in zip("DHW", size))
        bd, bh, bw = self._block
        return D, H, W, min(bd, D), min(bh, H), min(bw, W)

    def coverage(self, size: tuple[int, int, int]) -> torch.Tensor:
        """``n = a_d b_i c_j``: number of seeds covering each position, int64 ``(D, H, W)``.

        Example:
            >>> SlidingBlocks3d(0.1, 2).coverage((2, 1, 3)).tolist()
            [[[1, 2, 1]], [[1, 2, 1]]]
        """
        return _coverage_3d(*self._geometry(size))

    def seed_rate(self, size: tuple[int, int, int]) -> float:
        """Seed probability ``gamma`` solved so the mean drop fraction is exactly ``p``.

        Example:
            >>> SlidingBlocks3d(0.3, 1).seed_rate((2, 2, 2))  # 1 x 1 x 1 blocks: gamma = p
            0.3
        """
        return _mean_on_volume(self.p, self._geometry(size))[0]

    def mean(self, size: tuple[int, int, int]) -> torch.Tensor:
        """``E[z] = (1 - gamma)^n``, float64 ``(D, H, W)``.

        Example:
            >>> round(1 - float(SlidingBlocks3d(0.2, 2).mean((3, 3, 3)).mean()), 12)
            0.2
        """
        return _mean_on_volume(self.p, self._geometry(size))[1].clone()

    def drop_fraction(self, size: tuple[int, int, int]) -> float:
        """Expected fraction of dropped positions (``p`` up to rounding), without cancellation.

        Example:
            >>> round(SlidingBlocks3d(0.15, (1, 2, 3)).drop_fraction((2, 5, 6)), 12)
            0.15
        """
        gamma = self.seed_rate(size)
        if gamma >= 1.0:
            return 1.0
        n = self.coverage(size).to(torch.float64)
        return float((-torch.expm1(n * math.log1p(-gamma))).mean())

    def normalized_covariance(self, size: tuple[int, int, int]) -> torch.Tensor:
        """``C = (1 - gamma)^{-|S ∩ S'|} - 1`` with ``|S ∩ S'|`` the product of the per-axis seed
        overlaps; float64 ``(D*H*W, D*H*W)``, row-major.

        Example:
            >>> C = SlidingBlocks3d(0.2, 1).normalized_covariance((1, 2, 1))  # Bernoulli
            >>> bool(torch.allclose(C, 0.25 * torch.eye(2, dtype=torch.float64)))
            True
        """
        D, H, W, kd, kh, kw = self._geometry(size)
        gamma = self.seed_rate(size)
        if gamma >= 1.0:
            raise ValueError(UNDEFINED.format("SlidingBlocks3d(p=1)"))
        inter = torch.kron(torch.kron(_overlap_1d(D, kd), _overlap_1d(H, kh)),
                           _overlap_1d(W, kw)).to(torch.float64)
        return torch.expm1(-inter * math.log1p(-gamma))

    def support(self, size: tuple[int, int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Every mask ``(S, D, H, W)`` with its probability ``(S,)``, float64; ``ValueError``
        above :data:`~dropreg.masks.SUPPORT_LIMIT` seed patterns.

        Example:
            >>> masks, probs = SlidingBlocks3d(0.2, 2).support((2, 3, 2))  # 1 x 2 x 1 seeds
            >>> masks.shape, round(float(probs.sum()), 12)
            (torch.Size([4, 2, 3, 2]), 1.0)
        """
        geometry = self._geometry(size)
        D, H, W, kd, kh, kw = geometry
        m = (D - kd + 1) * (H - kh + 1) * (W - kw + 1)
        check_support_size("SlidingBlocks3d", 2**m)
        gamma = self.seed_rate(size)
        seeds = all_bits(m)
        probs = independent_probs(seeds, gamma, 1.0 - gamma)
        return aggregate(1.0 - _expand_seeds_3d(seeds, geometry), probs)

    def _sample(self, batch_shape, size, generator, dtype, device, *, scaled) -> torch.Tensor:
        """Bernoulli(gamma) seeds on the valid grid, expanded to blocks by ``max_pool3d``."""
        geometry = self._geometry(size)
        D, H, W, kd, kh, kw = geometry
        if capturing():  # gamma a constant of the graph, E[z] from torch ops
            gamma = _seed_rate_constant(self.p, geometry)
            n_cov = _coverage_3d(*geometry).to(torch.float64)
            mean = (torch.exp(n_cov * math.log1p(-gamma)) if gamma < 1
                    else torch.zeros_like(n_cov))
        else:
            gamma, mean = _mean_on_volume(self.p, geometry)
        n = math.prod(batch_shape)
        seeds = keep_draw((n, (D - kd + 1) * (H - kh + 1) * (W - kw + 1)), gamma,
                          generator=generator, dtype=torch.float64, device=device)
        keep = 1.0 - _expand_seeds_3d(seeds.to(dtype), geometry)  # 0/1: exact in any dtype
        if scaled:
            inv = torch.where(mean > 0, 1.0 / mean, torch.zeros_like(mean))
            keep = keep * inv.to(dtype=dtype, device=keep.device)
        return keep.reshape(*batch_shape, D, H, W)
