"""Dropout sites of a model: which modules they are, their masks, and the state they run in.

A *dropout site* is a module whose output is its input times a random keep-mask ``z / E[z]``.
This module is the one place that decides which modules are sites, what their masks look like,
how a mask is drawn from an explicit generator, and which state every site of a model runs in;
:mod:`dropreg.analytic` (Wei, Kakade, Ma 2020) and :mod:`dropreg.curvature` (Zhang, Zhou, Xu 2022)
both use it.

One predicate, :func:`is_dropout_site`, gives one answer per layer type:

=====================================  ====  ==================================================
module                                 site  mask law; mask shape for an input shape
=====================================  ====  ==================================================
``torch.nn.Dropout``                   yes   Bernoulli, element-wise
``torch.nn.Dropout1d``                 yes   Bernoulli per channel: ``(N, C, L) -> (N, C, 1)``;
                                             unbatched ``(C, L) -> (C, 1)``
``torch.nn.Dropout2d``                 yes   Bernoulli per ``(dim 0, dim 1)``:
                                             ``(N, C, H, W) -> (N, C, 1, 1)``; a 3-D input is
                                             ``(N, C, L) -> (N, C, 1)``, as torch reads it (not
                                             an unbatched ``(C, H, W)``)
``torch.nn.Dropout3d``                 yes   ``(N, C, D, H, W) -> (N, C, 1, 1, 1)``; unbatched
                                             ``(C, D, H, W) -> (C, 1, 1, 1)``
``torch.nn.AlphaDropout``,             no    affine (dropped units go to a negative saturation
``torch.nn.FeatureAlphaDropout``             value, then an affine correction): not a mask
``dropreg.nn.Dropout``                 yes   Bernoulli, element-wise
``dropreg.nn.GaussianDropout``         yes   Gaussian ``N(1, p / (1 - p))``, element-wise
``dropreg.nn.DropBlock1d``,            yes   ``Blocks`` / ``SlidingBlocks`` /
``dropreg.nn.DropBlock2d``                   ``SlidingBlocks2d``: correlated within a map
``dropreg.nn.MaskDropout``             yes   its ``law``
``dropreg.nn.DropConnectLinear``,      no    the mask is on the weights, not on the input
``dropreg.nn.DropConnectConv2d``
module with ``is_dropout_site=True``   yes   declared: a float ``p``, optional
and a numeric ``p``                          ``noise_variance`` and ``shared_mask_dims``
``is_dropout_site = False``            no    opt-out (also for a subclass of torch's dropout)
anything else                          no
=====================================  ====  ==================================================

The channel rules are torch's own (``torch.nn.functional.dropout1d/2d/3d``). Functions that take an
``is_dropout`` predicate use it instead of :func:`is_dropout_site` (for layers of other libraries).

Sampling a mask (:func:`sample_mask`): torch's own four dropout classes draw a Bernoulli mask here
from the given generator (:func:`dropreg._random.bernoulli_keep`); every other site's mask is the
site's own forward applied to ones in training mode (so the layer's own sampler and law are used,
whatever they are), with torch's global generator seeded from the given one and restored
afterwards (a layer with its own ``generator`` draws from that one).

Which analyses support which sites:

* every site: the states below, :func:`sample_masks`, the curvature operators and gradient noise
  (:mod:`dropreg.curvature`), and the Monte-Carlo tools of :mod:`dropreg.analytic`
  (``monte_carlo_dropout_gap``, ``dropout_gradient``, ``Dropout_k`` updates);
* sites whose noise groups are independent with one variance (:attr:`DropoutSite.independent`:
  Bernoulli and Gaussian laws, and declared sites): the second-order formulas of
  :mod:`dropreg.analytic` (``explicit_regularizer``, ``xi_approx`` with Rademacher noise), which
  raise ``ValueError`` naming the site and its law otherwise;
* Bernoulli sites only: ``noise="dropout"`` in ``dropreg.analytic.implicit_noise_term``.

Inside :func:`dropout_state` every site runs in one state (change it at any time through the
yielded :class:`DropoutState`): ``"normal"`` (its own forward), ``"off"`` (identity: the clean
network), ``"fixed"`` (times a given mask per site), ``"fresh"`` (times a new mask from a
generator at every call); with ``record=True`` the output of every call is recorded (a fresh view,
so ``torch.autograd.grad(loss, h)`` is the derivative through the site only) and so is every
mask drawn in the ``"fresh"`` state.

Example:
    >>> net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Dropout(0.5))
    >>> with dropout_state(net, "fixed", masks={"1": torch.tensor([[2.0, 0.0, 2.0, 0.0]])}):
    ...     y = net(torch.ones(1, 3))
    >>> bool((y[0, 1::2] == 0).all())
    True
"""

