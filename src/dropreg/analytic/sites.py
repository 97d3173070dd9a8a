"""Dropout sites of a model and the modes they can be switched to (digest wei2020 §1.2).

A *dropout site* is a module that multiplies its input by a random mask. dropreg finds them by a
small duck-typed protocol, so the analytic tools work for any PyTorch model:

* any subclass of ``torch.nn.modules.dropout._DropoutNd`` (``nn.Dropout``, ``nn.Dropout1d``,
  ``nn.Dropout2d``, ``nn.Dropout3d``) except the alpha-dropout variants (which are not
  multiplicative masks), or
* any module with ``is_dropout_site = True`` and a float attribute ``p`` (the DROP probability).

Optional attributes a site may declare (the defaults fit torch's layers and dropreg's
``Dropout`` and ``GaussianDropout``, whose noise variance is ``p / (1 - p)`` too):

* ``noise_variance``: ``Var(z / E[z])`` of one mask coordinate; default ``p / (1 - p)``
  (Bernoulli inverted dropout).
* ``shared_mask_dims``: dims of the input over which one mask value is shared (a *noise group*);
  default ``()`` for element-wise masks and the spatial dims for ``Dropout1d/2d/3d``.

Inside :func:`site_mode` every site is replaced by one of:

* ``"record"``: pass the activation through unchanged and record it (the analytic mode);
* ``"perturb"``: return ``h + delta`` for a given ``delta`` per site (for torch.func checks);
* ``"sample"``: apply a dropout mask; built-in torch dropout layers draw a Bernoulli mask from the
  given ``generator``, other sites run their own forward in training mode with the global
  generator seeded from ``generator`` (so the same generator gives the same masks);
* ``"native"``: the site's own forward in training mode, whatever the model's mode.

The recorded tensor is a fresh view of the site's output, so ``torch.autograd.grad(loss, h)`` gives
the derivative through the site only.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn.modules.dropout import _DropoutNd

_MODES = ("record", "perturb", "sample", "native")
_ALPHA = (nn.AlphaDropout, nn.FeatureAlphaDropout)
_BUILTIN = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d)


def is_dropout_site(module: nn.Module) -> bool:
    """Whether ``module`` is a dropout site (see the module docstring for the protocol).

    Example:
        >>> is_dropout_site(torch.nn.Dropout(0.1)), is_dropout_site(torch.nn.Linear(2, 2))
        (True, False)
    """
    if isinstance(module, _ALPHA):
        return False
    if isinstance(module, _DropoutNd) or getattr(module, "is_dropout_site", False) is True:
        return isinstance(getattr(module, "p", None), (float, int))
    return False


def _default_shared_dims(module: nn.Module, ndim: int) -> tuple[int, ...]:
    declared = getattr(module, "shared_mask_dims", None)
    if declared is not None:
        return tuple(int(d) % ndim for d in declared)
    spatial = {nn.Dropout1d: 1, nn.Dropout2d: 2, nn.Dropout3d: 3}
    for cls, k in spatial.items():
        if isinstance(module, cls):
            # channel masks: one value per (example, channel); unbatched inputs have ndim == k + 1
            return tuple(range(ndim - k, ndim))
    return ()


@dataclass(frozen=True)
class DropoutSite:
    """One dropout site: its qualified name, module, drop probability and noise variance.

    Example:
        >>> site = dropout_sites(torch.nn.Sequential(torch.nn.Dropout2d(0.5)))[0]
        >>> site.name, site.p, site.noise_variance, site.shared_dims(4)  # (N, C, H, W)
        ('0', 0.5, 1.0, (2, 3))
    """

    name: str
    module: nn.Module
    p: float
    noise_variance: float

    def shared_dims(self, ndim: int) -> tuple[int, ...]:
        """Dims over which the site's mask is shared, for an input with ``ndim`` dims.

        Example:
            >>> dropout_sites(torch.nn.Sequential(torch.nn.Dropout(0.1)))[0].shared_dims(3)
            ()
        """
        return _default_shared_dims(self.module, ndim)


def dropout_sites(model: nn.Module) -> list[DropoutSite]:
    """The dropout sites of ``model`` in registration order.

    Args:
        model: any module.

    Returns:
        One :class:`DropoutSite` per site module (a module shared at two places is listed once).

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Dropout(0.25))
        >>> [(s.name, s.p, round(s.noise_variance, 4)) for s in dropout_sites(net)]
        [('1', 0.25, 0.3333)]
    """
    sites = []
    for name, mod in model.named_modules():
        if not is_dropout_site(mod):
            continue
        p = float(mod.p)
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout site {name!r} has p={p}; the analytic tools need 0 <= p < 1")
        var = getattr(mod, "noise_variance", None)
        var = p / (1.0 - p) if var is None else float(var)
        sites.append(DropoutSite(name, mod, p, var))
    return sites


def bernoulli_mask(
    shape: Sequence[int], p: float, shared_dims: Sequence[int] = (), *,
    generator: torch.Generator | None = None, dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Inverted-dropout mask ``z / (1 - p)``, one Bernoulli draw per noise group.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> m = bernoulli_mask((2, 3, 4), 0.5, shared_dims=(2,), generator=g)
        >>> m.shape, bool(((m == 0) | (m == 2)).all())
        (torch.Size([2, 3, 1]), True)
    """
    if not 0.0 <= p < 1.0:
        raise ValueError(f"p must be in [0, 1), got {p}")
    mshape = [1 if d in shared_dims else int(s) for d, s in enumerate(shape)]
    keep = torch.rand(mshape, generator=generator, dtype=dtype, device=device) >= p
    return keep.to(dtype) / (1.0 - p)


