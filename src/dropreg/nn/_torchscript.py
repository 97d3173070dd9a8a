"""The forward of every dropreg layer under ``torch.jit.script``: its law, in TorchScript's Python.

TorchScript cannot compile the eager layers' Python machinery (the law dataclasses, the cached
seed-rate solve by scipy, the sparse Poisson sampler, the checkpointed per-example chunks), so
under ``torch.jit.is_scripting()`` each layer's forward calls a function of this module instead.
Each draws the same law with the same exact rate, with tensor ops only:

- iid laws (Dropout, GaussianDropout, DropConnect, fixed blocks): the eager draw op for op, so the
  output is the eager one for the same generator state;
- sliding blocks (DropBlock1d/2d/3d): the dense sampler of the law (Bernoulli(gamma) seeds on the
  valid-centre grid, expanded to blocks by max-pooling one axis at a time;
  :meth:`SlidingBlocks2d.draw` with ``method="dense"``, :class:`~dropreg.masks.SlidingBlocks3d`),
  each position rescaled by its exact ``1 / E[z] = (1 - gamma)^{-n}``. The seed rate ``gamma``
  solves the equation of :func:`dropreg.masks.sliding_seed_rate` (mean drop fraction exactly
  ``p``), here by Newton's method (:func:`seed_rate`) since scipy is out of TorchScript's reach.

Per-example DropConnect draws all masks of a call at once, as under ``torch.compile`` (no
``max_mask_elements`` chunks, whose checkpointing is Python). ``eval()`` and ``p = 0`` return the
input, as in eager mode.

The annotations are ``typing.Optional``: TorchScript does not read ``X | None``.

Example:
    >>> import torch
    >>> from dropreg.masks import SlidingBlocks2d
    >>> g = seed_rate(SlidingBlocks2d(0.1, 3).coverage((7, 7)).to(torch.float64), 0.1)
    >>> abs(g - SlidingBlocks2d(0.1, 3).seed_rate((7, 7))) < 1e-16
    True
"""

# ruff: noqa: UP007, UP045 - TorchScript reads typing.Optional, not ``X | None``

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["dropout", "gaussian_dropout", "seed_rate", "sliding_blocks", "fixed_blocks",
           "drop_connect", "drop_connect_linear"]


def _check_ndim(input: Tensor, fn: str, lo: int, hi: int) -> None:
    if input.ndim < lo or input.ndim > hi:
        raise ValueError(fn + ": input must have ndim " + str(lo) + " to " + str(hi) + ", got ndim "
                         + str(input.ndim))


def _iid_keep(shape: list[int], keep: float, generator: Optional[torch.Generator],
              like: Tensor) -> Tensor:
    """0/1 entries iid Bernoulli(``keep``): ``bernoulli_`` on a fresh tensor, as
    :func:`dropreg._random.bernoulli_keep`."""
    out = torch.empty(shape, dtype=like.dtype, device=like.device)
    return out.bernoulli_(keep, generator=generator)


def dropout(input: Tensor, p: float, training: bool,
            generator: Optional[torch.Generator]) -> Tensor:
    """:func:`dropreg.nn.functional.dropout`: ``F.dropout`` without a generator, else the
    Bernoulli(1 - p) mask of the generator times ``1 / (1 - p)``."""
    if not training or p == 0.0:
        return input
    if p == 1.0:
        return input * 0.0
    if generator is None:
        return F.dropout(input, p, True)
    return input * _iid_keep([input.numel(), 1], 1.0 - p, generator, input).mul_(
        1.0 / (1.0 - p)).view(input.shape)


def gaussian_dropout(input: Tensor, p: float, training: bool,
                     generator: Optional[torch.Generator]) -> Tensor:
    """:func:`dropreg.nn.functional.gaussian_dropout`: ``input * (1 + sqrt(p / (1 - p)) eps)``."""
    if not training or p == 0.0:
        return input
    noise = torch.randn([input.numel(), 1], generator=generator, dtype=input.dtype,
                        device=input.device)
    return input * noise.mul_(math.sqrt(p / (1.0 - p))).add_(1.0).view(input.shape)


