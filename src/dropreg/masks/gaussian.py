"""Gaussian (multiplicative) dropout: ``z_i`` iid ``N(1, p / (1 - p))`` (Srivastava et al. 2014).

Example:
    >>> Gaussian(0.5).mean(2)
    tensor([1., 1.], dtype=torch.float64)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from dropreg._checks import check_probability
from dropreg.masks.base import MaskLaw

__all__ = ["Gaussian"]


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
        object.__setattr__(self, "p", check_probability("p", self.p, allow_one=False))

    @property
    def lam(self) -> float:
        """Variance of ``z_i``, ``p / (1 - p)``."""
        return self.p / (1.0 - self.p)

    def _sample(self, batch_shape, width, generator, dtype, device, *, scaled) -> torch.Tensor:
        """``1 + sqrt(lam) * randn``; ``E[z] = 1``, so ``scaled`` changes nothing."""
        noise = torch.randn((*batch_shape, self._width(width)), generator=generator, dtype=dtype,
                            device=device)
        return noise.mul_(math.sqrt(self.lam)).add_(1.0)

    def mean(self, width: int) -> torch.Tensor:
        """``mu = 1``: the noise ``N(1, sigma^2)`` of Srivastava et al. 2014 (JMLR), §10
        "Multiplicative Gaussian Noise", is centred on 1, so no rescaling is needed.

        Example:
            >>> Gaussian(0.3).mean(1)
            tensor([1.], dtype=torch.float64)
        """
        return torch.ones(self._width(width), dtype=torch.float64)

    def normalized_covariance(self, width: int) -> torch.Tensor:
        """``C = lam I``, the same as Dropout's (``docs/papers/pal2020.md``,
        "Any mask law": Dropout has ``C = lam I``, ``lam = p / (1 - p)``); the variance ``sigma^2 =
        lam`` is the choice of Srivastava et al. 2014, §10 "Multiplicative Gaussian Noise".

        Example:
            >>> Gaussian(0.2).normalized_covariance(1)
            tensor([[0.2500]], dtype=torch.float64)
        """
        return torch.eye(self._width(width), dtype=torch.float64) * self.lam

    def support(self, width: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Always raises ``ValueError``: a continuous law has no finite support.

        Example:
            >>> try:
            ...     Gaussian(0.5).support(2)
            ... except ValueError as err:
            ...     print("no finite support" in str(err))
            True
        """
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
