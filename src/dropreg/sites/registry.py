"""What a dropout site is: one table, one predicate, one record per site.

A *dropout site* is a place where a model multiplies a tensor by a random keep-mask ``z / E[z]``.
There are three kinds, by the tensor the mask multiplies:

* ``"activation"``: the input of a dropout module (``torch.nn.Dropout``, dropreg's layers);
* ``"attention"``: the attention weights of ``torch.nn.MultiheadAttention`` with ``dropout > 0``
  (and so of ``TransformerEncoderLayer`` / ``TransformerDecoderLayer``, which are built on it);
* ``"weight"``: a weight matrix (``dropreg.nn.DropConnectLinear`` / ``DropConnectConv2d``, and the
  masks of ``dropreg.nn.WeightDrop``, e.g. an LSTM's ``weight_hh_l0``).

=======================================  ==========  ==============================================
module                                   kind        mask law; mask shape for an input shape
=======================================  ==========  ==============================================
``torch.nn.Dropout``                     activation  Bernoulli, element-wise
``torch.nn.Dropout1d``                   activation  Bernoulli per channel:
                                                     ``(N, C, L) -> (N, C, 1)``;
                                                     unbatched ``(C, L) -> (C, 1)``
``torch.nn.Dropout2d``                   activation  Bernoulli per ``(dim 0, dim 1)``:
                                                     ``(N, C, H, W) -> (N, C, 1, 1)``; a 3-D input
                                                     is ``(N, C, L) -> (N, C, 1)``, as torch
                                                     reads it
``torch.nn.Dropout3d``                   activation  ``(N, C, D, H, W) -> (N, C, 1, 1, 1)``;
                                                     unbatched
                                                     ``(C, D, H, W) -> (C, 1, 1, 1)``
``torch.nn.AlphaDropout``,               not a site  affine (dropped units go to a negative
``torch.nn.FeatureAlphaDropout``                     saturation value): not a mask
``dropreg.nn.Dropout``                   activation  Bernoulli, element-wise
``dropreg.nn.GaussianDropout``           activation  Gaussian ``N(1, p / (1 - p))``, element-wise
``dropreg.nn.DropBlock1d/2d``            activation  ``Blocks`` / ``SlidingBlocks(2d)``: correlated
``dropreg.nn.MaskDropout``               activation  its ``law``
``torch.nn.MultiheadAttention``          attention   Bernoulli(``dropout``) on the
                                                     ``(N, heads, L, S)``
(``dropout > 0``)                                    attention weights, element-wise
``dropreg.nn.DropConnectLinear``,        weight      Bernoulli on the weight, one mask per batch
``dropreg.nn.DropConnectConv2d``                     (also for ``per_example=True`` layers, in
                                                     the ``fixed`` and ``fresh`` states)
``dropreg.nn.WeightDrop`` masks          weight      Bernoulli on each wrapped weight, per batch
a module with ``is_dropout_site=True``   declared    a float ``p``, optional ``noise_variance``,
and a numeric ``p``                                  ``shared_mask_dims`` and ``site_kind``
``is_dropout_site = False``              not a site  opt-out (also for a subclass of torch's
                                                     dropout)
anything else                            not a site
=======================================  ==========  ==============================================

The channel rules are torch's own (``torch.nn.functional.dropout1d/2d/3d``). Functions that take an
``is_dropout`` predicate use it instead of :func:`is_dropout_site` (for layers of other libraries).

Which analyses support which sites: every site runs in every state of
:func:`dropreg.sites.dropout_state` and in the curvature and noise tools; the second-order formulas
of :mod:`dropreg.analytic` (Wei, Kakade, Ma 2020, Sec. 4, eqs. 4.2-4.6) need activation or
attention sites whose noise groups are independent with one variance
(:attr:`DropoutSite.independent`) and refuse weight sites by name.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch  # noqa: F401  (doctests)
from torch import nn
from torch.nn.modules.dropout import _DropoutNd

from dropreg.masks import Bernoulli, Gaussian
from dropreg.nn.modules import DropLayer

__all__ = ["KINDS", "DropoutSite", "dropout_sites", "is_dropout_site", "site_kind"]

#: The kinds of dropout site.
KINDS = ("activation", "attention", "weight")
_ALPHA = (nn.AlphaDropout, nn.FeatureAlphaDropout)
_WEIGHT_MASKS = (nn.Linear, nn.modules.conv._ConvNd)


def _real(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _independent_groups(law: object | None) -> bool:
    """Independent noise groups with one variance: Bernoulli, Gaussian, or a declared site."""
    return law is None or isinstance(law, (Bernoulli, Gaussian))


def ones_on(shape: Sequence[int], dims: Sequence[int]) -> tuple[int, ...]:
    """``shape`` with 1 on ``dims`` (the shape of a mask shared over those dims).

    Example:
        >>> ones_on((2, 3, 4), (2,))
        (2, 3, 1)
    """
    return tuple(1 if d in dims else int(s) for d, s in enumerate(shape))


def _attention_site(module: nn.Module) -> bool:
    return isinstance(module, nn.MultiheadAttention) and _real(module.dropout) \
        and float(module.dropout) > 0.0


def site_kind(module: nn.Module) -> str | None:
    """The kind of site ``module`` is (``"activation"``, ``"attention"``, ``"weight"``), or
    ``None`` when it is not a site (the table in the module docstring).

    Example:
        >>> from dropreg.nn import DropConnectLinear
        >>> [site_kind(m) for m in (torch.nn.Dropout(0.1), torch.nn.MultiheadAttention(4, 2, 0.1),
        ...                         DropConnectLinear(2, 2, p=0.1), torch.nn.ReLU())]
        ['activation', 'attention', 'weight', None]
    """
    flag = getattr(module, "is_dropout_site", None)
    if flag is False or isinstance(module, _ALPHA):
        return None
    if isinstance(module, _DropoutNd):
        return "activation"
    if _attention_site(module):
        return "attention"
    if isinstance(module, DropLayer):
        return "weight" if isinstance(module, _WEIGHT_MASKS) else "activation"
    if flag is True and _real(getattr(module, "p", None)):
        kind = getattr(module, "site_kind", "activation")
        if kind not in KINDS:
            raise ValueError(f"{type(module).__name__}.site_kind must be one of {KINDS}, "
                             f"got {kind!r}")
        return kind
    return None


def is_dropout_site(module: nn.Module) -> bool:
    """Whether ``module`` is a dropout site of any kind (:func:`site_kind` is not ``None``).

    Example:
        >>> from dropreg.nn import DropBlock2d, DropConnectLinear
        >>> [is_dropout_site(m) for m in (torch.nn.Dropout(0.1), torch.nn.AlphaDropout(0.1),
        ...                               DropBlock2d(0.1, 3), DropConnectLinear(2, 2, p=0.1))]
        [True, False, True, True]
    """
    return site_kind(module) is not None


@dataclass(frozen=True)
class DropoutSite:
    """One dropout site: its qualified name, module, drop probability, noise variance, law, kind.

    Attributes:
        name: qualified module name in the model (``""`` for the model itself).
        module: the module.
        p: drop probability (NaN where the site has none, e.g. ``MaskDropout(KeepExactly(2))``).
        noise_variance: ``Var(z / E[z])`` of one mask coordinate: the declared
            ``noise_variance``, else ``p / (1 - p)`` for Bernoulli and Gaussian laws and declared
            sites (``inf`` at ``p = 1``); NaN for correlated laws (no single value).
        law: the :mod:`dropreg.masks` law (``Bernoulli(p)`` for torch's layers and attention;
            ``None`` for declared or custom sites without a ``law``).
        kind: ``"activation"``, ``"attention"`` or ``"weight"``.

    Example:
        >>> site = dropout_sites(torch.nn.Sequential(torch.nn.Dropout2d(0.5)))[0]
        >>> site.name, site.p, site.noise_variance, site.law, site.shared_dims(4)  # (N, C, H, W)
        ('0', 0.5, 1.0, Bernoulli(p=0.5), (2, 3))
    """

    name: str
    module: nn.Module
    p: float
    noise_variance: float
    law: object | None
    kind: str = "activation"

    @property
    def independent(self) -> bool:
        """Whether the mask values of distinct noise groups are independent with one variance
        (Bernoulli or Gaussian law, or a declared site without a law).

        Example:
            >>> from dropreg.nn import DropBlock2d, GaussianDropout
            >>> [s.independent for s in dropout_sites(torch.nn.Sequential(
            ...     GaussianDropout(0.2), DropBlock2d(0.1, 3)))]
            [True, False]
        """
        return _independent_groups(self.law)

    @property
    def batched(self) -> bool:
        """Whether the site's masks can differ between examples (``False`` for weight masks,
        which one batch shares).

        Example:
            >>> from dropreg.nn import DropConnectLinear
            >>> [s.batched for s in dropout_sites(torch.nn.Sequential(
            ...     torch.nn.Dropout(0.2), DropConnectLinear(2, 2, p=0.1)))]
            [True, False]
        """
        return self.kind != "weight"

    def shared_dims(self, ndim: int) -> tuple[int, ...]:
        """Dims of an ``ndim``-dim input over which one mask value is shared (torch's rules for
        ``Dropout1d/2d/3d``, batched or not; a declared ``shared_mask_dims``; ``(1,)`` for
        dropreg's ``share_channels`` layers; else ``()``).

        Example:
            >>> site = dropout_sites(torch.nn.Sequential(torch.nn.Dropout1d(0.5)))[0]
            >>> site.shared_dims(3), site.shared_dims(2)  # (N, C, L) and unbatched (C, L)
            ((2,), (1,))
        """
        m = self.module
        if self.kind != "activation":
            return ()
        declared = getattr(m, "shared_mask_dims", None)
        if declared is not None:
            return tuple(sorted(int(d) % ndim for d in declared))
        if isinstance(m, nn.Dropout1d):
            if ndim not in (2, 3):
                raise ValueError(f"site {self.name!r} (Dropout1d) needs a 2-D (C, L) or 3-D "
                                 f"(N, C, L) input, got {ndim}-D")
            return (ndim - 1,)
        if isinstance(m, nn.Dropout2d):
            if ndim < 2:
                raise ValueError(f"site {self.name!r} (Dropout2d) needs an input with >= 2 "
                                 f"dims, got {ndim}-D")
            return tuple(range(2, ndim))
        if isinstance(m, nn.Dropout3d):
            if ndim < 1:
                raise ValueError(f"site {self.name!r} (Dropout3d) needs an input with >= 1 "
                                 f"dim, got {ndim}-D")
            return (2, 3, 4) if ndim == 5 else tuple(range(1, ndim))
        if getattr(m, "share_channels", False) is True and ndim >= 3:
            return (1,)
        return ()

    def is_batched(self, ndim: int) -> bool:
        """Whether dim 0 of an ``ndim``-dim input is a batch dim for this site (``False`` for
        weight sites and for unbatched ``Dropout1d`` (2-D) and ``Dropout3d`` (not 5-D) inputs).

        Example:
            >>> site = dropout_sites(torch.nn.Sequential(torch.nn.Dropout3d(0.5)))[0]
            >>> site.is_batched(5), site.is_batched(4)
            (True, False)
        """
        if self.kind == "weight":
            return False
        if isinstance(self.module, nn.Dropout1d):
            return ndim == 3
        if isinstance(self.module, nn.Dropout3d):
            return ndim == 5
        return True

    def mask_shape(self, shape: Sequence[int]) -> tuple[int, ...]:
        """Shape of the mask for an input of ``shape`` (1 on the shared dims).

        Example:
            >>> site = dropout_sites(torch.nn.Sequential(torch.nn.Dropout2d(0.5)))[0]
            >>> site.mask_shape((8, 3, 5, 5))
            (8, 3, 1, 1)
        """
        return ones_on(shape, self.shared_dims(len(shape)))


def _law_of(module: nn.Module, p: float) -> object | None:
    if isinstance(module, _DropoutNd) or isinstance(module, nn.MultiheadAttention):
        return Bernoulli(p)
    try:
        return getattr(module, "law", None)
    except NotImplementedError:
        return None


def _site(name: str, module: nn.Module, kind: str) -> DropoutSite:
    raw = module.dropout if kind == "attention" else getattr(module, "p", None)
    p = float(raw) if _real(raw) else math.nan
    law = _law_of(module, p)
    declared = getattr(module, "noise_variance", None)
    if declared is not None:
        var = float(declared)
    elif _independent_groups(law):
        var = math.inf if p >= 1.0 else p / (1.0 - p)
    else:
        var = math.nan
    return DropoutSite(name, module, p, var, law, kind)


def dropout_sites(
    model: nn.Module, is_dropout: Callable[[nn.Module], bool] | None = None
) -> list[DropoutSite]:
    """The dropout sites of ``model`` in registration order.

    Args:
        model: any module.
        is_dropout: predicate selecting the sites (default :func:`is_dropout_site`); a selected
            module that is not in the table is an activation site.

    Returns:
        One :class:`DropoutSite` per site module (a module shared at two places is listed once).

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Dropout(0.25))
        >>> [(s.name, s.p, round(s.noise_variance, 4), s.kind) for s in dropout_sites(net)]
        [('1', 0.25, 0.3333, 'activation')]
    """
    out = []
    for name, m in model.named_modules():
        if is_dropout is None:
            kind = site_kind(m)
        else:
            kind = (site_kind(m) or "activation") if is_dropout(m) else None
        if kind is not None:
            out.append(_site(name, m, kind))
    return out
