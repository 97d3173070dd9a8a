"""The empirical risk of a model in a dropout state: data, masks, loss and gradient.

``R(theta) = sum_b n_b L_b(theta) / sum_b n_b`` over the batches ``b`` of the data (``n_b`` the
number of targets of batch ``b``, ``L_b`` the mean loss on it), in one of three dropout states
(the dropout loss of Zhang, Zhou, Xu 2022 and its Hessian):

* ``"clean"``: every dropout site off (the network without dropout);
* ``"fixed"``: one mask per site and row, the same at every evaluation;
* ``"expected"``: the mean over ``M`` fixed mask sets (the expected dropout loss over these
  masks).

Masks of the ``"fixed"``/``"expected"`` states are drawn from a seed (drawn once from
``generator`` at construction) per fixed block of rows (:mod:`dropreg.sites.blocks`): row ``i``,
mask set ``m`` gets its mask from a generator keyed by ``(seed, i // block_rows, m)``, in the
forward pass itself, so no mask is stored, every evaluation sees the same masks, and the masks
(so the risk and its Hessian) do not depend on the batch size nor on how the rows are split over
ranks. Masks that a forward pass shares (weight sites, ``per_example=False``) are keyed by the
first row of their batch, so they depend on where batches begin. Memory is that of one batch's
forward and backward pass (times ``M`` where mask sets are stacked along the batch, see
``stack_masks``). Explicit :class:`~dropreg.sites.DropoutMasks` may be given instead.

Across processes (``process_group=``, :mod:`dropreg.curvature.distributed`): each rank holds its
shard of the rows, in rank order; the global row count and each shard's first global row are
gathered once at construction, every piece is weighted by the global row count, and loss,
gradient and each Hessian-vector product are summed over the ranks by one all-reduce.

The risk holds its own snapshot of the model's parameters and buffers, taken at construction,
and evaluates the model through ``torch.func.functional_call`` with them: later changes of the
model do not change the risk, and nothing of the model is written. BatchNorm modules in training
mode normalise with the statistics of each batch (of the masked activations, in the masked
states), so the risk then depends on how the data are batched; their running statistics are
neither read nor updated (:func:`dropreg.sites.frozen_statistics`). Put BatchNorm in eval mode
for the per-example risk with the running statistics.
"""

from __future__ import annotations

import contextlib
import math
import struct
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call

from dropreg._checks import check_int
from dropreg._params import unflatten_params
from dropreg._random import seed_from
from dropreg.curvature import distributed as _dist
from dropreg.sites import (
    BlockMasks,
    DropoutMasks,
    DropoutState,
    dropout_sites,
    dropout_state,
    frozen_statistics,
)

__all__ = ["STATES", "DropoutRisk", "uncontrolled_randomness"]

#: The dropout states of a risk.
STATES = ("clean", "fixed", "expected")


@dataclass(frozen=True)
class _Rows:
    """The masks of a forward pass over global rows ``start : start + rows``, mask sets ``sets``
    stacked along the batch."""

    start: int
    rows: int
    sets: tuple[int, ...]


def uncontrolled_randomness(model: nn.Module, sites: Sequence | None = None) -> list[str]:
    """Modules of ``model`` in training mode whose randomness dropreg does not control, as
    ``"name (Type)"``: alpha dropout, ``RReLU``, RNN inter-layer ``dropout``, and dropout
    modules not selected as sites.

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.AlphaDropout(0.2),
        ...                           torch.nn.LSTM(2, 2, num_layers=2, dropout=0.3))
        >>> uncontrolled_randomness(net)
        ['1 (AlphaDropout)', '2 (LSTM)']
    """
    site_mods = {id(s.module) for s in (dropout_sites(model) if sites is None else sites)}
    out = []
    for name, m in model.named_modules():
        if not m.training or id(m) in site_mods:
            continue
        random = isinstance(m, (nn.AlphaDropout, nn.FeatureAlphaDropout, nn.RReLU,
                                nn.modules.dropout._DropoutNd))
        random |= isinstance(m, nn.RNNBase) and m.dropout > 0 and m.num_layers > 1
        random |= isinstance(m, nn.MultiheadAttention) and m.dropout > 0
        if random:
            out.append(f"{name} ({type(m).__name__})")
    return out