from __future__ import annotations

import contextlib
import math
import numbers
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.nn.modules.dropout import _DropoutNd

from dropreg._checks import check_int, check_probability
from dropreg._random import bernoulli_keep, seed_from
from dropreg.masks import Bernoulli, Gaussian
from dropreg.nn.modules import DropLayer

__all__ = [
    "STATES",
    "DropoutMasks",
    "DropoutSite",
    "DropoutState",
    "bernoulli_mask",
    "dropout_sites",
    "dropout_state",
    "group_sum",
    "is_dropout_site",
    "sample_mask",
    "sample_masks",
    "site_mode",
]

#: The states of :func:`dropout_state`.
STATES = ("normal", "off", "fixed", "fresh")
_ALPHA = (nn.AlphaDropout, nn.FeatureAlphaDropout)
_TORCH = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d)
_WEIGHT_MASKS = (nn.Linear, nn.modules.conv._ConvNd)


def _real(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _independent_groups(law: object | None) -> bool:
    """Independent noise groups with one variance: Bernoulli, Gaussian, or a declared site."""
    return law is None or isinstance(law, (Bernoulli, Gaussian))


def _ones_on(shape: Sequence[int], dims: Sequence[int]) -> tuple[int, ...]:
    """``shape`` with 1 on ``dims`` (the shape of a mask shared over those dims)."""
    return tuple(1 if d in dims else int(s) for d, s in enumerate(shape))


def is_dropout_site(module: nn.Module) -> bool:
    """Whether ``module`` is a dropout site (the table in the module docstring).

    Example:
        >>> from dropreg.nn import DropBlock2d, DropConnectLinear
        >>> [is_dropout_site(m) for m in (torch.nn.Dropout(0.1), torch.nn.AlphaDropout(0.1),
        ...                               DropBlock2d(0.1, 3), DropConnectLinear(2, 2, p=0.1))]
        [True, False, True, False]
    """
    flag = getattr(module, "is_dropout_site", None)
    if flag is False or isinstance(module, _ALPHA):
        return False
    if isinstance(module, _DropoutNd):
        return True
    if isinstance(module, DropLayer):
        return not isinstance(module, _WEIGHT_MASKS)
    return flag is True and _real(getattr(module, "p", None))


@dataclass(frozen=True)
class DropoutSite:
    """One dropout site: its qualified name, module, drop probability, noise variance and law.

    Attributes:
        name: qualified module name in the model (``""`` for the model itself).
        module: the module.
        p: drop probability (NaN where the site has none, e.g. ``MaskDropout(KeepExactly(2))``).
        noise_variance: ``Var(z / E[z])`` of one mask coordinate: the declared
            ``noise_variance``, else ``p / (1 - p)`` for Bernoulli and Gaussian laws and declared
            sites (``inf`` at ``p = 1``); NaN for correlated laws (no single value).
        law: the :mod:`dropreg.masks` law (``Bernoulli(p)`` for torch's layers; ``None`` for
            declared or custom sites without a ``law``).

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
        """Whether dim 0 of an ``ndim``-dim input is a batch dim for this site (``False`` only for
        unbatched ``Dropout1d`` (2-D) and ``Dropout3d`` (not 5-D) inputs, as in torch).

        Example:
            >>> site = dropout_sites(torch.nn.Sequential(torch.nn.Dropout3d(0.5)))[0]
            >>> site.is_batched(5), site.is_batched(4)
            (True, False)
        """
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
        return _ones_on(shape, self.shared_dims(len(shape)))


def _law_of(module: nn.Module, p: float) -> object | None:
    if isinstance(module, _DropoutNd):
        return Bernoulli(p)
    try:
        return getattr(module, "law", None)
    except NotImplementedError:
        return None


def _site(name: str, module: nn.Module) -> DropoutSite:
    raw = getattr(module, "p", None)
    p = float(raw) if _real(raw) else math.nan
    law = _law_of(module, p)
    declared = getattr(module, "noise_variance", None)
    if declared is not None:
        var = float(declared)
    elif _independent_groups(law):
        var = math.inf if p >= 1.0 else p / (1.0 - p)
    else:
        var = math.nan
    return DropoutSite(name, module, p, var, law)


def dropout_sites(
    model: nn.Module, is_dropout: Callable[[nn.Module], bool] | None = None
) -> list[DropoutSite]:
    """The dropout sites of ``model`` in registration order.

    Args:
        model: any module.
        is_dropout: predicate selecting the sites (default :func:`is_dropout_site`).

    Returns:
        One :class:`DropoutSite` per site module (a module shared at two places is listed once).

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Dropout(0.25))
        >>> [(s.name, s.p, round(s.noise_variance, 4)) for s in dropout_sites(net)]
        [('1', 0.25, 0.3333)]
    """
    pred = is_dropout_site if is_dropout is None else is_dropout
    return [_site(name, m) for name, m in model.named_modules() if pred(m)]


def bernoulli_mask(
    shape: Sequence[int], p: float, shared_dims: Sequence[int] = (), *,
    generator: torch.Generator | None = None, dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Tensor:
    """Inverted-dropout mask ``z / (1 - p)``, one Bernoulli(``1 - p``) draw per noise group
    (all zeros at ``p = 1``); shape ``shape`` with 1 on ``shared_dims``.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> m = bernoulli_mask((2, 3, 4), 0.5, shared_dims=(2,), generator=g)
        >>> m.shape, bool(((m == 0) | (m == 2)).all())
        (torch.Size([2, 3, 1]), True)
    """
    p = check_probability("p", p)
    mshape = _ones_on(shape, shared_dims)
    if p == 1.0:
        return torch.zeros(mshape, dtype=dtype, device=device)
    keep = bernoulli_keep(mshape, 1.0 - p, generator=generator, dtype=dtype, device=device)
    return keep / (1.0 - p)


def _own_mask(call: Callable[[Tensor], Tensor], module: nn.Module, shape: Sequence[int],
              generator: torch.Generator | None, dtype: torch.dtype,
              device: torch.device | str | None) -> Tensor:
    """The module's own mask: ``call(ones)`` in train mode, global generator seeded from ours."""
    seed = seed_from(generator)
    ones = torch.ones(tuple(shape), dtype=dtype, device=device)
    devices = [ones.device] if ones.device.type == "cuda" else []
    was = module.training
    with torch.random.fork_rng(devices=devices), torch.no_grad():
        torch.manual_seed(seed)
        module.training = True
        try:
            return call(ones)
        finally:
            module.training = was