def drop_connect(weight: Tensor, p: float, training: bool,
                 generator: Optional[torch.Generator]) -> Tensor:
    """:func:`dropreg.nn.functional.drop_connect`: ``weight * Z / (1 - p)``."""
    if not training or p == 0.0:
        return weight
    if p == 1.0:
        return weight * 0.0
    return weight * _iid_keep([weight.numel(), 1], 1.0 - p, generator, weight).mul_(
        1.0 / (1.0 - p)).view(weight.shape)


def drop_connect_linear(input: Tensor, weight: Tensor, bias: Optional[Tensor], p: float,
                        training: bool, per_example: bool,
                        generator: Optional[torch.Generator]) -> Tensor:
    """:func:`dropreg.nn.functional.drop_connect_linear`; per example, one draw of all the
    ``(rows, out, in)`` masks of the call."""
    if not training or p == 0.0:
        return F.linear(input, weight, bias)
    if not per_example or p == 1.0:
        return F.linear(input, drop_connect(weight, p, True, generator), bias)
    out_f, in_f = weight.shape[0], weight.shape[1]
    x = input.reshape(-1, in_f)
    n = x.shape[0]
    masks = _iid_keep([n * out_f * in_f, 1], 1.0 - p, generator, weight).mul_(1.0 / (1.0 - p))
    out = torch.bmm(weight * masks.view(n, out_f, in_f), x.unsqueeze(-1)).squeeze(-1)
    if bias is not None:
        out = out + bias.to(out.dtype)
    lead = list(input.shape[:-1])
    lead.append(out_f)
    return out.reshape(lead)


# --------------------------------------------------------------------------- sliding blocks


def _count_1d(width: int, k: int) -> Tensor:
    """Number of valid seeds covering each unit of a line of ``width`` units, blocks of ``k``
    (``masks.sliding._count_1d``), float64."""
    i = torch.arange(width, dtype=torch.int64)
    lo = (i - k + 1).clamp(min=0)
    hi = i.clamp(max=width - k)
    return (hi - lo + 1).to(torch.float64)


def _coverage(spatial: list[int], block: list[int]) -> Tensor:
    """``n``: seeds covering each position, the product of the per-axis counts, float64."""
    n = _count_1d(spatial[0], block[0])
    for axis in range(1, len(spatial)):
        n = n.unsqueeze(-1) * _count_1d(spatial[axis], block[axis])
    return n


def seed_rate(coverage: Tensor, p: float) -> float:
    """``gamma`` with ``mean(1 - (1 - gamma)^n) = p`` over the float64 ``coverage`` counts ``n``
    (the equation of :func:`dropreg.masks.sliding_seed_rate`).

    The drop fraction ``f`` is increasing and concave in ``gamma``, so Newton's method started
    at the lower end ``p / mean(n)`` of the bracket ``[p / mean(n), p]`` climbs monotonically to
    the root; it stops when a step no longer increases ``gamma`` (float64 precision).

    Example:
        >>> g = seed_rate(torch.tensor([1.0, 2.0, 1.0], dtype=torch.float64), 0.5)
        >>> round(g, 12) == round(2 - 2.5 ** 0.5, 12)
        True
    """
    if p == 0.0:
        return 0.0
    if p == 1.0:
        return 1.0
    n = coverage.reshape(-1)
    gamma = p / float(n.mean())
    for _ in range(200):
        log_keep = math.log1p(-gamma)
        f = float((-torch.expm1(n * log_keep)).mean())
        slope = float((n * torch.exp((n - 1.0) * log_keep)).mean())
        step = (p - f) / slope
        if not step > 0.0:
            break
        nxt = min(gamma + step, p)
        if not nxt > gamma:
            break
        gamma = nxt
    return gamma


def _dilate(grid: Tensor, block: list[int]) -> Tensor:
    """Seeds ``(S, 1, *seed_grid)`` expanded to their blocks, one axis at a time
    (``masks.sliding._dilate``)."""
    d = len(block)
    for axis in range(d):
        k = block[axis]
        if k > 1:
            pad = [0] * (2 * d)
            pad[2 * (d - 1 - axis)] = k - 1
            pad[2 * (d - 1 - axis) + 1] = k - 1
            window = [1] * d
            window[axis] = k
            stride = [1] * d
            if d == 3:
                grid = F.max_pool3d(F.pad(grid, pad), window, stride)
            else:
                grid = F.max_pool2d(F.pad(grid, pad), window, stride)
    return grid


