"""Dropout sites of a model: which modules they are, their masks, and the state they run in.

Three concerns, one module each (and every tool of dropreg that needs sites uses them):

* :mod:`dropreg.sites.registry`: what a dropout site is (one table: activation, attention and
  weight sites), :func:`dropout_sites`, :class:`DropoutSite`;
* :mod:`dropreg.sites.state`: the one ``dropout_state`` vocabulary (``"normal"``, ``"off"``,
  ``"fixed"``, ``"fresh"``), and :func:`frozen_statistics`, the BatchNorm policy of the
  diagnostics;
* :mod:`dropreg.sites.masks`: masks drawn through the mask laws of :mod:`dropreg.masks`
  (:func:`sample_mask`, :func:`sample_masks`, :class:`DropoutMasks`);
* :mod:`dropreg.sites.blocks`: masks drawn per fixed block of rows from a seed
  (:class:`BlockMasks`, :func:`block_masks`), the same however the rows are batched or sharded.

:mod:`dropreg.analytic` (Wei, Kakade, Ma 2020) and :mod:`dropreg.curvature` (Zhang, Zhou, Xu 2022)
both use it.

Example:
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Dropout(0.5))
    >>> with dropout_state(net, "fixed", masks={"1": torch.tensor([[2.0, 0.0, 2.0, 0.0]])}):
    ...     y = net(torch.ones(1, 3))
    >>> bool((y[0, 1::2] == 0).all()), [s.kind for s in dropout_sites(net)]
    (True, ['activation'])
"""

from dropreg.sites.blocks import BlockMasks, block_masks, key_seed
from dropreg.sites.masks import (
    DropoutMasks,
    bernoulli_mask,
    group_sum,
    sample_mask,
    sample_masks,
    site_inputs,
)
from dropreg.sites.registry import KINDS, DropoutSite, dropout_sites, is_dropout_site, site_kind
from dropreg.sites.state import (
    STATES,
    DropoutState,
    attention_forward,
    dropout_state,
    frozen_statistics,
    site_mode,
)

__all__ = [
    "KINDS",
    "STATES",
    "BlockMasks",
    "DropoutMasks",
    "DropoutSite",
    "DropoutState",
    "attention_forward",
    "bernoulli_mask",
    "block_masks",
    "dropout_sites",
    "dropout_state",
    "frozen_statistics",
    "group_sum",
    "is_dropout_site",
    "key_seed",
    "sample_mask",
    "sample_masks",
    "site_inputs",
    "site_kind",
    "site_mode",
]
