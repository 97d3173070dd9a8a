"""The state every dropout site of a model runs in: one vocabulary, four states.

Inside :func:`dropout_state` every site runs in one state (change it at any time through the
yielded :class:`DropoutState`): ``"normal"`` (its own forward), ``"off"`` (identity: the clean
network), ``"fixed"`` (times a given mask per site), ``"fresh"`` (times a new mask from a
generator at every call); with ``record=True`` the masked tensor of every call is recorded (a
fresh view, so ``torch.autograd.grad(loss, h)`` is the derivative through the site only) and so
is every mask drawn in the ``"fresh"`` state.

What a state does to each kind of site (:mod:`dropreg.sites.registry`):

* activation sites: the module's forward is the state (``x``, ``x * mask``, ...);
* attention sites (``nn.MultiheadAttention``): in the ``"off"``, ``"fixed"`` and ``"fresh"``
  states the module computes attention in plain tensor operations and the state multiplies its
  ``(N, heads, L, S)`` attention weights, exactly where torch applies its attention dropout;
  modules with ``add_bias_kv`` or ``add_zero_attn`` are refused by name there;
* weight sites: the state multiplies the weight (DropConnect) or is the mask of a
  :class:`dropreg.nn.WeightDrop` parametrization.

Inside the block torch's fused transformer fast path is off (so that the sites are called in eval
mode too) and scaled-dot-product attention runs on its math backend (which has a double
backward).

:func:`frozen_statistics` is the BatchNorm policy of the diagnostics: a BatchNorm module in
training mode normalises with the statistics of the batch it sees (as in training) but neither
reads nor updates its running statistics.

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
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dropreg.sites.masks import sample_mask
from dropreg.sites.registry import DropoutSite, dropout_sites

__all__ = ["STATES", "DropoutState", "dropout_state", "frozen_statistics", "site_mode"]

#: The states of :func:`dropout_state`.
STATES = ("normal", "off", "fixed", "fresh")


@dataclass(eq=False)
class DropoutState:
    """The live state of every site inside :func:`dropout_state`; assign attributes to switch.

    Attributes:
        sites: the sites switched.
        state: one of :data:`STATES`.
        masks: for ``"fixed"``, site name -> mask multiplying the site's input.
        generator: for ``"fresh"``, the source of new masks.
        source: for ``"fresh"``, a callable ``source(site, shape, dtype, device, call) -> mask``
            drawing the masks instead of ``generator`` (e.g. :class:`dropreg.sites.BlockMasks`,
            masks keyed by rows); ``None``: draw from ``generator``.
        record: record each call's output in ``values`` and each ``"fresh"`` mask in ``drawn``.
        values: site name -> outputs of each call since the last :meth:`clear` (a site applied
            several times in one forward records one tensor per call).
        drawn: site name -> masks drawn in the ``"fresh"`` state since the last :meth:`clear`.
        per_example: in the ``"fresh"`` state, one mask per example (``False``: one mask shared
            by the batch of each call).
        calls: number of site calls since the block began (recorded or not).

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
    per_example: bool = True
    calls: int = 0
    source: Callable[..., Tensor] | None = None

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

    def fired(self) -> list[str]:
        """Names of the sites called since the last :meth:`clear` (``record=True`` only)."""
        return [s.name for s in self.sites if self.values.get(s.name)]


def _check_state(state: object) -> None:
    if state not in STATES:
        raise ValueError(f"state must be one of {STATES}, got {state!r}")


def _apply(site: DropoutSite, original: Callable[[Tensor], Tensor] | None, st: DropoutState,
           x: Tensor) -> Tensor:
    """The state applied to the tensor ``x`` the site's mask multiplies."""
    state = st.state
    st.calls += 1
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
        shape = tuple(x.shape)
        if not st.per_example and site.is_batched(x.dim()):
            shape = (1, *shape[1:])
        if st.source is not None:
            mask = st.source(site, shape, x.dtype, x.device, original)
        else:
            mask = sample_mask(site, shape, generator=st.generator, dtype=x.dtype,
                               device=x.device, call=original)
        if st.record:
            st.drawn.setdefault(site.name, []).append(mask)
        out = x * mask
    elif state == "normal":
        if original is None:  # pragma: no cover - normal-state callers use the module's forward
            raise RuntimeError(f"site {site.name!r} has no forward of its own here")
        out = original(x)
    else:
        _check_state(state)
    if st.record:
        st.values.setdefault(site.name, []).append(out)
    return out