def sliding_blocks(input: Tensor, p: float, block: list[int], training: bool,
                   share_channels: bool, generator: Optional[torch.Generator]) -> Tensor:
    """Sliding-block DropBlock on the last ``len(block)`` axes of ``input`` (1, 2 or 3), one
    independent mask per leading index (``(N, C)``, or ``(N, 1)`` with ``share_channels``; ``(N,)``
    for a 2-d input of :class:`~dropreg.nn.DropBlock1d`): the dense sampler of the law, output
    ``input * z / E[z]``."""
    if not training or p == 0.0:
        return input
    d = len(block)
    spatial = list(input.shape[input.ndim - d:])
    batch = list(input.shape[:input.ndim - d])
    if share_channels and len(batch) == 2:
        batch[1] = 1
    k = [min(block[a], spatial[a]) for a in range(d)]
    n = 1
    for b in batch:
        n *= b
    if p == 1.0:
        return input * torch.zeros(batch + spatial, dtype=input.dtype, device=input.device)
    coverage = _coverage(spatial, k)
    gamma = seed_rate(coverage, p)
    mean = torch.exp(coverage * math.log1p(-gamma))
    scale = torch.where(mean > 0, 1.0 / mean, torch.zeros_like(mean)).to(
        dtype=input.dtype, device=input.device)
    grid = [spatial[a] - k[a] + 1 for a in range(d)]
    if d == 3:  # SlidingBlocks3d: Bernoulli(gamma) seeds in float64, max_pool3d
        seeds = torch.empty([n, grid[0] * grid[1] * grid[2]], dtype=torch.float64,
                            device=input.device).bernoulli_(gamma, generator=generator)
        dropped = _dilate(seeds.to(input.dtype).view(n, 1, grid[0], grid[1], grid[2]), k)
        mask = (1.0 - dropped) * scale
    else:  # SlidingBlocks(2d).draw(method="dense"): float64 uniforms below gamma, max_pool2d
        kh, kw = (k[0], k[1]) if d == 2 else (1, k[0])
        hs, ws = (grid[0], grid[1]) if d == 2 else (1, grid[0])
        u = torch.rand([n, 1, hs, ws], generator=generator, dtype=torch.float64,
                       device=input.device)
        dropped = _dilate((u < gamma).to(input.dtype), [kh, kw])
        zero = torch.zeros([1], dtype=input.dtype, device=input.device)
        mask = torch.where(dropped.view([n] + spatial) > 0, zero, scale)
    out = input * mask.reshape(batch + spatial)
    if input.ndim == 4 and not input.is_contiguous() \
            and input.is_contiguous(memory_format=torch.channels_last):
        out = out.contiguous(memory_format=torch.channels_last)
    return out


def fixed_blocks(input: Tensor, p: float, block_size: int, training: bool,
                 share_channels: bool, generator: Optional[torch.Generator]) -> Tensor:
    """Pal et al.'s fixed blocks on the last axis (:class:`~dropreg.masks.Blocks`): one
    Bernoulli(1 - p) keep per block, scaled by ``1 / (1 - p)``, repeated over the block."""
    if not training or p == 0.0:
        return input
    batch = list(input.shape[:-1])
    if share_channels and len(batch) == 2:
        batch[1] = 1
    width = input.shape[-1]
    shape = batch + [(width + block_size - 1) // block_size]
    blocks = _iid_keep(shape, 1.0 - p, generator, input)
    if p < 1.0:
        blocks.mul_(1.0 / (1.0 - p))
    mask = blocks.repeat_interleave(block_size, dim=-1)[..., :width]
    return input * mask


def maybe_inplace(input: Tensor, out: Tensor, inplace: bool) -> Tensor:
    """``out`` written into ``input`` when ``inplace`` and no gradient flows through ``input``."""
    if not inplace or (torch.is_grad_enabled() and input.requires_grad):
        return out
    return input.copy_(out)