def sample_mask(
    site: DropoutSite, shape: Sequence[int], *, generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32, device: torch.device | str | None = None,
    call: Callable[[Tensor], Tensor] | None = None,
) -> Tensor:
    """One scaled mask ``z / E[z]`` of ``site`` for an input of ``shape``, from ``generator``.

    torch's ``Dropout``/``Dropout1d/2d/3d`` (exact types): :func:`bernoulli_mask` of
    :meth:`DropoutSite.mask_shape`. Any other site: its own forward on ones in training mode
    (module docstring); ``call`` replaces ``site.module`` as that forward.

    Example:
        >>> site = dropout_sites(torch.nn.Sequential(torch.nn.Dropout1d(0.5)))[0]
        >>> sample_mask(site, (4, 3), generator=torch.Generator().manual_seed(0)).shape
        torch.Size([4, 1])
    """
    if type(site.module) in _TORCH:
        return bernoulli_mask(shape, site.p, site.shared_dims(len(shape)), generator=generator,
                              dtype=dtype, device=device)
    return _own_mask(site.module if call is None else call, site.module, shape, generator, dtype,
                     device)


def group_sum(x: Tensor, shared_dims: Sequence[int]) -> Tensor:
    """Sum ``x`` over the dims a mask is shared on (identity for element-wise masks).

    Example:
        >>> group_sum(torch.arange(6.0).reshape(1, 2, 3), (2,)).tolist()
        [[[3.0], [12.0]]]
    """
    return x.sum(dim=tuple(shared_dims), keepdim=True) if shared_dims else x