def _float_mask(mask: Tensor | None, dtype: torch.dtype) -> Tensor | None:
    if mask is None:
        return None
    if mask.dtype == torch.bool:
        return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(
            mask, float("-inf"))
    return mask.to(dtype)


def attention_forward(mha: nn.MultiheadAttention, dropout: Callable[[Tensor], Tensor],
                      query: Tensor, key: Tensor, value: Tensor,
                      key_padding_mask: Tensor | None = None, need_weights: bool = True,
                      attn_mask: Tensor | None = None, average_attn_weights: bool = True,
                      is_causal: bool = False, *, name: str = "") -> tuple[Tensor, Tensor | None]:
    """``nn.MultiheadAttention.forward`` in plain tensor operations, with ``dropout`` applied to
    the ``(N, heads, L, S)`` attention weights where torch applies its attention dropout
    (scaled dot-product and multi-head attention of Vaswani et al. 2017, Sec. 3.2).

    Example:
        >>> mha = torch.nn.MultiheadAttention(4, 2, dropout=0.1, batch_first=True).eval()
        >>> x = torch.randn(3, 5, 4)
        >>> out, _ = attention_forward(mha, lambda a: a, x, x, x)
        >>> bool(torch.allclose(out, mha(x, x, x)[0], atol=1e-6))
        True
    """
    if mha.bias_k is not None or mha.add_zero_attn:
        raise ValueError(f"attention site {name!r} (MultiheadAttention with add_bias_kv or "
                         f"add_zero_attn) cannot have its attention weights masked by dropreg; "
                         f"set dropout=0 on it or use the 'normal' state")
    unbatched = query.dim() == 2
    if unbatched:
        query, key, value = query.unsqueeze(1), key.unsqueeze(1), value.unsqueeze(1)
        if key_padding_mask is not None:
            key_padding_mask = key_padding_mask.unsqueeze(0)
    elif mha.batch_first:
        query, key, value = query.transpose(0, 1), key.transpose(0, 1), value.transpose(0, 1)
    L, N, E = query.shape
    S = key.shape[0]
    H = mha.num_heads
    d = E // H
    if mha._qkv_same_embed_dim:
        wq, wk, wv = mha.in_proj_weight.chunk(3)
    else:
        wq, wk, wv = mha.q_proj_weight, mha.k_proj_weight, mha.v_proj_weight
    bq = bk = bv = None
    if mha.in_proj_bias is not None:
        bq, bk, bv = mha.in_proj_bias.chunk(3)
    q = F.linear(query, wq, bq).reshape(L, N, H, d).permute(1, 2, 0, 3)  # (N, H, L, d)
    k = F.linear(key, wk, bk).reshape(S, N, H, d).permute(1, 2, 0, 3)
    v = F.linear(value, wv, bv).reshape(S, N, H, d).permute(1, 2, 0, 3)
    scores = q @ k.transpose(-2, -1) / math.sqrt(d)  # (N, H, L, S)
    am = _float_mask(attn_mask, scores.dtype)
    if am is None and is_causal:
        am = _float_mask(torch.ones(L, S, dtype=torch.bool, device=scores.device).triu(1),
                         scores.dtype)
    if am is not None:
        scores = scores + (am.view(N, H, L, S) if am.dim() == 3 else am)
    kpm = _float_mask(key_padding_mask, scores.dtype)
    if kpm is not None:
        scores = scores + kpm.view(N, 1, 1, S)
    attn = dropout(torch.softmax(scores, dim=-1))
    out = (attn @ v).permute(2, 0, 1, 3).reshape(L, N, E)
    out = F.linear(out, mha.out_proj.weight, mha.out_proj.bias)
    if unbatched:
        out = out.squeeze(1)
    elif mha.batch_first:
        out = out.transpose(0, 1)
    weights = None
    if need_weights:
        weights = attn.mean(1) if average_attn_weights else attn
        if unbatched:
            weights = weights.squeeze(0)
    return out, weights


