"""Keep exactly ``s`` of ``r`` units, the kept subset uniform (Pal et al. 2020;
``docs/papers/pal2020.md``, "Any mask law").

Example:
    >>> KeepExactly(2).sample((1,), 4, generator=torch.Generator().manual_seed(0)).sum()
    tensor(2.)
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import torch

from dropreg._checks import check_int
from dropreg.masks.base import UNDEFINED, MaskLaw, check_support_size

__all__ = ["KeepExactly"]


@dataclass(frozen=True)
class KeepExactly(MaskLaw):
    """Keep exactly ``keep`` of the ``width`` units, the subset uniform over all ``C(width, keep)``.

    Args:
        keep: number of kept units, an int >= 0 (must be <= ``width`` when used).

    Example:
        >>> KeepExactly(2).mean(4)
        tensor([0.5000, 0.5000, 0.5000, 0.5000], dtype=torch.float64)
    """

    keep: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "keep", check_int("keep", self.keep, minimum=0))

    def _check(self, width: object) -> int:
        width = self._width(width)
        if self.keep > width:
            raise ValueError(
                f"KeepExactly(keep={self.keep}) needs width >= keep, got width={width}"
            )
        return width

    def _sample(self, batch_shape, width, generator, dtype, device, *, scaled) -> torch.Tensor:
        """The ``keep`` smallest of iid uniform keys are kept."""
        width = self._check(width)
        shape = (*batch_shape, width)
        # float64 keys: ties (which would bias the argsort order) have probability ~ width^2 2^-54
        u = torch.rand(shape, generator=generator, dtype=torch.float64, device=device)
        idx = u.argsort(dim=-1)[..., : self.keep]
        z = torch.zeros(shape, dtype=dtype, device=device).scatter_(-1, idx, 1.0)
        return self._rescale(z, width) if scaled else z

    def mean(self, width: int) -> torch.Tensor:
        """``mu = s / r`` for every unit (``r = width``, ``s = keep``; ``docs/papers/pal2020.md``,
        "Any mask law", whose scaling ``r / s`` is ``1 / mu``).

        Example:
            >>> KeepExactly(3).mean(4)
            tensor([0.7500, 0.7500, 0.7500, 0.7500], dtype=torch.float64)
        """
        width = self._check(width)
        return torch.full((width,), self.keep / width, dtype=torch.float64)

    def normalized_covariance(self, width: int) -> torch.Tensor:
        """``C = [(r - s) r / (s (r - 1))] I - [(r - s) / (s (r - 1))] 1 1^T``
        (``docs/papers/pal2020.md``, "Any mask law", keep exactly s of r units); diagonal ``(r - s)
        / s``, and ``C = 0`` when ``r = 1``.

        Example:
            >>> KeepExactly(1).normalized_covariance(2)
            tensor([[ 1., -1.],
                    [-1.,  1.]], dtype=torch.float64)
        """
        r = self._check(width)
        s = self.keep
        if s == 0:
            raise ValueError(UNDEFINED.format("KeepExactly(keep=0)"))
        if r == 1:
            return torch.zeros((1, 1), dtype=torch.float64)
        off = -(r - s) / (s * (r - 1))
        return torch.eye(r, dtype=torch.float64) * ((r - s) / s - off) + off

    def support(self, width: int) -> tuple[torch.Tensor, torch.Tensor]:
        """All ``C(width, keep)`` masks, equally likely.

        Example:
            >>> KeepExactly(1).support(2)[0].tolist()
            [[1.0, 0.0], [0.0, 1.0]]
        """
        r = self._check(width)
        count = math.comb(r, self.keep)
        check_support_size("KeepExactly", count)
        masks = torch.zeros((count, r), dtype=torch.float64)
        for row, subset in enumerate(itertools.combinations(range(r), self.keep)):
            masks[row, list(subset)] = 1.0
        return masks, torch.full((count,), 1.0 / count, dtype=torch.float64)
