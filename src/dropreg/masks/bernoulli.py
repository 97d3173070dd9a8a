"""Plain Dropout's law: iid Bernoulli keep-masks (Srivastava et al. 2014).

Example:
    >>> Bernoulli(0.25).mean(3)
    tensor([0.7500, 0.7500, 0.7500], dtype=torch.float64)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dropreg._checks import check_probability
from dropreg.masks.base import (
    UNDEFINED,
    MaskLaw,
    all_bits,
    check_support_size,
    independent_probs,
    keep_draw,
)

__all__ = ["Bernoulli"]


@dataclass(frozen=True)
class Bernoulli(MaskLaw):
    """Plain Dropout: ``z_i`` iid Bernoulli(1 - p).

    Args:
        p: drop probability in [0, 1] (a paper's keep probability ``theta`` is ``1 - p``).

    Example:
        >>> Bernoulli(0.5).normalized_covariance(2)
        tensor([[1., 0.],
                [0., 1.]], dtype=torch.float64)
    """

    p: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "p", check_probability("p", self.p))

    def _sample(self, batch_shape, width, generator, dtype, device, *, scaled) -> torch.Tensor:
        """Entries iid Bernoulli(1 - p); scaled by the scalar ``1 / (1 - p)`` in place."""
        z = keep_draw((*batch_shape, self._width(width)), 1.0 - self.p, generator=generator,
                           dtype=dtype, device=device)
        return z.mul_(self._scalar_scale(1.0 - self.p)) if scaled else z

    def mean(self, width: int) -> torch.Tensor:
        """``mu = (1 - p) 1`` (``docs/papers/pal2020.md``, "Mask laws").

        Example:
            >>> Bernoulli(0.1).mean(2)
            tensor([0.9000, 0.9000], dtype=torch.float64)
        """
        return torch.full((self._width(width),), 1.0 - self.p, dtype=torch.float64)

    def normalized_covariance(self, width: int) -> torch.Tensor:
        """``C = lam I`` with ``lam = p / (1 - p)`` (``docs/papers/pal2020.md``, "Any mask
        law").

        Example:
            >>> Bernoulli(0.5).normalized_covariance(1)
            tensor([[1.]], dtype=torch.float64)
        """
        width = self._width(width)
        if self.p == 1.0:
            raise ValueError(UNDEFINED.format("Bernoulli(p=1)"))
        return torch.eye(width, dtype=torch.float64) * (self.p / (1.0 - self.p))

    def support(self, width: int) -> tuple[torch.Tensor, torch.Tensor]:
        """All ``2**width`` masks, ``P(z) = (1 - p)^{kept} p^{dropped}``.

        Example:
            >>> Bernoulli(0.5).support(1)
            (tensor([[0.],
                    [1.]], dtype=torch.float64), tensor([0.5000, 0.5000], dtype=torch.float64))
        """
        width = self._width(width)
        check_support_size("Bernoulli", 2**width)
        masks = all_bits(width)
        probs = independent_probs(masks, 1.0 - self.p, self.p)
        keep = probs > 0
        return masks[keep], probs[keep]