@dataclass(eq=False)
class DropoutState:
    """The live state of every site inside :func:`dropout_state`; assign attributes to switch.

    Attributes:
        sites: the sites switched.
        state: one of :data:`STATES`.
        masks: for ``"fixed"``, site name -> mask multiplying the site's input.
        generator: for ``"fresh"``, the source of new masks.
        record: record each call's output in ``values`` and each ``"fresh"`` mask in ``drawn``.
        values: site name -> outputs of each call since the last :meth:`clear` (a site applied
            several times in one forward records one tensor per call).
        drawn: site name -> masks drawn in the ``"fresh"`` state since the last :meth:`clear`.

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Dropout(0.5))
        >>> with dropout_state(net, "off", record=True) as st:
        ...     out = net(torch.randn(2, 3))
        >>> [(site.name, tuple(h.shape)) for site, h in st.items()], len(st.tensors())
        ([('1', (2, 4))], 1)
        >>> st.clear(); st.values
        {'1': []}
    """

    sites: list[DropoutSite]
    state: str = "off"
    masks: Mapping[str, Tensor] | None = None
    generator: torch.Generator | None = None
    record: bool = False
    values: dict[str, list[Tensor]] = field(default_factory=dict)
    drawn: dict[str, list[Tensor]] = field(default_factory=dict)

    def set_masks(self, masks: Mapping[str, Tensor] | None) -> None:
        """Switch to the clean network (``masks=None``: ``"off"``) or to these fixed masks.

        Example:
            >>> net = torch.nn.Sequential(torch.nn.Dropout(0.5))
            >>> with dropout_state(net) as st:
            ...     st.set_masks({"0": torch.zeros(1, 2)})
            ...     net(torch.ones(1, 2)).tolist()
            [[0.0, 0.0]]
        """
        self.state, self.masks = ("off", None) if masks is None else ("fixed", masks)

    def clear(self) -> None:
        """Forget everything recorded (call before a new forward pass)."""
        self.values = {s.name: [] for s in self.sites}
        self.drawn = {s.name: [] for s in self.sites}

    def items(self) -> Iterator[tuple[DropoutSite, Tensor]]:
        """``(site, recorded output)`` pairs over every recorded site call, sites in order."""
        for s in self.sites:
            for h in self.values.get(s.name, []):
                yield s, h

    def tensors(self) -> list[Tensor]:
        """The recorded outputs, flattened over sites and calls."""
        return [h for _, h in self.items()]


def _check_state(state: object) -> None:
    if state not in STATES:
        raise ValueError(f"state must be one of {STATES}, got {state!r}")


def _site_forward(site: DropoutSite, original: Callable[[Tensor], Tensor], st: DropoutState
                  ) -> Callable[[Tensor], Tensor]:
    def forward(x: Tensor) -> Tensor:
        state = st.state
        if state == "off":
            if not st.record:
                return x
            if torch.is_grad_enabled() and not x.requires_grad:
                out = x.detach().requires_grad_(True)  # e.g. dropout on the input
            else:
                out = x.view_as(x)
        elif state == "fixed":
            if st.masks is None or site.name not in st.masks:
                have = [] if st.masks is None else sorted(st.masks)
                raise KeyError(f"no mask for dropout site {site.name!r}; masks have {have}")
            out = x * st.masks[site.name]
        elif state == "fresh":
            mask = sample_mask(site, x.shape, generator=st.generator, dtype=x.dtype,
                               device=x.device, call=original)
            if st.record:
                st.drawn.setdefault(site.name, []).append(mask)
            out = x * mask
        elif state == "normal":
            out = original(x)
        else:
            _check_state(state)
        if st.record:
            st.values.setdefault(site.name, []).append(out)
        return out

    return forward


