"""Mask laws: distributions of a random keep-mask ``z`` with exact first and second moments.

A *mask law* is the distribution of a random keep-mask ``z`` over an event of ``size`` positions
(``width`` units, or an ``(H, W)`` map for :class:`SlidingBlocks2d`). A dropout-type layer applies
``h -> h * z / E[z]``, so everything the theory needs is a function of the mean ``mu = E[z]`` and
of the *normalized covariance* ``C_ij = Cov(z_i, z_j) / (mu_i mu_j)`` (Pal et al. 2020;
``docs/papers/pal2020.md``, "Mask laws" and "Any mask law"), or, for exact checks on small sizes, of
the whole support. Every law (a :class:`MaskLaw`) provides:

- :meth:`MaskLaw.sample` -- masks of shape ``(*batch_shape, *event)`` from an explicit generator;
  :meth:`MaskLaw.sample_scaled` -- ``z / E[z]`` from the same draw, what a layer multiplies by;
- :meth:`MaskLaw.mean` -- ``E[z]`` as a float64 tensor of the event's shape, in closed form;
- :meth:`MaskLaw.normalized_covariance` -- ``C`` as a float64 ``(n, n)`` tensor (``n`` positions,
  row-major);
- :meth:`MaskLaw.support` -- every mask with its probability, for brute-force checks. It raises
  ``ValueError`` when more than :data:`SUPPORT_LIMIT` configurations would have to be enumerated.

The layers of :mod:`dropreg.nn` draw their masks through these methods, so a layer's mask is its
law's mask. ``p`` is the **drop** probability everywhere, as in ``torch.nn.Dropout``; papers that
use the keep probability ``theta`` are converted with ``p = 1 - theta``. ``lam = p / (1 - p)``.

One module per law: :mod:`~dropreg.masks.bernoulli`, :mod:`~dropreg.masks.blocks`,
:mod:`~dropreg.masks.sliding` (``SlidingBlocks2d`` and its ``H = 1`` case ``SlidingBlocks``),
:mod:`~dropreg.masks.sliding3d` (``SlidingBlocks3d`` on volumes),
:mod:`~dropreg.masks.keep_exactly`, :mod:`~dropreg.masks.gaussian`, :mod:`~dropreg.masks.custom`;
the interface in :mod:`~dropreg.masks.base`.

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

import torch  # noqa: F401  (doctest namespace)

from dropreg.masks.base import SUPPORT_LIMIT, MaskLaw
from dropreg.masks.bernoulli import Bernoulli
from dropreg.masks.blocks import Blocks
from dropreg.masks.custom import Custom
from dropreg.masks.gaussian import Gaussian
from dropreg.masks.keep_exactly import KeepExactly
from dropreg.masks.sliding import (
    SlidingBlocks,
    SlidingBlocks2d,
    SlidingBlocksDraw,
    sliding_seed_rate,
)
from dropreg.masks.sliding3d import SlidingBlocks3d

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
    "SlidingBlocks3d",
    "SlidingBlocksDraw",
    "sliding_seed_rate",
]
