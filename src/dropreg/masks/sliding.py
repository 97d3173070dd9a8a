"""Sliding-block DropBlock (Ghiasi et al. 2018) with the seed rate solved to drop exactly ``p``.

One implementation serves both laws: :class:`SlidingBlocks2d` on an ``H x W`` map, and
:class:`SlidingBlocks` on ``width`` units, which is its ``H = 1`` case (a ``1 x width`` map with
``1 x block_size`` blocks). Seeds sit on the valid-centre grid ``(H - kh + 1) x (W - kw + 1)``
(``(kh, kw)`` the block clipped to the map), each on with probability ``gamma``; an on seed at
``(s, t)`` zeros rows ``s..s+kh-1`` and columns ``t..t+kw-1``. Position ``(i, j)`` is covered by
``n_ij = a_i b_j`` seeds (``a``, ``b`` the 1-D counts), so ``E[z_ij] = (1 - gamma)^{n_ij}``, and
``gamma`` is solved (:func:`sliding_seed_rate`) so that the mean drop fraction is exactly ``p``.

The sampler (:meth:`SlidingBlocks2d.draw`) returns the masks in the form cheapest to apply: on the
CPU, the flat indices of the dropped positions (Poisson splitting, cost proportional to the dropped
blocks); elsewhere, the dense mask (``max_pool2d`` over Bernoulli seeds, no host synchronisation).
:meth:`~SlidingBlocks2d.sample` and :meth:`~SlidingBlocks2d.sample_scaled` are built on it, and
the DropBlock layers use it directly to scale and drop without a full-size mask.

Example:
    >>> law = SlidingBlocks(0.3, 3)
    >>> round(law.drop_fraction(10), 12)
    0.3
    >>> law.coverage(6).tolist()
    [1, 2, 3, 3, 2, 1]
"""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from dropreg._checks import check_float_dtype, check_int, check_probability
from dropreg.masks.base import (
    UNDEFINED,
    MaskLaw,
    aggregate,
    all_bits,
    capturing,
    check_batch_shape,
    check_support_size,
    independent_probs,
)

__all__ = ["SlidingBlocks", "SlidingBlocks2d", "SlidingBlocksDraw", "sliding_seed_rate"]

#: Largest number of block positions indexed at once by the sparse sampler.
INDEX_CHUNK: int = 2**22


# --------------------------------------------------------------------------- seed geometry


def _coverage_1d(width: int, k: int) -> torch.Tensor:
    """Seeds [lo_i, hi_i] covering unit i; valid seeds are 0..width-k, each zeroing k units."""
    i = torch.arange(width)
    lo = (i - k + 1).clamp(min=0)
    hi = i.clamp(max=width - k)
    return torch.stack([lo, hi])


def _count_1d(width: int, k: int) -> torch.Tensor:
    """Number of seeds covering each unit, int64 ``(width,)``."""
    lo, hi = _coverage_1d(width, k)
    return hi - lo + 1


def _overlap_1d(width: int, k: int) -> torch.Tensor:
    """|S_i ∩ S_j| for the seed sets of units i, j: an int64 (width, width) tensor."""
    lo, hi = _coverage_1d(width, k)
    inter = torch.minimum(hi[:, None], hi[None, :]) - torch.maximum(lo[:, None], lo[None, :]) + 1
    return inter.clamp(min=0)


@functools.lru_cache(maxsize=64)
def _block_offsets(kh: int, kw: int, W: int) -> torch.Tensor:
    """Flat offsets of the ``kh x kw`` positions of a block in a map of width ``W``."""
    return (torch.arange(kh)[:, None] * W + torch.arange(kw)[None, :]).reshape(-1)