@dataclass
class Recording:
    """What :func:`site_mode` records: per site name, the list of outputs of each call.

    A site applied several times in one forward (e.g. a dropout layer reused at each time step)
    records one tensor per call.

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Dropout(0.5))
        >>> with site_mode(net, "record") as rec:
        ...     out = net(torch.randn(2, 3))
        >>> [(site.name, tuple(h.shape)) for site, h in rec.items()], len(rec.tensors())
        ([('1', (2, 4))], 1)
        >>> rec.clear(); rec.tensors()
        []
    """

    sites: list[DropoutSite]
    values: dict[str, list[torch.Tensor]] = field(default_factory=dict)
    deltas: Mapping[str, torch.Tensor] | None = None

    def clear(self) -> None:
        """Forget everything recorded (call before a new forward pass).

        Example:
            >>> net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Dropout(0.5))
            >>> with site_mode(net, "record") as rec:
            ...     _ = net(torch.randn(2, 3))
            >>> rec.clear(); rec.values
            {'1': []}
        """
        self.values = {s.name: [] for s in self.sites}

    def items(self) -> Iterator[tuple[DropoutSite, torch.Tensor]]:
        """``(site, recorded tensor)`` pairs over every site call of the last forward pass.

        Example:
            >>> net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Dropout(0.5))
            >>> with site_mode(net, "record") as rec:
            ...     _ = net(torch.randn(2, 3))
            >>> [(site.name, site.p, tuple(h.shape)) for site, h in rec.items()]
            [('1', 0.5, (2, 4))]
        """
        for s in self.sites:
            for h in self.values.get(s.name, []):
                yield s, h

    def tensors(self) -> list[torch.Tensor]:
        """The recorded tensors, flattened over sites and calls.

        Example:
            >>> net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Dropout(0.5))
            >>> with site_mode(net, "record") as rec:
            ...     _ = net(torch.randn(2, 3))
            >>> [tuple(h.shape) for h in rec.tensors()]
            [(2, 4)]
        """
        return [h for _, h in self.items()]


def _check_mode(mode: str) -> None:
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")