@contextlib.contextmanager
def dropout_state(
    model: nn.Module, state: str = "off", *, masks: Mapping[str, Tensor] | None = None,
    generator: torch.Generator | None = None, record: bool = False,
    sites: Sequence[DropoutSite] | None = None,
    is_dropout: Callable[[nn.Module], bool] | None = None,
) -> Iterator[DropoutState]:
    """Put every dropout site of ``model`` in ``state`` inside the ``with`` block, then restore.

    Args:
        model: the model.
        state: ``"normal"`` (the site's own forward), ``"off"`` (identity: the clean network),
            ``"fixed"`` (``input * masks[name]``; a missing name raises ``KeyError``) or
            ``"fresh"`` (``input * sample_mask(...)`` from ``generator`` at every call).
        masks: the masks of the ``"fixed"`` state, by site name (broadcast against the input).
        generator: the random source of the ``"fresh"`` state.
        record: record outputs (and fresh masks) in the yielded :class:`DropoutState`.
        sites: the sites to switch (default: all of ``dropout_sites(model, is_dropout)``).
        is_dropout: predicate selecting the sites (default :func:`is_dropout_site`).

    Yields:
        The :class:`DropoutState`; assigning its ``state``, ``masks`` or ``generator`` switches
        every site at once (also inside ``torch.func`` transforms).

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Identity(), torch.nn.Dropout(0.5)).train()
        >>> x = torch.ones(1, 3)
        >>> with dropout_state(net) as st:
        ...     clean = net(x)
        ...     st.state, st.masks = "fixed", {"1": torch.tensor([[2.0, 0.0, 2.0]])}
        ...     fixed = net(x)
        >>> clean.tolist(), fixed.tolist(), "forward" in net[1].__dict__
        ([[1.0, 1.0, 1.0]], [[2.0, 0.0, 2.0]], False)
    """
    _check_state(state)
    site_list = list(dropout_sites(model, is_dropout) if sites is None else sites)
    st = DropoutState(site_list, state, masks, generator, record)
    st.clear()
    patched = []
    try:
        for s in site_list:
            had = "forward" in s.module.__dict__
            old = s.module.__dict__.get("forward")
            s.module.forward = _site_forward(s, s.module.forward, st)
            patched.append((s.module, had, old))
        yield st
    finally:
        for mod, had, old in reversed(patched):
            if had:
                mod.forward = old
            else:
                del mod.forward


_ANALYTIC_MODES = {"record": "off", "sample": "fresh", "native": "normal"}


def site_mode(
    model: nn.Module, mode: str = "record", *, generator: torch.Generator | None = None,
    sites: Sequence[DropoutSite] | None = None,
) -> contextlib.AbstractContextManager[DropoutState]:
    """:func:`dropout_state` with recording on, under the names of :mod:`dropreg.analytic`:
    ``"record"`` = ``"off"``, ``"sample"`` = ``"fresh"``, ``"native"`` = ``"normal"``.

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Dropout(0.5)).train()
        >>> with site_mode(net) as rec:
        ...     y = net(torch.ones(2, 3))
        >>> torch.equal(rec.values["1"][0], y), net[1].forward.__func__ is torch.nn.Dropout.forward
        (True, True)
    """
    if mode not in _ANALYTIC_MODES:
        raise ValueError(f"mode must be one of {tuple(_ANALYTIC_MODES)}, got {mode!r}")
    return dropout_state(model, _ANALYTIC_MODES[mode], generator=generator, record=True,
                         sites=sites)


# ----------------------------------------------------------------------- batch-first mask sets

@dataclass(frozen=True, eq=False)
class DropoutMasks:
    """One realisation of every site's mask for a batch, already scaled (``z / E[z]``).

    Attributes:
        masks: site name -> mask broadcastable against the site's input; the leading dim is the
            number of examples (per-example masks) or 1 (shared by the batch). A site whose
            input is unbatched (torch's ``Dropout1d`` on ``(C, L)``, ``Dropout3d`` on
            ``(C, D, H, W)``) has torch's unbatched mask shape and is always shared.
        per_example: whether masks were drawn per example.

    Example:
        >>> m = DropoutMasks({"1": torch.tensor([[2.0, 0.0], [0.0, 2.0], [2.0, 2.0]])})
        >>> m.batch(1, 3).masks["1"].tolist(), m.to(torch.float64).masks["1"].dtype
        ([[0.0, 2.0], [2.0, 2.0]], torch.float64)
    """

    masks: dict[str, Tensor]
    per_example: bool = True

    def batch(self, start: int, stop: int) -> DropoutMasks:
        """The masks of examples ``start:stop`` (shared masks are returned unchanged).

        Example:
            >>> shared = DropoutMasks({"1": torch.tensor([[2.0, 0.0]])}, per_example=False)
            >>> shared.batch(5, 9) is shared
            True
        """
        if not self.per_example:
            return self
        return DropoutMasks({k: v[start:stop] for k, v in self.masks.items()}, True)

    def to(self, dtype: torch.dtype) -> DropoutMasks:
        """The same masks cast to ``dtype``.

        Example:
            >>> DropoutMasks({"1": torch.ones(1, 2)}).to(torch.float64).masks["1"].dtype
            torch.float64
        """
        return DropoutMasks({k: v.to(dtype) for k, v in self.masks.items()}, self.per_example)


