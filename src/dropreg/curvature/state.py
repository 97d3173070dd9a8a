"""Dropout states of a model: clean, fixed masks, or an average over a fixed set of masks.

Curvature of a dropout net needs the randomness pinned down. PyHessian calls ``model.eval()``,
curvlinops rejects models whose forward is random and ``torch.func`` raises on random ops
(``anchors.md`` §3). Here every dropout module's forward is *temporarily replaced* by a
deterministic one while an operator evaluates the model:

* **clean**: the module is the identity (dropout off, whatever ``model.training`` says);
* **fixed masks**: the module multiplies its input by a given mask ``z / E[z]``
  (a :class:`DropoutMasks`), so repeated calls, ``torch.func`` transforms and double backward all
  see one realisation;
* **expected**: a sequence of :class:`DropoutMasks`, averaged by the caller (the Hessian of the
  expected dropout loss over those masks).

A module counts as dropout when ``is_dropout(module)`` is true; the default
(:func:`is_dropout_layer`) accepts ``torch.nn.Dropout``, ``Dropout1d/2d/3d`` (not
``AlphaDropout``, which is affine) and dropreg's input-mask layers. Any other module whose output
is its input times a random mask works too: pass ``is_dropout``. Masks of modules other than
torch's are captured by calling the module on a tensor of ones in train mode, with torch's global
generator seeded from ``generator`` and restored afterwards (a layer with its own ``generator``
draws from that one).

Masks are batch-first: a mask's leading dimension is the number of examples (masks drawn per
example, as ``nn.Dropout`` does) or 1 (one mask shared by the batch).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

__all__ = [
    "DropoutMasks",
    "dropout_modules",
    "dropout_state",
    "is_dropout_layer",
    "is_torch_dropout",
    "sample_masks",
]


def is_dropout_layer(module: nn.Module) -> bool:
    """Default dropout predicate: torch's multiplicative dropout modules and dropreg's
    input-mask layers (``dropreg.nn`` ``Dropout``, ``GaussianDropout``, ``DropBlock1d/2d``,
    ``MaskDropout``); not DropConnect, whose mask is on the weights.

    Example:
        >>> from dropreg.nn import DropBlock2d, DropConnectLinear
        >>> is_dropout_layer(DropBlock2d(0.1, 3)), is_dropout_layer(DropConnectLinear(2, 2, 0.1))
        (True, False)
    """
    if is_torch_dropout(module):
        return True
    try:
        from dropreg.nn.modules import DropLayer
    except ImportError:  # pragma: no cover - dropreg.nn absent
        return False
    weight_masks = (nn.Linear, nn.modules.conv._ConvNd)
    return isinstance(module, DropLayer) and not isinstance(module, weight_masks)


def is_torch_dropout(module: nn.Module) -> bool:
    """Default dropout predicate: torch's multiplicative dropout modules.

    Example:
        >>> is_torch_dropout(torch.nn.Dropout(0.5)), is_torch_dropout(torch.nn.AlphaDropout(0.5))
        (True, False)
    """
    alpha = (nn.AlphaDropout, nn.FeatureAlphaDropout)
    return isinstance(module, nn.modules.dropout._DropoutNd) and not isinstance(module, alpha)


def dropout_modules(
    model: nn.Module, is_dropout: Callable[[nn.Module], bool] | None = None
) -> dict[str, nn.Module]:
    """The dropout modules of ``model`` by qualified name.

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Dropout(0.1))
        >>> list(dropout_modules(net))
        ['1']
    """
    pred = is_dropout_layer if is_dropout is None else is_dropout
    return {name: m for name, m in model.named_modules() if name and pred(m)}


@dataclass(frozen=True, eq=False)
class DropoutMasks:
    """One realisation of every dropout module's mask, already scaled (``z / E[z]``).

    Attributes:
        masks: module name -> mask broadcastable against the module's input; the leading
            dimension is the number of examples (per-example masks) or 1 (shared by the batch).
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


class _Holder:
    """Mutable slot read by patched forwards: ``None`` = clean, else name -> mask."""

    def __init__(self) -> None:
        self.current: dict[str, Tensor] | None = None


@contextlib.contextmanager
def dropout_state(
    model: nn.Module, is_dropout: Callable[[nn.Module], bool] | None = None
) -> Iterator[_Holder]:
    """Patch every dropout module of ``model`` to read its mask from the returned holder.

    Inside the block, set ``holder.current = None`` for the clean model, or to a mapping
    ``name -> mask`` for fixed masks. Forwards are restored on exit.

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Identity(), torch.nn.Dropout(0.5))
        >>> x = torch.ones(1, 3)
        >>> with dropout_state(net) as h:
        ...     h.current = {"1": torch.tensor([[2.0, 0.0, 2.0]])}
        ...     net(x).tolist()
        [[2.0, 0.0, 2.0]]
    """
    mods = dropout_modules(model, is_dropout)
    holder = _Holder()
    patched = []

    def make_forward(name: str) -> Callable[[Tensor], Tensor]:
        def forward(x: Tensor) -> Tensor:
            cur = holder.current
            if cur is None:
                return x
            try:
                mask = cur[name]
            except KeyError:
                raise KeyError(f"no mask for dropout module {name!r}; masks have "
                               f"{sorted(cur)}") from None
            return x * mask

        return forward

    try:
        for name, m in mods.items():
            if "forward" in m.__dict__:
                raise RuntimeError(f"dropout module {name!r} is already patched")
            m.forward = make_forward(name)  # type: ignore[method-assign]
            patched.append(m)
        yield holder
    finally:
        for m in patched:
            del m.forward


