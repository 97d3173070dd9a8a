"""Any mask law with a finite support, given as masks and their probabilities.

Example:
    >>> Custom([[1.0, 0.0], [0.0, 1.0]], [0.5, 0.5]).mean(2)
    tensor([0.5000, 0.5000], dtype=torch.float64)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from dropreg.masks.base import MaskLaw, aggregate, normalized_from_moments

__all__ = ["Custom"]


@dataclass(frozen=True, eq=False)
class Custom(MaskLaw):
    """Any law with finite support: masks ``(S, width)`` drawn with probabilities ``probs (S,)``.

    Masks may be real-valued (not only 0/1). Moments are exact sums over the support:
    ``mu = probs @ masks`` and ``E[z z^T] = masks^T diag(probs) masks``, and ``C`` follows from its
    definition ``C = E[z z^T] / (mu mu^T) - 1`` (Pal et al. 2020's general class of
    dropout strategies; ``docs/papers/pal2020.md``, "Mask laws").

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

    def _sample(self, batch_shape, width, generator, dtype, device, *, scaled) -> torch.Tensor:
        """Rows of ``masks`` drawn by inverse CDF (no category limit)."""
        width = self._check(width)
        n = math.prod(batch_shape)
        masks = self.masks.to(dtype=dtype, device=device)
        if n == 0:
            return masks.new_zeros((*batch_shape, width))
        cdf = torch.cumsum(self.probs, 0)
        cdf = (cdf / cdf[-1]).to(device=device)
        u = torch.rand(n, generator=generator, dtype=torch.float64, device=device)
        idx = torch.searchsorted(cdf, u, right=True).clamp_(max=masks.shape[0] - 1)
        z = masks[idx].reshape(*batch_shape, width)
        return self._rescale(z, width) if scaled else z

    def mean(self, width: int) -> torch.Tensor:
        """``mu = sum_s probs_s masks_s``, the definition of ``mu = E[z]`` (Pal
        et al. 2020's general class of dropout strategies; ``docs/papers/pal2020.md``, "Mask laws").

        Example:
            >>> Custom([[1.0, 0.0], [1.0, 1.0]], [0.5, 0.5]).mean(2)
            tensor([1.0000, 0.5000], dtype=torch.float64)
        """
        self._check(width)
        return self.probs @ self.masks

    def second_moment(self, width: int) -> torch.Tensor:
        """``S = masks^T diag(probs) masks``, the definition of ``S = E[z z^T]``
        (``docs/papers/pal2020.md``, "Mask laws").

        Example:
            >>> Custom([[1.0, 0.0], [1.0, 1.0]], [0.5, 0.5]).second_moment(2)
            tensor([[1.0000, 0.5000],
                    [0.5000, 0.5000]], dtype=torch.float64)
        """
        self._check(width)
        return self.masks.T @ (self.probs[:, None] * self.masks)

    def normalized_covariance(self, width: int) -> torch.Tensor:
        """``C = S ⊘ (mu mu^T) - 1 1^T`` (the definition of the normalized covariance,
        ``docs/papers/pal2020.md``, "Mask laws"); ``ValueError`` where some ``mu_i = 0``.

        Example:
            >>> Custom([[1.0, 0.0], [1.0, 1.0]], [0.5, 0.5]).normalized_covariance(2)
            tensor([[0., 0.],
                    [0., 1.]], dtype=torch.float64)
        """
        return normalized_from_moments(self.mean(width), self.second_moment(width), "Custom")

    def support(self, width: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The given masks, identical rows merged and zero-probability rows dropped.

        Example:
            >>> Custom([[1.0, 0.0], [1.0, 0.0]], [0.5, 0.5]).support(2)
            (tensor([[1., 0.]], dtype=torch.float64), tensor([1.], dtype=torch.float64))
        """
        self._check(width)
        return aggregate(self.masks, self.probs)