@contextlib.contextmanager
def site_mode(
    model: nn.Module, mode: str = "record", *, generator: torch.Generator | None = None,
    deltas: Mapping[str, torch.Tensor] | None = None, sites: Sequence[DropoutSite] | None = None,
) -> Iterator[Recording]:
    """Switch every dropout site of ``model`` to ``mode`` inside the ``with`` block, then back.

    Args:
        model: the model.
        mode: ``"record"``, ``"perturb"``, ``"sample"`` or ``"native"`` (module docstring).
        generator: random source of ``"sample"`` masks for built-in torch dropout layers.
        deltas: for ``"perturb"``, the additive perturbation per site name (sites without an
            entry pass through). Can be replaced later through ``recording.deltas``.
        sites: the sites to switch (default: all of :func:`dropout_sites`); others are untouched.

    Yields:
        A :class:`Recording` filled at each forward pass (cleared by the caller).

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Dropout(0.5)).train()
        >>> with site_mode(net) as rec:
        ...     y = net(torch.ones(2, 3))
        >>> torch.equal(rec.values["1"][0], y), net[1].forward.__func__ is torch.nn.Dropout.forward
        (True, True)
    """
    _check_mode(mode)
    site_list = list(dropout_sites(model) if sites is None else sites)
    rec = Recording(site_list, deltas=deltas)
    rec.clear()
    patched = []

    def make_forward(site: DropoutSite, original):
        builtin = type(site.module) in _BUILTIN

        def forward(x: torch.Tensor) -> torch.Tensor:
            if mode == "record":
                if torch.is_grad_enabled() and not x.requires_grad:
                    out = x.detach().requires_grad_(True)  # e.g. dropout on the input
                else:
                    out = x.view_as(x)
            elif mode == "perturb":
                d = None if rec.deltas is None else rec.deltas.get(site.name)
                out = x.view_as(x) if d is None else x + d
            elif mode == "sample" and builtin:
                if site.module.p == 0.0:
                    out = x.view_as(x)
                else:
                    mask = bernoulli_mask(x.shape, site.p, site.shared_dims(x.dim()),
                                          generator=generator, dtype=x.dtype, device=x.device)
                    out = x * mask
            else:  # native, or sample of a non-builtin site
                was = site.module.training
                site.module.training = True
                try:
                    if mode == "sample" and generator is not None:
                        # the site draws from the global generator: seed it from ours so that
                        # the same generator gives the same masks (as curvature.state does)
                        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
                        devices = [x.device] if x.device.type == "cuda" else []
                        with torch.random.fork_rng(devices=devices):
                            torch.manual_seed(seed)
                            out = original(x)
                    else:
                        out = original(x)
                finally:
                    site.module.training = was
            rec.values.setdefault(site.name, []).append(out)
            return out

        return forward

    try:
        for s in site_list:
            had = "forward" in s.module.__dict__
            old = s.module.__dict__.get("forward")
            s.module.forward = make_forward(s, s.module.forward)
            patched.append((s.module, had, old))
        yield rec
    finally:
        for mod, had, old in patched:
            if had:
                mod.forward = old
            else:
                del mod.forward


def group_sum(x: torch.Tensor, shared_dims: Sequence[int]) -> torch.Tensor:
    """Sum ``x`` over the dims a mask is shared on (identity for element-wise masks)."""
    return x.sum(dim=tuple(shared_dims), keepdim=True) if shared_dims else x


def rademacher(shape: Sequence[int], *, generator: torch.Generator | None = None,
               dtype: torch.dtype = torch.float32,
               device: torch.device | str | None = None) -> torch.Tensor:
    """Independent uniform signs in {-1, +1}.

    Example:
        >>> rademacher((1000,), generator=torch.Generator().manual_seed(0)).abs().unique()
        tensor([1.])
    """
    bits = torch.randint(0, 2, tuple(shape), generator=generator, device=device)
    return (2 * bits - 1).to(dtype)


def taylor_coefficient(p: float) -> float:
    """``p / (2 (1 - p))``: the second-order Taylor coefficient of Bernoulli dropout (eq. 4.2).

    Example:
        >>> round(taylor_coefficient(0.4), 12)
        0.333333333333
    """
    if not 0.0 <= p < 1.0:
        raise ValueError(f"p must be in [0, 1), got {p}")
    return p / (2.0 * (1.0 - p)) if p > 0 else 0.0

