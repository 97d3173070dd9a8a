"""Masks of dropout sites, drawn through the mask laws of :mod:`dropreg.masks`.

Sampling a mask (:func:`sample_mask`): torch's four dropout classes, attention sites and Bernoulli
weight sites draw ``Bernoulli(p).sample_scaled`` here from the given generator; every other site's
mask is the site's own forward applied to ones in training mode (so the layer's own law is used,
whatever it is), with torch's global generator seeded from the given one and restored afterwards.

:func:`sample_masks` draws whole mask sets for a batch (:class:`DropoutMasks`); it runs the clean
model once on copies of its buffers to see each site's input shape, so nothing of the model is
written.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from dropreg._checks import check_int, check_probability
from dropreg._random import seed_from
from dropreg.masks import Bernoulli
from dropreg.sites.registry import DropoutSite, dropout_sites, ones_on

__all__ = ["DropoutMasks", "bernoulli_mask", "group_sum", "sample_mask", "sample_masks",
           "site_inputs"]

_TORCH = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d)


def bernoulli_mask(
    shape: Sequence[int], p: float, shared_dims: Sequence[int] = (), *,
    generator: torch.Generator | None = None, dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Tensor:
    """Inverted-dropout mask ``z / (1 - p)``, one Bernoulli(``1 - p``) draw per noise group
    (all zeros at ``p = 1``); shape ``shape`` with 1 on ``shared_dims``; drawn by
    :meth:`dropreg.masks.Bernoulli.sample_scaled`.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> m = bernoulli_mask((2, 3, 4), 0.5, shared_dims=(2,), generator=g)
        >>> m.shape, bool(((m == 0) | (m == 2)).all())
        (torch.Size([2, 3, 1]), True)
    """
    p = check_probability("p", p)
    mshape = ones_on(shape, shared_dims)
    n = 1
    for s in mshape:
        n *= s
    z = Bernoulli(p).sample_scaled((n,), 1, generator=generator, dtype=dtype, device=device)
    return z.view(mshape)


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


def _law_draws(site: DropoutSite) -> bool:
    """Whether the mask is drawn here from ``Bernoulli(p)`` (not by the module's forward)."""
    return (type(site.module) in _TORCH or site.kind == "attention"
            or (site.kind == "weight" and isinstance(site.law, Bernoulli)))


def sample_mask(
    site: DropoutSite, shape: Sequence[int], *, generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32, device: torch.device | str | None = None,
    call: Callable[[Tensor], Tensor] | None = None,
) -> Tensor:
    """One scaled mask ``z / E[z]`` of ``site`` for an input of ``shape``, from ``generator``.

    torch's ``Dropout``/``Dropout1d/2d/3d`` (exact types), attention sites and Bernoulli weight
    sites: :func:`bernoulli_mask` of :meth:`DropoutSite.mask_shape`. Any other site: its own
    forward on ones in training mode (module docstring); ``call`` replaces ``site.module`` as that
    forward.

    Example:
        >>> site = dropout_sites(torch.nn.Sequential(torch.nn.Dropout1d(0.5)))[0]
        >>> sample_mask(site, (4, 3), generator=torch.Generator().manual_seed(0)).shape
        torch.Size([4, 1])
    """
    if _law_draws(site):
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


@dataclass(frozen=True, eq=False)
class DropoutMasks:
    """One realisation of every site's mask for a batch, already scaled (``z / E[z]``).

    Attributes:
        masks: site name -> mask broadcastable against the site's input; the leading dim is the
            number of examples (per-example masks) or 1 (shared by the batch). A site whose
            input is unbatched (torch's ``Dropout1d`` on ``(C, L)``, ``Dropout3d`` on
            ``(C, D, H, W)``) and weight sites have no example dim and are always shared.
        per_example: whether masks were drawn per example.
        shared: names of the sites whose masks have no example dim (never sliced by
            :meth:`batch`).

    Example:
        >>> m = DropoutMasks({"1": torch.tensor([[2.0, 0.0], [0.0, 2.0], [2.0, 2.0]])})
        >>> m.batch(1, 3).masks["1"].tolist(), m.to(torch.float64).masks["1"].dtype
        ([[0.0, 2.0], [2.0, 2.0]], torch.float64)
    """

    masks: dict[str, Tensor]
    per_example: bool = True
    shared: frozenset[str] = field(default_factory=frozenset)

    def batch(self, start: int, stop: int) -> DropoutMasks:
        """The masks of examples ``start:stop`` (shared masks are returned unchanged).

        Example:
            >>> shared = DropoutMasks({"1": torch.tensor([[2.0, 0.0]])}, per_example=False)
            >>> shared.batch(5, 9) is shared
            True
        """
        if not self.per_example:
            return self
        return DropoutMasks({k: v if k in self.shared else v[start:stop]
                             for k, v in self.masks.items()}, True, self.shared)

    def to(self, dtype: torch.dtype) -> DropoutMasks:
        """The same masks cast to ``dtype``.

        Example:
            >>> DropoutMasks({"1": torch.ones(1, 2)}).to(torch.float64).masks["1"].dtype
            torch.float64
        """
        return DropoutMasks({k: v.to(dtype) for k, v in self.masks.items()}, self.per_example,
                            self.shared)


def site_inputs(model: nn.Module, inputs: Tensor | tuple[Tensor, ...],
                sites: Sequence[DropoutSite]) -> dict[str, Tensor]:
    """Each site's input in the clean model (the last call's), without writing into the model.

    The model runs once in the ``"off"`` state on copies of its buffers, with train-mode
    BatchNorm using batch statistics and not updating its running statistics
    (:func:`dropreg.sites.frozen_statistics`). A weight site's input is its weight; an attention
    site's is its ``(N, heads, L, S)`` attention weights.

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4),
        ...                           torch.nn.Dropout(0.5))
        >>> before = net[1].running_mean.clone()
        >>> seen = site_inputs(net, torch.randn(5, 3), dropout_sites(net))
        >>> tuple(seen["2"].shape), torch.equal(net[1].running_mean, before)
        ((5, 4), True)
    """
    from torch.func import functional_call

    from dropreg.sites.state import dropout_state, frozen_statistics

    args = inputs if isinstance(inputs, tuple) else (inputs,)
    buffers = {k: b.clone() for k, b in model.named_buffers()}
    with torch.no_grad(), frozen_statistics(model), \
            dropout_state(model, "off", record=True, sites=sites) as st:
        functional_call(model, buffers, args, strict=False)
    return {name: vals[-1] for name, vals in st.values.items() if vals}


def sample_masks(
    model: nn.Module,
    inputs: Tensor | tuple[Tensor, ...],
    num_masks: int = 1,
    *,
    per_example: bool = True,
    generator: torch.Generator | None = None,
    is_dropout: Callable[[nn.Module], bool] | None = None,
    dtype: torch.dtype | None = None,
) -> list[DropoutMasks]:
    """Draw ``num_masks`` independent realisations of every site's mask for ``inputs``.

    The clean model is run once (:func:`site_inputs`, nothing of the model is written) to see
    each site's input shape; each mask is then drawn by :func:`sample_mask`. Weight sites get one
    mask per realisation whatever ``per_example`` (their masks are shared by the batch).

    Args:
        model: the network.
        inputs: a batch of inputs, batch-first (a tuple for a model with several inputs).
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
        raise ValueError("model has no dropout site (is_dropout matched nothing): nothing to "
                         "sample")
    by_name = {s.name: s for s in sites}
    seen = site_inputs(model, inputs, sites)
    if not seen:
        raise ValueError(f"no dropout site of the model was called in a forward pass (sites: "
                         f"{sorted(by_name)})")
    shapes, shared = {}, set()
    for name, x in seen.items():
        site = by_name[name]
        if site.is_batched(x.dim()):
            shapes[name] = (x.shape[0] if per_example else 1, *x.shape[1:])
        elif per_example and site.kind != "weight":
            raise ValueError(f"site {name!r} ({type(site.module).__name__}) sees an unbatched "
                             f"input of shape {tuple(x.shape)}: its mask has no example dim; "
                             "use per_example=False")
        else:
            shapes[name] = tuple(x.shape)
            shared.add(name)
    out = []
    for _ in range(num_masks):
        masks = {name: sample_mask(by_name[name], shapes[name], generator=generator,
                                   dtype=x.dtype if dtype is None else dtype, device=x.device)
                 for name, x in seen.items()}
        out.append(DropoutMasks(masks, per_example, frozenset(shared)))
    return out