def _grad(f: Callable[[dict[str, Tensor]], Tensor], params: dict[str, Tensor]
          ) -> tuple[Tensor, float]:
    """Flat gradient and value of ``f`` at ``params`` by plain autograd (works on any model)."""
    leaves = {k: p.detach().requires_grad_(True) for k, p in params.items()}
    with torch.enable_grad():
        value = f(leaves)
        gs = torch.autograd.grad(value, list(leaves.values()), allow_unused=True)
    flat = torch.cat([torch.zeros(p.numel(), dtype=p.dtype, device=p.device) if g is None
                      else g.reshape(-1) for g, p in zip(gs, leaves.values())])
    return flat, float(value.detach())


def _check_pair(batch: object, where: str, empty_ok: bool = False) -> tuple[Any, Tensor]:
    if not (isinstance(batch, (tuple, list)) and len(batch) == 2):
        raise TypeError(f"data: {where} must be a pair (inputs, targets), got "
                        f"{type(batch).__name__}")
    x, y = batch
    xs = x if isinstance(x, tuple) else (x,)
    if not all(isinstance(t, Tensor) for t in xs) or not isinstance(y, Tensor):
        raise TypeError(f"data: {where} needs tensors (inputs a tensor or a tuple of tensors, "
                        f"targets a tensor), got {type(x).__name__} and {type(y).__name__}")
    if y.ndim == 0 or (y.shape[0] == 0 and not empty_ok):
        raise ValueError(f"data: {where} has no targets (shape {tuple(y.shape)})")
    for t in (*xs, y):
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise ValueError(f"data: {where} has non-finite values (NaN or inf) in a tensor of "
                             f"shape {tuple(t.shape)}")
    if xs[0].ndim and xs[0].shape[0] != y.shape[0]:
        raise ValueError(f"data: {where} has {xs[0].shape[0]} input rows but {y.shape[0]} "
                         "target rows")
    return x, y


def _repeat(t: Any, k: int) -> Any:
    if isinstance(t, tuple):
        return tuple(_repeat(u, k) for u in t)
    return t.repeat(k, *([1] * (t.dim() - 1))) if k > 1 else t


def _mask_list(dropout: object) -> list[DropoutMasks] | None:
    if isinstance(dropout, DropoutMasks):
        return [dropout]
    masks = list(dropout)  # type: ignore[call-overload]
    if not masks or not all(isinstance(m, DropoutMasks) for m in masks):
        raise TypeError(f"dropout must be one of {STATES}, a DropoutMasks or a non-empty "
                        "sequence of them")
    return masks