# --------------------------------------------------------------------------- seed rate


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
    ``mean_i (1 - (1 - gamma)^{n_i})``; this solves it ``= p`` (unique root, cached). Ghiasi et
    al. 2018 (§3, "Setting the value of gamma"; ``docs/guide/masks.md``, "DropBlock drops
    exactly p") use a closed-form approximation that ignores overlaps instead.

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
    p = check_probability("p", p)
    cov = torch.as_tensor(coverage).reshape(-1).to(torch.int64)
    if cov.numel() == 0 or bool((cov < 1).any()):
        raise ValueError("coverage must be a non-empty tensor of ints >= 1")
    vals, mult = torch.unique(cov, return_counts=True)
    counts = tuple((int(v), int(m)) for v, m in zip(vals.tolist(), mult.tolist()))
    return _solve_seed_rate(counts, p)


@functools.lru_cache(maxsize=256)
def _mean_on_map(p: float, kh: int, kw: int, H: int, W: int
                 ) -> tuple[float, torch.Tensor, torch.Tensor]:
    """``(gamma, E[z], 1 / E[z])`` for ``kh x kw`` blocks on an ``H x W`` map (tensors float64
    ``(H, W)``; ``1 / E[z]`` is 0 where ``E[z] = 0``). Cached: layers ask for it every call."""
    n = _count_1d(H, kh)[:, None] * _count_1d(W, kw)[None, :]
    gamma = sliding_seed_rate(n, p)
    n = n.to(torch.float64)
    mean = torch.exp(n * math.log1p(-gamma)) if gamma < 1 else torch.zeros_like(n)
    return gamma, mean, torch.where(mean > 0, 1.0 / mean, torch.zeros_like(mean))


# --------------------------------------------------------------------------- one draw


@dataclass(frozen=True)
class SlidingBlocksDraw:
    """Independent sliding-block keep-masks of shape ``shape``, in compact or dense form, with
    the fixed factor ``scale = 1 / E[z]`` (the event's shape) that a layer multiplies them by.

    Exactly one of ``indices`` and ``dropped`` is set. ``indices``: chunks of flat indices (into
    the contiguous ``shape`` tensor, possibly repeated) of the dropped positions. ``dropped``: the
    dense 0/1 indicator of the dropped positions.

    Example:
        >>> d = SlidingBlocksDraw((1, 3), torch.tensor(2.0), indices=(torch.tensor([1]),))
        >>> d.mask(d.scale)
        tensor([[2., 0., 2.]])
    """

    shape: tuple[int, ...]
    scale: torch.Tensor
    indices: tuple[torch.Tensor, ...] | None = None
    dropped: torch.Tensor | None = None

    def mask(self, fill: torch.Tensor) -> torch.Tensor:
        """``fill`` (broadcast to ``shape``; its dtype and device) where kept, 0 where dropped.

        Example:
            >>> d = SlidingBlocksDraw((2,), torch.tensor(2.0), dropped=torch.tensor([1.0, 0.0]))
            >>> d.mask(torch.tensor(1.0))
            tensor([0., 1.])
        """
        if self.dropped is not None:
            zero = torch.zeros((), dtype=fill.dtype, device=fill.device)
            return torch.where(self.dropped > 0, zero, fill)
        out = torch.empty(self.shape, dtype=fill.dtype, device=fill.device).copy_(fill)
        flat = out.view(-1)
        for idx in self.indices:
            flat.index_fill_(0, idx, 0.0)
        return out


def _draw_sparse(n: int, H: int, W: int, kh: int, kw: int, gamma: float,
                 generator: torch.Generator | None, device: torch.device) -> list[torch.Tensor]:
    """Flat indices of the positions dropped in ``n`` maps, by Poisson splitting.

    A Poisson number ``K ~ Poisson(M lam)`` of seed hits, ``lam = -log(1 - gamma)``, placed
    uniformly on the ``M`` valid seed sites: each site receives an independent ``Poisson(lam)``
    number of hits, so "at least one hit" is exactly iid Bernoulli(gamma). The ``K * kh * kw``
    covered positions are listed in chunks of at most :data:`INDEX_CHUNK`: cost ``O(K kh kw)``
    instead of ``O(n H W kh kw)``.
    """
    Hs, Ws = H - kh + 1, W - kw + 1
    sites = n * Hs * Ws
    rate = torch.tensor([sites * -math.log1p(-gamma)], dtype=torch.float64)
    hits = int(torch.poisson(rate, generator=generator).item()) if gamma > 0 else 0
    offsets = _block_offsets(kh, kw, W).to(device)
    step = max(1, INDEX_CHUNK // (kh * kw))  # bounds the index memory at high seed rates
    chunks = []
    for start in range(0, hits, step):
        i = torch.randint(sites, (min(step, hits - start),), generator=generator, device=device)
        plane = torch.div(i, Hs * Ws, rounding_mode="floor")
        rem = i - plane * (Hs * Ws)
        s = torch.div(rem, Ws, rounding_mode="floor")
        base = plane * (H * W) + s * W + (rem - s * Ws)
        chunks.append((base[:, None] + offsets).reshape(-1))
    return chunks


def _dilate(grid: torch.Tensor, block: Sequence[int]) -> torch.Tensor:
    """Each on seed of the 0/1 ``grid`` ``(S, 1, *seed_grid)`` expanded to the block it starts,
    ``block`` its size per axis: the max over the block's seeds, taken one axis at a time (a
    block is the product of its per-axis intervals, so the max over it is the max over each axis
    in turn). That costs ``sum(block)`` comparisons per position instead of ``prod(block)`` and
    keeps each pooling window small enough for ``torch.compile`` to fuse it."""
    d = len(block)
    pool = (F.max_pool1d, F.max_pool2d, F.max_pool3d)[d - 1]
    for axis, k in enumerate(block):
        if k > 1:
            pad = [0] * (2 * d)
            pad[2 * (d - 1 - axis)] = pad[2 * (d - 1 - axis) + 1] = k - 1  # F.pad: last axis first
            window = [1] * d
            window[axis] = k
            grid = pool(F.pad(grid, pad), window, stride=1)
    return grid


def _expand_seeds(seeds: torch.Tensor, H: int, W: int, kh: int, kw: int) -> torch.Tensor:
    """0/1 indicator ``(S, H, W)`` of the positions dropped by each 0/1 seed pattern of ``seeds``
    (``S`` patterns of ``(H - kh + 1) * (W - kw + 1)`` seeds), by max-pooling (:func:`_dilate`)."""
    return _dilate(seeds.reshape(-1, 1, H - kh + 1, W - kw + 1), (kh, kw))[:, 0]


def _draw_dense(n: int, H: int, W: int, kh: int, kw: int, gamma: float,
                generator: torch.Generator | None, dtype: torch.dtype,
                device: torch.device) -> torch.Tensor:
    """0/1 indicator ``(n, H, W)`` of the dropped positions: Bernoulli(gamma) seeds on the valid
    grid, each expanded to its block. A seed is on when a float64 uniform is below ``gamma``
    (so its rate is ``gamma`` to float64 rounding in every ``dtype``); the draw is out of place,
    so ``torch.func.vmap(randomness="different")`` gives each batch entry its own seeds."""
    u = torch.rand((n, 1, H - kh + 1, W - kw + 1), generator=generator, dtype=torch.float64,
                   device=device)
    return _expand_seeds((u < gamma).to(dtype), H, W, kh, kw)


@torch.compiler.assume_constant_result
def _seed_rate_constant(p: float, kh: int, kw: int, H: int, W: int) -> float:
    """``gamma`` of the map, a constant of the captured graph (solved once, at capture)."""
    return _mean_on_map(p, kh, kw, H, W)[0]


def _scale_in_graph(gamma: float, kh: int, kw: int, H: int, W: int) -> torch.Tensor:
    """``1 / E[z] = (1 - gamma)^{-n}`` (0 where ``gamma = 1``) built from torch ops, float64
    ``(H, W)``: the same numbers as the cached ``_mean_on_map``, capturable."""
    n = (_count_1d(H, kh)[:, None] * _count_1d(W, kw)[None, :]).to(torch.float64)
    if gamma >= 1.0:
        return torch.zeros_like(n)
    return torch.exp(-n * math.log1p(-gamma))


# --------------------------------------------------------------------------- the laws


def _pair(name: str, value: object) -> tuple[int, int]:
    if isinstance(value, Sequence) and not isinstance(value, str):
        if len(value) != 2:
            raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
        return (check_int(name, value[0]), check_int(name, value[1]))
    v = check_int(name, value)
    return (v, v)


class _SlidingSeeds(MaskLaw):
    """What :class:`SlidingBlocks2d` and :class:`SlidingBlocks` share: every formula and the
    sampler, written once on the map ``(H, W)`` and clipped block ``(kh, kw)`` of a ``size``.

    Subclasses give ``p``, ``block_size``, :meth:`_geometry` (``size`` -> ``(H, W, kh, kw)``) and
    :meth:`_event` (the shape of one mask).
    """

    def _geometry(self, size: object) -> tuple[int, int, int, int]:  # pragma: no cover
        raise NotImplementedError

    def _event(self, H: int, W: int) -> tuple[int, ...]:  # pragma: no cover
        raise NotImplementedError

    def coverage(self, size: int | tuple[int, int]) -> torch.Tensor:
        """``n_ij = a_i b_j``: number of seeds covering each position, int64 of the event's shape.

        Example:
            >>> SlidingBlocks2d(0.1, 2).coverage((2, 3)).tolist()  # a = [1, 1], b = [1, 2, 1]
            [[1, 2, 1], [1, 2, 1]]
        """
        H, W, kh, kw = self._geometry(size)
        n = _count_1d(H, kh)[:, None] * _count_1d(W, kw)[None, :]
        return n.reshape(self._event(H, W))

    def seed_rate(self, size: int | tuple[int, int]) -> float:
        """Probability ``gamma`` that a valid seed is on, solved so the mean drop fraction is p
        (:func:`sliding_seed_rate`).

        Example:
            >>> SlidingBlocks2d(0.3, 1).seed_rate((4, 4))  # 1 x 1 blocks: gamma = p
            0.3
        """
        H, W, kh, kw = self._geometry(size)
        return _mean_on_map(self.p, kh, kw, H, W)[0]

    def mean(self, size: int | tuple[int, int]) -> torch.Tensor:
        """``E[z_ij] = (1 - gamma)^{n_ij}``: position ``(i, j)`` is kept iff its ``n_ij`` covering
        seeds are all off (``docs/papers/pal2020.md``, "Any mask law", sliding blocks, whose
        seed sets are here the product of a row and a column set);
        float64 of the event's shape.

        Example:
            >>> law = SlidingBlocks2d(0.2, 2)
            >>> mu = law.mean((3, 3))
            >>> mu.shape, round(1 - float(mu.mean()), 12)  # mean drop fraction is exactly p
            (torch.Size([3, 3]), 0.2)
        """
        H, W, kh, kw = self._geometry(size)
        return _mean_on_map(self.p, kh, kw, H, W)[1].reshape(self._event(H, W)).clone()

    def drop_fraction(self, size: int | tuple[int, int]) -> float:
        """Expected fraction of dropped positions (``p`` up to rounding), without cancellation.

        Example:
            >>> round(SlidingBlocks2d(0.15, (2, 3)).drop_fraction((5, 6)), 12)
            0.15
        """
        gamma = self.seed_rate(size)
        if gamma >= 1.0:
            return 1.0
        n = self.coverage(size).to(torch.float64)
        return float((-torch.expm1(n * math.log1p(-gamma))).mean())

    def normalized_covariance(self, size: int | tuple[int, int]) -> torch.Tensor:
        """``C = (1 - gamma)^{-|S ∩ S'|} - 1`` (``docs/papers/pal2020.md``,
        "Any mask law", sliding blocks: ``C_ij = (1 - gamma)^{-|S_i ∩ S_j|} - 1``); on a map
        the seed sets are products of a row and a column set, so ``|S_ij ∩ S_i'j'|`` is the
        product of the row and column overlaps. Float64 ``(H*W, H*W)``, row-major.

        Example:
            >>> C = SlidingBlocks2d(0.2, 1).normalized_covariance((2, 2))  # 1 x 1: Bernoulli
            >>> bool(torch.allclose(C, 0.25 * torch.eye(4, dtype=torch.float64)))
            True
        """
        H, W, kh, kw = self._geometry(size)
        gamma = self.seed_rate(size)
        if gamma >= 1.0:
            raise ValueError(UNDEFINED.format(f"{type(self).__name__}(p=1)"))
        inter = torch.kron(_overlap_1d(H, kh), _overlap_1d(W, kw)).to(torch.float64)
        return torch.expm1(-inter * math.log1p(-gamma))

    def second_moment(self, size: int | tuple[int, int]) -> torch.Tensor:
        """``E[z z^T] = (C + 1) mu mu^T`` over the flattened positions, float64 ``(H*W, H*W)``
        (the definition of ``C``, ``docs/papers/pal2020.md``, "Mask laws").

        Example:
            >>> law = SlidingBlocks2d(0.2, 2)
            >>> masks, probs = law.support((3, 3))
            >>> flat = masks.reshape(len(probs), -1)
            >>> bool(torch.allclose(flat.T @ (probs[:, None] * flat), law.second_moment((3, 3))))
            True
        """
        return super().second_moment(size)

    def support(self, size: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Every mask ``(S, *event)`` with its probability ``(S,)``, float64; ``ValueError`` when
        more than :data:`~dropreg.masks.SUPPORT_LIMIT` seed patterns would be enumerated.

        Example:
            >>> masks, probs = SlidingBlocks2d(0.2, 2).support((3, 3))  # 2 x 2 seed grid
            >>> masks.shape, round(float(probs.sum()), 12)
            (torch.Size([16, 3, 3]), 1.0)
        """
        H, W, kh, kw = self._geometry(size)
        m = (H - kh + 1) * (W - kw + 1)
        check_support_size(type(self).__name__, 2**m)
        gamma = self.seed_rate(size)
        seeds = all_bits(m)
        probs = independent_probs(seeds, gamma, 1.0 - gamma)
        dropped = _expand_seeds(seeds, H, W, kh, kw)
        return aggregate((1.0 - dropped).reshape(-1, *self._event(H, W)), probs)

    def draw(
        self,
        batch_shape: tuple[int, ...],
        size: int | tuple[int, int],
        *,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
        method: str = "auto",
    ) -> SlidingBlocksDraw:
        """Independent masks of shape ``(*batch_shape, *event)`` in the form cheapest to apply.

        ``method="sparse"`` (the CPU default) lists the dropped positions (Poisson splitting, cost
        proportional to the dropped blocks, one host synchronisation); ``"dense"`` (the default
        elsewhere) draws Bernoulli(gamma) seeds in ``dtype`` and expands them with ``max_pool2d``.
        Both draw exactly this law. ``"auto"`` takes the dense sampler wherever the call is
        captured or transformed (:func:`capturing`: ``torch.jit.trace``, ``torch.compile``,
        ``torch.export``, ``torch.func.vmap``), since the sparse one's hit count is
        data-dependent.

        Example:
            >>> law = SlidingBlocks2d(0.3, 2)
            >>> d = law.draw((4,), (5, 5), generator=torch.Generator().manual_seed(0))
            >>> d.shape, d.indices is not None
            ((4, 5, 5), True)
        """
        H, W, kh, kw = self._geometry(size)
        batch_shape = check_batch_shape(batch_shape)
        check_float_dtype(dtype)
        out_shape = (*batch_shape, *self._event(H, W))
        device = torch.device(device) if device is not None else torch.get_default_device()
        captured = capturing()
        if captured:
            gamma = _seed_rate_constant(self.p, kh, kw, H, W)
            scale = _scale_in_graph(gamma, kh, kw, H, W)
        else:
            gamma, _, scale = _mean_on_map(self.p, kh, kw, H, W)
        scale = scale.reshape(self._event(H, W)).to(dtype=dtype, device=device)
        if gamma >= 1.0:
            return SlidingBlocksDraw(out_shape, scale,
                                     dropped=torch.ones(out_shape, dtype=dtype, device=device))
        n = math.prod(batch_shape)
        if method == "auto":
            method = "sparse" if device.type == "cpu" and not captured else "dense"
        if method == "sparse":
            chunks = _draw_sparse(n, H, W, kh, kw, gamma, generator, device)
            return SlidingBlocksDraw(out_shape, scale, indices=tuple(chunks))
        if method != "dense":
            raise ValueError(f"method must be 'auto', 'sparse' or 'dense', got {method!r}")
        dropped = _draw_dense(n, H, W, kh, kw, gamma, generator, dtype, device)
        return SlidingBlocksDraw(out_shape, scale, dropped=dropped.reshape(out_shape))

    def _sample(self, batch_shape, size, generator, dtype, device, *, scaled) -> torch.Tensor:
        """:meth:`draw` made dense: 1 (or ``1 / E[z_ij]`` when ``scaled``) where kept."""
        d = self.draw(batch_shape, size, generator=generator, dtype=dtype, device=device)
        return d.mask(d.scale if scaled else torch.ones((), dtype=dtype, device=device))

    @torch.compiler.disable
    def inverse_mean(self, size: int | tuple[int, int]) -> torch.Tensor:
        """``1 / E[z_ij]`` (0 where ``E[z_ij] = 0``, i.e. ``p = 1``), float64 of the event's shape.

        Example:
            >>> SlidingBlocks2d(0.5, 1).inverse_mean((1, 2))
            tensor([[2., 2.]], dtype=torch.float64)
        """
        H, W, kh, kw = self._geometry(size)
        return _mean_on_map(self.p, kh, kw, H, W)[2].reshape(self._event(H, W)).clone()


@dataclass(frozen=True)
class SlidingBlocks2d(_SlidingSeeds):
    """DropBlock on an ``H x W`` map (Ghiasi et al.), with the seed rate solved to drop exactly p.

    ``size`` is the map's shape ``(H, W)``; masks are ``(*batch_shape, H, W)`` and the moments are
    over the ``H * W`` positions in row-major order. Seeds sit on the valid-centre grid
    ``(H - kh + 1) x (W - kw + 1)`` with ``(kh, kw) = (min(bh, H), min(bw, W))`` (a block larger
    than the map is clipped to it); odd and even block sizes and non-square maps and blocks are
    all allowed. A layer rescales each position by its fixed ``1 / E[z_ij]``
    (:meth:`inverse_mean`), not by a batch-wide empirical count.

    Args:
        p: mean drop fraction in [0, 1].
        block_size: int or ``(bh, bw)``, each >= 1.

    Example:
        >>> z = SlidingBlocks2d(0.1, 3).sample((2, 4), (8, 8),
        ...                                    generator=torch.Generator().manual_seed(0))
        >>> z.shape, bool(((z == 0) | (z == 1)).all())
        (torch.Size([2, 4, 8, 8]), True)
        >>> law = SlidingBlocks2d(0.1, 7)
        >>> round(law.drop_fraction((7, 7)), 12), round(law.seed_rate((7, 7)), 12)
        (0.1, 0.1)
        >>> law.normalized_covariance((3, 4)).shape
        torch.Size([12, 12])
    """

    event_ndim = 2

    p: float
    block_size: int | tuple[int, int]

    def __post_init__(self) -> None:
        object.__setattr__(self, "p", check_probability("p", self.p))
        bh, bw = _pair("block_size", self.block_size)
        if not isinstance(self.block_size, numbers.Integral):
            object.__setattr__(self, "block_size", (bh, bw))
        object.__setattr__(self, "_block", (bh, bw))  # not a field: repr, eq and hash ignore it

    def _geometry(self, size: object) -> tuple[int, int, int, int]:
        if not isinstance(size, Sequence) or isinstance(size, str) or len(size) != 2:
            raise TypeError(f"shape must be a pair (H, W) of ints >= 1, got {size!r}")
        H, W = size
        if not (type(H) is int and type(W) is int and H >= 1 and W >= 1):  # noqa: E721 - fast path
            H, W = check_int("H", H), check_int("W", W)
        bh, bw = self._block
        return H, W, min(bh, H), min(bw, W)

    def _event(self, H: int, W: int) -> tuple[int, ...]:
        return (H, W)

    def effective_block(self, shape: tuple[int, int]) -> tuple[int, int]:
        """``(min(bh, H), min(bw, W))``.

        Example:
            >>> SlidingBlocks2d(0.1, (3, 5)).effective_block((4, 4))
            (3, 4)
        """
        return self._geometry(shape)[2:]


@dataclass(frozen=True)
class SlidingBlocks(_SlidingSeeds):
    """1-D DropBlock in the style of Ghiasi et al., with the seed rate solved so it drops exactly p.

    The ``H = 1`` case of :class:`SlidingBlocks2d`: a ``1 x width`` map with ``1 x block_size``
    blocks, ``size`` being the int ``width``. Seeds sit at the valid positions ``s = 0..width-k``
    (``k = min(block_size, width)``) and are on independently with probability ``gamma``; an on
    seed zeros units ``s..s+k-1``. Unit ``i`` is covered by ``n_i = |S_i|`` seeds, so
    ``E[z_i] = (1 - gamma)^{n_i}``: units near the ends are dropped less often. ``gamma`` is solved
    numerically (:func:`sliding_seed_rate`) so that the mean drop fraction equals ``p`` exactly,
    and a layer rescales each unit by its own fixed ``1 / E[z_i]``.

    Args:
        p: mean drop fraction in [0, 1].
        block_size: units zeroed by one seed, an int >= 1 (``1`` is
            :class:`~dropreg.masks.Bernoulli`).

    Example:
        >>> law = SlidingBlocks(0.3, 3)
        >>> round(law.drop_fraction(10), 12)
        0.3
        >>> law.normalized_covariance(4).shape
        torch.Size([4, 4])
    """

    event_ndim = 1

    p: float
    block_size: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "p", check_probability("p", self.p))
        object.__setattr__(self, "block_size", check_int("block_size", self.block_size))

    def _geometry(self, size: object) -> tuple[int, int, int, int]:
        W = self._width(size)
        return 1, W, 1, min(self.block_size, W)

    def _event(self, H: int, W: int) -> tuple[int, ...]:
        return (W,)

    def effective_block(self, width: int) -> int:
        """``min(block_size, width)``.

        Example:
            >>> SlidingBlocks(0.1, 5).effective_block(3)
            3
        """
        return self._geometry(width)[3]