def _record_inputs(
    model: nn.Module, inputs: Tensor, is_dropout: Callable[[nn.Module], bool] | None
) -> dict[str, Tensor]:
    """Run the clean model once and keep each dropout module's input (for shapes and capture)."""
    seen: dict[str, Tensor] = {}
    mods = dropout_modules(model, is_dropout)
    if not mods:
        raise ValueError("model has no dropout module (is_dropout matched nothing)")
    hooks = [m.register_forward_pre_hook(lambda mod, args, n=n: seen.__setitem__(n, args[0]))
             for n, m in mods.items()]
    saved = {k: b.clone() for k, b in model.named_buffers()}  # e.g. BatchNorm running stats
    try:
        with torch.no_grad(), dropout_state(model, is_dropout):
            model(inputs)
    finally:
        for h in hooks:
            h.remove()
        with torch.no_grad():
            for k, b in model.named_buffers():
                b.copy_(saved[k])
    return seen


def _torch_mask(module: nn.Module, shape: tuple[int, ...], n_lead: int, dtype: torch.dtype,
                generator: torch.Generator | None) -> Tensor:
    p = float(module.p)  # type: ignore[arg-type]
    if isinstance(module, nn.Dropout):
        mshape = (n_lead, *shape[1:])
    else:  # Dropout1d/2d/3d: one mask per channel, broadcast over the spatial dims
        mshape = (n_lead, shape[1], *([1] * (len(shape) - 2)))
    if p >= 1.0:
        return torch.zeros(mshape, dtype=dtype)
    keep = torch.full(mshape, 1.0 - p, dtype=dtype)
    return torch.bernoulli(keep, generator=generator) / (1.0 - p)


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
    """Draw ``num_masks`` independent realisations of all dropout masks for ``inputs``.

    Torch dropout modules are sampled exactly as in train mode (``Bernoulli(1 - p) / (1 - p)``,
    ``p`` the drop probability; channel masks for ``Dropout1d/2d/3d``). Other modules matched by
    ``is_dropout`` are captured by calling them on ones in train mode with torch's global
    generator seeded from ``generator``.

    Args:
        model: the network.
        inputs: a batch of inputs, batch-first (the whole data set for full-batch operators).
        num_masks: number of independent realisations, >= 1.
        per_example: one mask per example (as ``nn.Dropout``) or one shared by the batch.
        generator: source of randomness.
        is_dropout: predicate selecting dropout modules (default :func:`is_dropout_layer`).
        dtype: dtype of the masks (default: the dtype of each module's input).

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
    if not isinstance(num_masks, int) or num_masks < 1:
        raise ValueError(f"num_masks must be an int >= 1, got {num_masks!r}")
    seen = _record_inputs(model, inputs, is_dropout)
    mods = dropout_modules(model, is_dropout)
    out = []
    for _ in range(num_masks):
        masks = {}
        for name, x in seen.items():
            m = mods[name]
            n_lead = x.shape[0] if per_example else 1
            dt = x.dtype if dtype is None else dtype
            if is_torch_dropout(m):
                masks[name] = _torch_mask(m, tuple(x.shape), n_lead, dt, generator)
            else:
                seed = int(torch.randint(0, 2**62, (1,), generator=generator))
                ones = torch.ones((n_lead, *x.shape[1:]), dtype=dt)
                was = m.training
                with torch.random.fork_rng(devices=[]), torch.no_grad():
                    torch.manual_seed(seed)
                    m.train()
                    try:
                        masks[name] = m(ones)
                    finally:
                        m.train(was)
        out.append(DropoutMasks(masks, per_example))
    return out


def as_mask_list(dropout: str | DropoutMasks | Sequence[DropoutMasks] | None
                 ) -> list[DropoutMasks] | None:
    """Normalise a dropout-state argument: ``None``/"clean" -> None, masks -> list."""
    if dropout is None or (isinstance(dropout, str) and dropout == "clean"):
        return None
    if isinstance(dropout, DropoutMasks):
        return [dropout]
    if isinstance(dropout, str):
        raise ValueError(f"dropout must be 'clean', a DropoutMasks or a sequence of them, "
                         f"got {dropout!r}")
    masks = list(dropout)
    if not masks or not all(isinstance(m, DropoutMasks) for m in masks):
        raise TypeError("dropout must be 'clean', a DropoutMasks or a non-empty sequence of "
                        "DropoutMasks")
    return masks