class DropoutRisk:
    """The mean loss of ``model`` over ``data`` in a dropout state (module docstring).

    Args:
        model: the network.
        loss_fn: ``loss_fn(output, target) -> scalar``, the mean over the batch (torch's
            losses with ``reduction="mean"``).
        data: ``(X, y)`` tensors (batch-first), or any re-iterable of ``(inputs, targets)``
            batches (a ``DataLoader``, a list), weighted by their number of targets; with
            ``process_group``, this rank's shard (rank ``r`` holds the rows after those of
            ranks ``< r``; it may be empty).
        dropout: ``"clean"``, ``"fixed"``, ``"expected"`` (masks drawn per block of rows from a
            seed), or explicit :class:`~dropreg.sites.DropoutMasks` (one: fixed; a sequence:
            expected over them; for this rank's rows); per-example explicit masks need
            ``(X, y)`` data.
        num_masks: ``M``, the mask sets of the ``"expected"`` state.
        per_example: masks per example (as ``nn.Dropout``) or one per batch.
        generator: source of the mask seed (with ``process_group``: the same seed on every
            rank, checked).
        batch_size: with ``(X, y)`` data, examples per forward pass (default all).
        params: names of the parameters to differentiate (default all with ``requires_grad``).
        is_dropout: predicate selecting dropout sites (default
            :func:`dropreg.sites.is_dropout_site`).
        stack_masks: evaluate the ``M`` mask sets of a batch in one forward pass on the batch
            repeated ``M`` times (``None``: where exact, i.e. per-example masks, no weight site,
            no BatchNorm in training mode); the masks are those of the unstacked passes.
        check_deterministic: evaluate the loss and gradient on the first batch twice and raise
            ``ValueError`` naming the modules with uncontrolled randomness if they differ.
        block_rows: rows per block of the mask keying (module docstring); a batch draws the
            masks of the blocks it touches.
        process_group: a ``torch.distributed`` process group over which the data are sharded
            (``None``: one process). Construction, :meth:`loss`, :meth:`gradient` and every
            product are then collective: call them on every rank, in the same order, with the
            same vectors. Use gloo for CPU tensors, NCCL for CUDA tensors.

    Attributes:
        params: the snapshot of the differentiated parameters (name -> tensor).
        sites: the dropout sites.
        seed: the mask seed (``None`` in the clean state and for explicit masks).
        num_rows: the global row count ``N`` (over all ranks; ``None`` for a batch iterable in
            one process, counted at each evaluation).
        row_offset: the global index of this shard's first row (0 in one process).
        rank, world_size: of this process in ``process_group`` (0 and 1 without one).

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Dropout(0.5),
        ...                           torch.nn.Linear(4, 1)).double()
        >>> X = torch.randn(8, 3, generator=g, dtype=torch.float64)
        >>> y = torch.randn(8, 1, generator=g, dtype=torch.float64)
        >>> clean = DropoutRisk(net, torch.nn.functional.mse_loss, (X, y))
        >>> clean.loss() == torch.nn.functional.mse_loss(net.eval()(X), y).item()
        True
        >>> batches = [(X[:5], y[:5]), (X[5:], y[5:])]
        >>> batched = DropoutRisk(net, torch.nn.functional.mse_loss, batches)
        >>> abs(batched.loss() - clean.loss()) < 1e-15
        True
        >>> risk = DropoutRisk(net, torch.nn.functional.mse_loss, (X, y), dropout="expected",
        ...                    num_masks=4, generator=g)
        >>> risk.loss() == risk.loss(), risk.num_params
        (True, 21)
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: Callable[[Any, Tensor], Tensor],
        data: tuple[Tensor, Tensor] | Iterable[tuple[Any, Tensor]],
        *,
        dropout: str | DropoutMasks | Sequence[DropoutMasks] = "clean",
        num_masks: int = 8,
        per_example: bool = True,
        generator: torch.Generator | None = None,
        batch_size: int | None = None,
        params: Sequence[str] | None = None,
        is_dropout: Callable[[nn.Module], bool] | None = None,
        stack_masks: bool | None = None,
        check_deterministic: bool = True,
        block_rows: int = 64,
        process_group: Any = None,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if not callable(loss_fn):
            raise TypeError(f"loss_fn must be callable, got {type(loss_fn).__name__}")
        self.block_rows = check_int("block_rows", block_rows)
        self.process_group = process_group
        self.rank, self.world_size = (0, 1) if process_group is None else \
            _dist.check_process_group(process_group)
        self.row_offset = 0
        self.model, self.loss_fn, self.is_dropout = model, loss_fn, is_dropout
        if process_group is None:
            self._build(data, dropout, num_masks, per_example, generator, batch_size, params,
                        stack_masks, check_deterministic)
            self.num_rows = self.num_examples
            return
        failure: BaseException | None = None
        try:
            self._build(data, dropout, num_masks, per_example, generator, batch_size, params,
                        stack_masks, check_deterministic)
        except Exception as exc:  # reported to every rank before it is raised
            failure = exc
        self._join(failure)

    def _build(self, data, dropout, num_masks, per_example, generator, batch_size, params,
               stack_masks, check_deterministic) -> None:
        self._set_data(data, batch_size)
        self.sites = dropout_sites(self.model, self.is_dropout)
        self.per_example = bool(per_example)
        self.masks: list[DropoutMasks] | None = None
        self.seed: int | None = None
        if isinstance(dropout, str):
            if dropout not in STATES:
                raise ValueError(f"dropout must be one of {STATES}, a DropoutMasks or a "
                                 f"sequence of them, got {dropout!r}")
            self.state = dropout
            self.num_masks = check_int("num_masks", num_masks) if dropout == "expected" else (
                1 if dropout == "fixed" else 0)
            if dropout != "clean":
                self.seed = seed_from(generator)
        else:
            self.masks = _mask_list(dropout)
            self.state = "fixed" if len(self.masks) == 1 else "expected"
            self.num_masks = len(self.masks)
            self._check_masks()
        if self.state != "clean" and not self.sites:
            raise ValueError(f"dropout={self.state!r} needs dropout sites, but the model has "
                             "none (is_dropout matched nothing)")
        self.stack = self._can_stack(stack_masks)
        self._snapshot(params)
        self.num_evaluations = 0
        if self.process_group is not None:
            self.local_rows = self._count_rows()
        if check_deterministic and (self.process_group is None or self.local_rows > 0):
            self.check_deterministic()

    # -- across ranks -------------------------------------------------------------------------
    def _count_rows(self) -> int:
        if self.loader is None:
            self._local_pieces = self.num_pieces
            return self.num_examples
        sizes = [int(y.shape[0]) for _, y in self.batches()]
        per = 1 if self.stack or self.state == "clean" else self.num_masks
        self._local_pieces = per * sum(1 for n in sizes if n > 0)
        return sum(sizes)

    @property
    def max_pieces(self) -> int | None:
        """The most forward passes per evaluation on any rank (:attr:`num_pieces` in one
        process); the same on every rank, so choices made from it (the operator's cached
        graph) are the same on every rank."""
        return getattr(self, "_max_pieces", self.num_pieces)

    def _params_fingerprint(self) -> int:
        f = 0.0
        for k, p in enumerate(self.params.values()):
            q = p.detach().double()
            f += (k + 1) * float(q.sum()) + float((q * q).sum()) / (k + 2)
        return struct.unpack("<q", struct.pack("<d", f))[0]

    def _join(self, failure: BaseException | None) -> None:
        """One all-gather of (failed, rows, P, seed, parameter fingerprint, pieces) of every
        rank: the
        global row count, this shard's offset, and the checks that every rank holds the same
        model and seed."""
        device = torch.device("cpu")
        if failure is None:
            device = self.device
        elif torch.distributed.get_backend(self.process_group) == "nccl":
            device = torch.device("cuda", torch.cuda.current_device())
        mine = [1, 0, 0, -1, 0, 0] if failure is not None else [
            0, self.local_rows, self.num_params, -1 if self.seed is None else self.seed,
            self._params_fingerprint(), self._local_pieces]
        rows = _dist.gather_ints(mine, self.process_group, device)
        if failure is not None:
            raise failure
        failed = [r for r, m in enumerate(rows) if m[0]]
        if failed:
            raise _dist.RankFailure(f"DropoutRisk could not be built on rank(s) {failed} of the "
                                    "process group; see the error raised there")
        for what, col in (("the number of parameters", 2), ("the mask seed", 3),
                          ("the parameters (their fingerprint)", 4)):
            values = [m[col] for m in rows]
            if len(set(values)) > 1:
                hint = (" (draw it from generator=torch.Generator().manual_seed(s) with the same "
                        "s on every rank)" if col == 3 else
                        " (build or load the same model on every rank)")
                raise ValueError(f"process_group: {what} differs between the ranks: "
                                 f"{values}{hint}")
        sizes = [m[1] for m in rows]
        self._max_pieces = max(m[5] for m in rows)
        self.row_offset = sum(sizes[:self.rank])
        self.num_rows = sum(sizes)
        if self.num_rows == 0:
            raise ValueError("data: every rank's shard is empty (0 rows over the process group)")

    def reduce(self, compute: Callable[[], tuple[Tensor, float]], shape: Sequence[int],
               probes: Tensor | None = None) -> Tensor:
        """The risk-level value of a sum over pieces: ``compute() -> (sum of weighted pieces,
        sum of their weights)`` on this rank, divided by the weights in one process; with a
        process group summed over the ranks (one all-reduce, the same tensor on every rank) and
        divided by the global row count, ``probes`` (the vectors of a product) checked to be
        the same on every rank, and an exception on any rank raised on every rank.

        Example:
            >>> net = torch.nn.Linear(2, 1).double()
            >>> X, y = torch.ones(4, 2, dtype=torch.float64), torch.zeros(4, 1, dtype=torch.float64)
            >>> risk = DropoutRisk(net, torch.nn.functional.mse_loss, (X, y))
            >>> risk.reduce(lambda: (torch.tensor([6.0], dtype=torch.float64), 3.0), (1,))
            tensor([2.], dtype=torch.float64)
        """
        if self.process_group is None:
            total, weight = compute()
            return total / weight
        out = _dist.sum_over_ranks(lambda: compute()[0], shape, self.process_group,
                                   dtype=self.dtype, device=self.device, probes=probes,
                                   weights=self._probe_weights(probes))
        return out / self.num_rows

    def _probe_weights(self, probes: Tensor | None) -> Tensor | None:
        if probes is None:
            return None
        w = getattr(self, "_weights_cache", None)
        if w is None or w.shape[0] != probes.shape[0]:
            w = _dist._weights(probes.shape[0], self.dtype, self.device)
            self._weights_cache = w
        return w

    # -- construction -------------------------------------------------------------------------
    def _set_data(self, data: object, batch_size: int | None) -> None:
        if batch_size is not None:
            check_int("batch_size", batch_size)
        if (isinstance(data, (tuple, list)) and len(data) == 2
                and isinstance(data[1], Tensor) and not isinstance(data[0], (tuple, list))):
            X, y = _check_pair(data, "(X, y)", empty_ok=self.process_group is not None)
            self.X, self.y, self.loader = X, y, None
            self.num_examples = int(y.shape[0])
            self.batch_size = max(1, self.num_examples if batch_size is None else min(
                batch_size, self.num_examples))
            return
        if isinstance(data, Tensor) or not isinstance(data, Iterable):
            raise TypeError(f"data must be a pair (X, y) of tensors or an iterable of "
                            f"(inputs, targets) batches, got {type(data).__name__}")
        if iter(data) is data:
            raise TypeError("data is a one-shot iterator: it would be used up by the first "
                            "evaluation; pass a DataLoader or a list of batches")
        if batch_size is not None:
            raise ValueError("batch_size applies to (X, y) data only; a batch iterable has its "
                             "own batches")
        self.X = self.y = None
        self.loader, self.num_examples, self.batch_size = data, None, None

    def _check_masks(self) -> None:
        assert self.masks is not None
        per = any(m.per_example and set(m.masks) - set(m.shared) for m in self.masks)
        if per and self.loader is not None:
            raise ValueError("per-example DropoutMasks need (X, y) data (their rows are the "
                             "examples); with a batch iterable use dropout='fixed' or "
                             "'expected' (masks drawn per block of rows from a seed)")
        names = {s.name for s in self.sites}
        for m in self.masks:
            unknown = sorted(set(m.masks) - names)
            if unknown:
                raise ValueError(f"dropout masks name {unknown}, which are not dropout sites "
                                 f"of the model (sites: {sorted(names)})")
            for name, t in m.masks.items():
                if m.per_example and name not in m.shared and t.shape[0] != self.num_examples:
                    raise ValueError(f"mask of {name!r} has {t.shape[0]} rows, data has "
                                     f"{self.num_examples}")

    def _can_stack(self, stack: bool | None) -> bool:
        if self.state == "clean" or self.masks is not None or self.num_masks == 1:
            if stack:
                raise ValueError("stack_masks applies to dropout='expected' with masks drawn "
                                 "from a seed")
            return False
        why = None
        if not self.per_example:
            why = "masks shared by a batch (per_example=False)"
        elif any(s.kind == "weight" for s in self.sites):
            why = "weight sites (one mask per forward pass): " + ", ".join(
                s.name for s in self.sites if s.kind == "weight")
        else:
            bn = [n for n, m in self.model.named_modules()
                  if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training]
            if bn:
                why = f"BatchNorm in training mode (batch statistics would mix masks): {bn}"
        if why is not None and stack:
            raise ValueError(f"stack_masks=True is not exact for this model: {why}")
        return why is None if stack is None else bool(stack)

    def _snapshot(self, params: Sequence[str] | None) -> None:
        named = dict(self.model.named_parameters())
        if params is None:
            names = [k for k, p in named.items() if p.requires_grad]
        else:
            missing = [k for k in params if k not in named]
            if missing:
                raise ValueError(f"params: unknown parameter names {missing}; model has "
                                 f"{sorted(named)}")
            names = list(params)
        if not names:
            raise ValueError("no parameters to differentiate (none requires grad)")
        self.params = {k: named[k].detach().clone() for k in names}
        self._fixed = {k: p.detach().clone() for k, p in named.items() if k not in self.params}
        self._fixed.update({k: b.detach().clone() for k, b in self.model.named_buffers()})
        first = next(iter(self.params.values()))
        self.dtype, self.device = first.dtype, first.device
        self.num_params = sum(p.numel() for p in self.params.values())

    # -- data and pieces ----------------------------------------------------------------------
    def batches(self) -> Iterator[tuple[Any, Tensor]]:
        """The ``(inputs, targets)`` batches of the data, checked (pairs of tensors, finite)."""
        if self.loader is None:
            for start in range(0, self.num_examples, self.batch_size):
                stop = min(start + self.batch_size, self.num_examples)
                x = self.X if start == 0 and stop == self.num_examples else (
                    tuple(t[start:stop] for t in self.X) if isinstance(self.X, tuple)
                    else self.X[start:stop])
                yield x, self.y[start:stop]
            return
        count = 0
        for i, batch in enumerate(self.loader):
            yield _check_pair(batch, f"batch {i}")
            count += 1
        if count == 0 and self.process_group is None:
            raise ValueError("data: the batch iterable yielded no batch")

    @property
    def num_pieces(self) -> int | None:
        """Forward passes per evaluation of the risk (``None`` for a batch iterable)."""
        if self.loader is None:
            nb = -(-self.num_examples // self.batch_size)
            return nb * (1 if self.stack or self.state == "clean" else self.num_masks)
        return None

    def _pieces(self) -> Iterator[tuple[float, Any, Tensor, object]]:
        """``(weight, inputs, targets, spec)``; spec is None (clean), a mask dict or the rows
        (global indices) and mask sets whose masks are drawn per block of rows."""
        start = 0
        for x, y in self.batches():
            n = int(y.shape[0])
            if n == 0:
                continue
            first = self.row_offset + start
            if self.state == "clean":
                yield float(n), x, y, None
            elif self.masks is not None:
                for m in self.masks:
                    yield n / self.num_masks, x, y, m.batch(start, start + n).masks
            elif self.stack:
                yield float(n), _repeat(x, self.num_masks), _repeat(y, self.num_masks), \
                    _Rows(first, n, tuple(range(self.num_masks)))
            else:
                for k in range(self.num_masks):
                    yield n / self.num_masks, x, y, _Rows(first, n, (k,))
            start += n

    def _function(self, st: DropoutState, x: Any, y: Tensor, spec: object
                  ) -> Callable[[dict[str, Tensor]], Tensor]:
        args = x if isinstance(x, tuple) else (x,)
        device = y.device

        def f(p: dict[str, Tensor]) -> Tensor:
            st.source = None
            if spec is None:
                st.state, st.masks = "off", None
            elif isinstance(spec, _Rows):
                st.state = "fresh"
                st.source = BlockMasks(self.seed, spec.start, spec.rows, spec.sets,
                                       block_rows=self.block_rows, per_example=self.per_example)
            elif isinstance(spec, int):
                st.state = "fresh"
                st.generator = torch.Generator(device=device).manual_seed(spec)
            else:
                st.state, st.masks = "fixed", spec
            out = functional_call(self.model, {**p, **self._fixed}, args, strict=False)
            value = self.loss_fn(out, y)
            if not isinstance(value, Tensor) or value.ndim != 0:
                shape = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
                raise ValueError(f"loss_fn must return a scalar tensor (the mean over the batch), "
                                 f"got {shape}; use reduction='mean'")
            return value

        return f

    @contextlib.contextmanager
    def switched(self) -> Iterator[DropoutState]:
        """The sites switchable (:func:`dropreg.sites.dropout_state`) under the BatchNorm policy
        (:func:`dropreg.sites.frozen_statistics`): the context of every evaluation."""
        with frozen_statistics(self.model), dropout_state(
                self.model, "off", sites=self.sites) as st:
            st.per_example = self.per_example
            yield st

    def function(self, st: DropoutState, x: Any, y: Tensor, spec: object = None
                 ) -> Callable[[dict[str, Tensor]], Tensor]:
        """``f(params) -> loss`` of one forward pass on ``(x, y)`` inside :meth:`switched`, with
        ``spec`` ``None`` (clean), a mask dict (fixed) or an int seed (masks drawn from it)."""
        return self._function(st, x, y, spec)

    @contextlib.contextmanager
    def evaluation(self) -> Iterator[Callable[[], Iterator[tuple[float, Callable]]]]:
        """Context in which ``pieces()`` yields ``(weight, f)``, ``f(params) -> loss`` of one
        forward pass, with the sites switched (weights sum to the number of targets).

        Example:
            >>> net = torch.nn.Linear(2, 1).double()
            >>> X, y = torch.ones(4, 2, dtype=torch.float64), torch.zeros(4, 1, dtype=torch.float64)
            >>> risk = DropoutRisk(net, torch.nn.functional.mse_loss, (X, y), batch_size=3)
            >>> with risk.evaluation() as pieces:
            ...     [w for w, f in pieces()]
            [3.0, 1.0]
        """
        with self.switched() as st:

            def pieces() -> Iterator[tuple[float, Callable]]:
                for w, x, y, spec in self._pieces():
                    self.num_evaluations += 1
                    yield w, self._function(st, x, y, spec)

            yield pieces

    def _at(self, vec: Tensor | None) -> dict[str, Tensor]:
        return self.params if vec is None else unflatten_params(vec.to(self.dtype), self.params)

    def loss(self, vec: Tensor | None = None) -> float:
        """The risk at the snapshot parameters, or at flat parameters ``vec``.

        Example:
            >>> net = torch.nn.Linear(3, 1, bias=False).double()
            >>> X = torch.randn(6, 3, dtype=torch.float64)
            >>> y = torch.randn(6, 1, dtype=torch.float64)
            >>> risk = DropoutRisk(net, torch.nn.functional.mse_loss, (X, y))
            >>> risk.loss(torch.zeros(3, dtype=torch.float64)) == (y**2).mean().item()
            True
        """
        self._check_vec(vec)

        def compute() -> tuple[Tensor, float]:
            p = self._at(vec)
            total = weight = 0.0
            with torch.no_grad(), self.evaluation() as pieces:
                for w, f in pieces():
                    total += w * float(f(p))
                    weight += w
            return torch.tensor([total], dtype=torch.float64, device=self.device), weight

        return float(self.reduce(compute, (1,), vec)[0])

    def gradient(self, vec: Tensor | None = None) -> Tensor:
        """The flat gradient of the risk (at ``vec`` if given).

        Example:
            >>> net = torch.nn.Linear(3, 1, bias=False).double()
            >>> X = torch.randn(6, 3, dtype=torch.float64)
            >>> y = torch.randn(6, 1, dtype=torch.float64)
            >>> risk = DropoutRisk(net, torch.nn.functional.mse_loss, (X, y))
            >>> w = net.weight.detach()[0]
            >>> bool(torch.allclose(risk.gradient(), 2 * X.T @ (X @ w - y[:, 0]) / 6))
            True
        """
        self._check_vec(vec)

        def compute() -> tuple[Tensor, float]:
            p = self._at(vec)
            g = torch.zeros(self.num_params, dtype=self.dtype, device=self.device)
            weight = 0.0
            with self.evaluation() as pieces:
                for w, f in pieces():
                    g += w * _grad(f, p)[0]
                    weight += w
            return g, weight

        return self.reduce(compute, (self.num_params,), vec)

    def _check_vec(self, vec: Tensor | None) -> None:
        if vec is not None and (not isinstance(vec, Tensor) or vec.shape != (self.num_params,)):
            shape = tuple(vec.shape) if isinstance(vec, Tensor) else type(vec).__name__
            raise ValueError(f"vec must be a tensor of shape ({self.num_params},), got {shape}")

    def check_deterministic(self) -> None:
        """Evaluate loss and gradient of the first forward pass twice; raise ``ValueError``
        naming the modules whose randomness dropreg does not control if they differ, or if the
        loss is not finite, or if the masked states see no site fire.

        Example:
            >>> net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.RReLU()).double()
            >>> X = torch.randn(4, 2, dtype=torch.float64)
            >>> y = torch.randn(4, 2, dtype=torch.float64)
            >>> try:
            ...     DropoutRisk(net, torch.nn.functional.mse_loss, (X, y))
            ... except ValueError as e:
            ...     print(str(e)[:49], "1 (RReLU)" in str(e))
            the loss or gradient of the model differs between True
        """
        with self.evaluation() as pieces:
            for _, f in pieces():
                a, l1 = _grad(f, self.params)
                b, l2 = _grad(f, self.params)
                break
            st_calls = self._calls_of_last()
        if not math.isfinite(l1):
            raise ValueError(f"the loss at the parameters is {l1}: not finite")
        tol = math.sqrt(torch.finfo(self.dtype).eps)
        scale = float(a.abs().max()) + abs(float(l1)) + 1e-300
        diff = max(abs(float(l1) - float(l2)), float((a - b).abs().max()))
        if diff > tol * scale:
            culprits = uncontrolled_randomness(self.model, self.sites)
            named = (", ".join(culprits) if culprits else
                     "no module of a known random type; look for custom modules in training "
                     "mode that draw random numbers")
            raise ValueError(f"the loss or gradient of the model differs between two evaluations "
                             f"with the same parameters, data and masks (relative difference "
                             f"{diff / scale:.2e}): its randomness is not all controlled by "
                             f"dropreg. Modules with randomness dropreg does not control: "
                             f"{named}. Put them in eval mode, make them dropout sites, or "
                             f"remove them")
        if self.state != "clean" and st_calls == 0:
            raise ValueError(f"dropout={self.state!r}: no dropout site was called in a forward "
                             f"pass (sites: {[s.name for s in self.sites]})")
        self.num_evaluations = 0

    def _calls_of_last(self) -> int:
        """Site calls in one clean evaluation of the first batch (a no-grad forward)."""
        x, y = next(iter(self.batches()))
        with torch.no_grad(), frozen_statistics(self.model), dropout_state(
                self.model, "off", sites=self.sites) as st:
            functional_call(self.model, {**self.params, **self._fixed},
                            x if isinstance(x, tuple) else (x,), strict=False)
            return st.calls
