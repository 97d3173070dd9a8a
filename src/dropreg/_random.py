"""Random draws and Monte Carlo summaries shared by every module.

- :func:`bernoulli_keep` -- 0/1 keep-masks, ``P(1) = keep``, drawn in the target dtype and device;
- :func:`rademacher` -- independent uniform signs in ``{-1, +1}``;
- :func:`seed_from` -- an integer seed drawn from a generator, to derive an independent stream
  (for example one per chunk of a computation, or for code that only takes a seed);
- :func:`mean_and_stderr` -- the sample mean and its standard error ``std / sqrt(n)``.

Example:
    >>> g = torch.Generator().manual_seed(0)
    >>> bernoulli_keep((2, 3), 1.0, generator=g)
    tensor([[1., 1., 1.],
            [1., 1., 1.]])
    >>> rademacher((1000,), generator=g).abs().unique()
    tensor([1.])
    >>> mean_and_stderr(torch.tensor([1.0, 2.0, 3.0]))
    (2.0, 0.5773502691896258)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

__all__ = ["bernoulli_keep", "rademacher", "seed_from", "mean_and_stderr"]

#: Seeds are drawn uniformly from ``[0, SEED_HIGH)``.
SEED_HIGH: int = 2**62


def bernoulli_keep(
    shape: Sequence[int],
    keep: float,
    *,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """A 0/1 tensor of ``shape`` whose entries are independent Bernoulli(``keep``)."""
    out = torch.empty(tuple(shape), dtype=dtype, device=device)
    return out.bernoulli_(keep, generator=generator)


def rademacher(
    shape: Sequence[int],
    *,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Independent uniform signs in ``{-1, +1}`` of ``shape``."""
    bits = torch.randint(0, 2, tuple(shape), generator=generator, device=device)
    return (2 * bits - 1).to(dtype)


def seed_from(generator: torch.Generator | None) -> int:
    """An integer seed in ``[0, 2**62)`` drawn from ``generator`` (the global one when None)."""
    device = generator.device if generator is not None else "cpu"
    return int(torch.randint(0, SEED_HIGH, (1,), generator=generator, device=device))


def mean_and_stderr(values: torch.Tensor | Sequence[float]) -> tuple[float, float]:
    """The mean of ``values`` and its standard error ``std(ddof=1) / sqrt(n)`` (inf when n = 1)."""
    v = torch.as_tensor(values, dtype=torch.float64).reshape(-1)
    n = v.numel()
    if n == 0:
        raise ValueError("values must hold at least one number, got an empty sequence")
    se = float(v.std(unbiased=True)) / math.sqrt(n) if n > 1 else math.inf
    return float(v.mean()), se
