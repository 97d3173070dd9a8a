"""DropBlock as Pal et al. (2020) analyse it: fixed non-overlapping blocks, kept or dropped whole.

Example:
    >>> Blocks(0.5, 3).block_index(7).tolist()
    [0, 0, 0, 1, 1, 1, 2]
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dropreg._checks import check_int, check_probability
from dropreg.masks.base import (
    UNDEFINED,
    MaskLaw,
    all_bits,
    check_support_size,
    independent_probs,
    keep_draw,
)

__all__ = ["Blocks"]


@dataclass(frozen=True)
class Blocks(MaskLaw):
    """DropBlock as analysed by Pal et al.: contiguous non-overlapping blocks, kept or dropped.

    Units ``0..width-1`` are cut into blocks ``[g k, (g + 1) k)`` of ``k = block_size`` units; each
    block is kept with probability ``1 - p``, independently. When ``k`` does not divide ``width``
    the last block is the shorter remainder ``[k * (width // k), width)``, kept or dropped as one
    block with the same probability (so every unit still has ``E[z_i] = 1 - p``). ``k = 1`` is
    :class:`~dropreg.masks.Bernoulli`.

    Args:
        p: drop probability of each block, in [0, 1].
        block_size: units per block, an int >= 1.

    Example:
        >>> z = Blocks(0.5, 2).sample((3,), 4, generator=torch.Generator().manual_seed(0))
        >>> torch.equal(z[:, 0], z[:, 1]) and torch.equal(z[:, 2], z[:, 3])
        True
        >>> Blocks(0.5, 2).normalized_covariance(3)
        tensor([[1., 1., 0.],
                [1., 1., 0.],
                [0., 0., 1.]], dtype=torch.float64)
    """

    p: float
    block_size: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "p", check_probability("p", self.p))
        object.__setattr__(self, "block_size", check_int("block_size", self.block_size))

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

    def _sample(self, batch_shape, width, generator, dtype, device, *, scaled) -> torch.Tensor:
        """One keep variable per block (scaled by ``1 / (1 - p)`` before the expansion when
        ``scaled``), repeated over the block's units."""
        width = self._width(width)
        blocks = keep_draw((*batch_shape, self.n_blocks(width)), 1.0 - self.p,
                                generator=generator, dtype=dtype, device=device)
        if scaled:
            blocks.mul_(self._scalar_scale(1.0 - self.p))
        return blocks.repeat_interleave(self.block_size, dim=-1)[..., :width]

    def mean(self, width: int) -> torch.Tensor:
        """``mu = (1 - p) 1``: each block, hence each unit, is kept w.p. ``theta = 1 - p`` (the
        DropBlock of Pal et al. 2020's analysis; ``docs/papers/pal2020.md``, "Mask laws").

        Example:
            >>> Blocks(0.25, 2).mean(3)
            tensor([0.7500, 0.7500, 0.7500], dtype=torch.float64)
        """
        return torch.full((self._width(width),), 1.0 - self.p, dtype=torch.float64)

    def normalized_covariance(self, width: int) -> torch.Tensor:
        """``C_ij = lam`` when units ``i`` and ``j`` share a block, 0 otherwise (Pal et al.
        2020, DropBlock: ``C = lam (I_b ⊗ 1_k 1_k^T)``, ``docs/papers/pal2020.md``, "Any mask law",
        which this is when ``k`` divides ``width``; a shorter last block is one more diagonal
        block).

        Example:
            >>> Blocks(0.5, 3).normalized_covariance(4)[3].tolist()  # unit 3: the remainder block
            [0.0, 0.0, 0.0, 1.0]
        """
        g = self.block_index(width)
        if self.p == 1.0:
            raise ValueError(UNDEFINED.format("Blocks(p=1)"))
        return (g[:, None] == g[None, :]).to(torch.float64) * (self.p / (1.0 - self.p))

    def support(self, width: int) -> tuple[torch.Tensor, torch.Tensor]:
        """All ``2**n_blocks`` block patterns expanded to masks, each kept block w.p. ``1 - p``.

        Example:
            >>> Blocks(0.5, 3).support(4)[0].tolist()
            [[0.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0]]
        """
        width = self._width(width)
        b = self.n_blocks(width)
        check_support_size("Blocks", 2**b)
        bits = all_bits(b)
        probs = independent_probs(bits, 1.0 - self.p, self.p)
        masks = bits[:, self.block_index(width)]
        keep = probs > 0
        return masks[keep], probs[keep]