def _site_inputs(model: nn.Module, inputs: Tensor, sites: list[DropoutSite]) -> dict[str, Tensor]:
    """Run the clean model once and keep each site's input (the last call's, in call order)."""
    seen: dict[str, Tensor] = {}
    hooks = [s.module.register_forward_pre_hook(
        lambda mod, args, n=s.name: seen.__setitem__(n, args[0])) for s in sites]
    saved = {k: b.clone() for k, b in model.named_buffers()}  # e.g. BatchNorm running stats
    try:
        with torch.no_grad(), dropout_state(model, "off", sites=sites):
            model(inputs)
    finally:
        for h in hooks:
            h.remove()
        with torch.no_grad():
            for k, b in model.named_buffers():
                b.copy_(saved[k])
    return seen


def sample_masks(
    model: nn.Module,
    inputs: Tensor,
    num_masks: int = 1,
    *,
    per_example: bool = True,
    generator: torch.Generator | None = None,
    is_dropout: Callable[[nn.Module], bool] | None = None,
    dtype: torch.dtype | None = None,
) -> list[DropoutMasks]:
    """Draw ``num_masks`` independent realisations of every site's mask for ``inputs``.

    The clean model is run once to see each site's input shape; each mask is then drawn by
    :func:`sample_mask` (torch's layers: ``Bernoulli(1 - p) / (1 - p)`` with torch's channel
    rules; other sites: their own forward on ones).

    Args:
        model: the network.
        inputs: a batch of inputs, batch-first (the whole data set for full-batch operators).
        num_masks: number of independent realisations, >= 1.
        per_example: one mask per example (as ``nn.Dropout``) or one shared by the batch.
        generator: source of randomness.
        is_dropout: predicate selecting the sites (default :func:`is_dropout_site`).
        dtype: dtype of the masks (default: the dtype of each site's input).

    Returns:
        A list of :class:`DropoutMasks`.

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Linear(2, 4), torch.nn.Dropout(0.5))
        >>> g = torch.Generator().manual_seed(0)
        >>> ms = sample_masks(net, torch.randn(3, 2), 2, generator=g)
        >>> m = ms[0].masks["1"]
        >>> len(ms), tuple(m.shape), set(m.flatten().tolist()) <= {0.0, 2.0}
        (2, (3, 4), True)
    """
    check_int("num_masks", num_masks)
    sites = dropout_sites(model, is_dropout)
    if not sites:
        raise ValueError("model has no dropout site (is_dropout matched nothing)")
    by_name = {s.name: s for s in sites}
    seen = _site_inputs(model, inputs, sites)
    shapes = {}
    for name, x in seen.items():
        site = by_name[name]
        if site.is_batched(x.dim()):
            shapes[name] = (x.shape[0] if per_example else 1, *x.shape[1:])
        elif per_example:
            raise ValueError(f"site {name!r} ({type(site.module).__name__}) sees an unbatched "
                             f"input of shape {tuple(x.shape)}: its mask has no example dim; "
                             "use per_example=False")
        else:
            shapes[name] = tuple(x.shape)
    out = []
    for _ in range(num_masks):
        masks = {name: sample_mask(by_name[name], shapes[name], generator=generator,
                                   dtype=x.dtype if dtype is None else dtype, device=x.device)
                 for name, x in seen.items()}
        out.append(DropoutMasks(masks, per_example))
    return out