def _patched_forward(site: DropoutSite, original: Callable, st: DropoutState) -> Callable:
    module = site.module
    if site.kind == "attention":
        def forward(*args, **kwargs):
            if st.state == "normal":
                return original(*args, **kwargs)
            return attention_forward(module, lambda a: _apply(site, None, st, a), *args,
                                     name=site.name, **kwargs)
        return forward
    if site.kind == "weight" and isinstance(module, (nn.Linear, nn.modules.conv._ConvNd)):
        def forward(x: Tensor) -> Tensor:
            if st.state == "normal":
                return original(x)
            w = _apply(site, None, st, module.weight)
            if isinstance(module, nn.Linear):
                return F.linear(x, w, module.bias)
            return module._conv_forward(x, w, module.bias)
        return forward

    def forward(x: Tensor) -> Tensor:
        return _apply(site, original, st, x)

    return forward


@contextlib.contextmanager
def _attention_math() -> Iterator[None]:
    """Torch's fused transformer fast path off, scaled-dot-product attention on its math
    backend (double backward and forward-mode derivatives exist there)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    was = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with sdpa_kernel(SDPBackend.MATH):
            yield
    finally:
        torch.backends.mha.set_fastpath_enabled(was)


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
            s.module.forward = _patched_forward(s, s.module.forward, st)
            patched.append((s.module, had, old))
        with _attention_math():
            yield st
    finally:
        for mod, had, old in reversed(patched):
            if had:
                mod.forward = old
            else:
                del mod.forward


@contextlib.contextmanager
def frozen_statistics(model: nn.Module) -> Iterator[list[str]]:
    """BatchNorm policy of the diagnostics: inside the block every BatchNorm module in training
    mode normalises with the batch statistics of its input, as in training, and neither reads
    nor updates its running statistics (``track_running_stats`` is off, then restored). Modules
    in eval mode use their running statistics, read only.

    Yields the names of the modules switched.

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.BatchNorm1d(3)).train()
        >>> before = net[1].running_mean.clone()
        >>> with frozen_statistics(net) as names:
        ...     _ = net(torch.randn(4, 2))
        >>> names, torch.equal(net[1].running_mean, before), net[1].track_running_stats
        (['1'], True, True)
    """
    switched = [(name, m) for name, m in model.named_modules()
                if isinstance(m, nn.modules.batchnorm._NormBase) and m.training
                and m.track_running_stats]
    try:
        for _, m in switched:
            m.track_running_stats = False
        yield [name for name, _ in switched]
    finally:
        for _, m in switched:
            m.track_running_stats = True


_OLD_NAMES = {"record": "off", "sample": "fresh", "native": "normal"}


def site_mode(
    model: nn.Module, mode: str = "record", *, generator: torch.Generator | None = None,
    sites: Sequence[DropoutSite] | None = None,
) -> contextlib.AbstractContextManager[DropoutState]:
    """Deprecated: use ``dropout_state(model, state, record=True)``; the old names map as
    ``"record"`` -> ``"off"``, ``"sample"`` -> ``"fresh"``, ``"native"`` -> ``"normal"``.

    Example:
        >>> import warnings
        >>> net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Dropout(0.5)).train()
        >>> with warnings.catch_warnings():
        ...     warnings.simplefilter("ignore")
        ...     with site_mode(net) as rec:
        ...         y = net(torch.ones(2, 3))
        >>> torch.equal(rec.values["1"][0], y)
        True
    """
    if mode not in _OLD_NAMES:
        raise ValueError(f"mode must be one of {tuple(_OLD_NAMES)}, got {mode!r}")
    warnings.warn(f"site_mode(model, {mode!r}) is deprecated; use dropout_state(model, "
                  f"{_OLD_NAMES[mode]!r}, record=True)", DeprecationWarning, stacklevel=2)
    return dropout_state(model, _OLD_NAMES[mode], generator=generator, record=True, sites=sites)
