"""Hessian-vector products of a model's loss over a data set, in three dropout states.

``H = d^2/dtheta^2 (1/N) sum_i loss(f_theta(x_i), y_i)`` for the clean model, for fixed masks, or
averaged over a fixed set of M masks (the Hessian of the expected dropout loss over those masks;
``docs/guide/curvature.md``). Products are forward-over-reverse (``torch.func.jvp`` of
``torch.func.grad``) where ``torch.func`` can trace the model, double backward otherwise; both are
exact.

``loss_fn(output, target)`` must return the mean over the batch (as torch's losses with
``reduction="mean"``); batches are then weighted by their size, so batching does not change the
operator.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Literal

import torch
from torch import Tensor, nn
from torch.func import functional_call

from dropreg._checks import check_int
from dropreg.sites import DropoutMasks, DropoutState, dropout_state

if TYPE_CHECKING:
    from scipy.sparse.linalg import LinearOperator

__all__ = ["HessianOperator", "flatten_params", "unflatten_params"]

Method = Literal["auto", "forward-over-reverse", "double-backward"]


def flatten_params(params: Mapping[str, Tensor] | Sequence[Tensor]) -> Tensor:
    """Concatenate tensors (a dict's values in order, or a sequence such as a tuple of
    gradients) into one flat vector. ``dropreg.analytic.flatten`` is this function.

    Example:
        >>> flatten_params({"a": torch.ones(2, 2), "b": torch.zeros(1)}).tolist()
        [1.0, 1.0, 1.0, 1.0, 0.0]
        >>> flatten_params((torch.ones(2, 3), torch.zeros(2))).shape
        torch.Size([8])
    """
    tensors = params.values() if isinstance(params, Mapping) else params
    return torch.cat([p.reshape(-1) for p in tensors])


def unflatten_params(vec: Tensor, like: dict[str, Tensor]) -> dict[str, Tensor]:
    """Split a flat vector into tensors shaped like ``like`` (inverse of :func:`flatten_params`).

    Example:
        >>> d = unflatten_params(torch.arange(5.0), {"a": torch.ones(2, 2), "b": torch.zeros(1)})
        >>> d["b"].tolist()
        [4.0]
    """
    out, i = {}, 0
    for k, p in like.items():
        n = p.numel()
        out[k] = vec[i:i + n].view_as(p)
        i += n
    if i != vec.numel():
        raise ValueError(f"vector has {vec.numel()} entries, parameters have {i}")
    return out


def unflatten_params_batched(mat: Tensor, like: dict[str, Tensor]) -> dict[str, Tensor]:
    """Split rows of ``mat`` (k, P) into tensors shaped ``(k, *p.shape)`` like ``like``."""
    out, i = {}, 0
    for k, p in like.items():
        n = p.numel()
        out[k] = mat[:, i:i + n].reshape(mat.shape[0], *p.shape)
        i += n
    return out


def _mask_list(dropout: str | DropoutMasks | Sequence[DropoutMasks] | None
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


class HessianOperator:
    """The Hessian of a model's mean loss over ``(X, y)`` as a matrix-free symmetric operator.

    Args:
        model: the network (its ``training`` flag is ignored for dropout modules; other modules,
            e.g. BatchNorm, run as set by the user).
        loss_fn: ``loss_fn(output, target) -> scalar`` mean over the batch.
        data: ``(X, y)`` tensors, batch-first.
        dropout: ``"clean"`` (dropout off), one :class:`DropoutMasks` (fixed masks) or a
            sequence of them (the expected loss over these M masks). Masks must cover all N
            examples (per-example) or be shared.
        batch_size: examples per forward pass (``None``: the whole data set at once).
        params: names of the parameters to differentiate (default: all with ``requires_grad``).
        method: ``"forward-over-reverse"``, ``"double-backward"`` or ``"auto"``: double backward
            over a cached gradient graph when ``cache_graph``, else forward-over-reverse,
            falling back to double backward if ``torch.func`` fails on the model.
        is_dropout: predicate selecting dropout sites (default
            :func:`dropreg.sites.is_dropout_site`).
        cache_graph: keep the gradient's autograd graph between products (double backward),
            so each product is one extra backward pass and no forward pass. Default: when the
            whole evaluation is one piece (full batch, clean or one mask set); memory is that
            of one forward and backward pass per piece.

    The operator is taken at the parameters' values at construction. Modules other than
    dropout run in the mode the user set: put BatchNorm in eval mode (or use
    ``track_running_stats=False``), otherwise each product also updates its running statistics.

    Attributes:
        num_matvecs: Hessian-vector products computed so far (one per vector, whatever M and the
            number of batches).

    Example:
        >>> torch.manual_seed(0)
        <torch._C.Generator object at ...>
        >>> net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))
        >>> net = net.double()
        >>> X, y = torch.randn(8, 3, dtype=torch.float64), torch.randn(8, 1, dtype=torch.float64)
        >>> H = HessianOperator(net, torch.nn.functional.mse_loss, (X, y))
        >>> H.shape
        (21, 21)
        >>> bool(torch.allclose(H.to_dense(), H.to_dense().T))
        True
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: Callable[[Tensor, Tensor], Tensor],
        data: tuple[Tensor, Tensor],
        *,
        dropout: str | DropoutMasks | Sequence[DropoutMasks] = "clean",
        batch_size: int | None = None,
        params: Sequence[str] | None = None,
        method: Method = "auto",
        is_dropout: Callable[[nn.Module], bool] | None = None,
        cache_graph: bool | None = None,
    ) -> None:
        if method not in ("auto", "forward-over-reverse", "double-backward"):
            raise ValueError(f"method must be 'auto', 'forward-over-reverse' or "
                             f"'double-backward', got {method!r}")
        if not (isinstance(data, (tuple, list)) and len(data) == 2):
            raise TypeError("data must be a pair (X, y) of tensors")
        X, y = data
        if X.shape[0] != y.shape[0] or X.shape[0] == 0:
            raise ValueError(f"data: X and y need the same non-zero number of rows, got "
                             f"{X.shape[0]} and {y.shape[0]}")
        n = X.shape[0]
        if batch_size is not None:
            check_int("batch_size", batch_size)
        self.model, self.loss_fn, self.X, self.y = model, loss_fn, X, y
        self.batch_size = n if batch_size is None else min(batch_size, n)
        self.masks = _mask_list(dropout)
        if self.masks is not None:
            for m in self.masks:
                for name, t in m.masks.items():
                    if m.per_example and t.shape[0] != n:
                        raise ValueError(f"mask of {name!r} has {t.shape[0]} rows, data has {n}")
        named = dict(model.named_parameters())
        if params is None:
            names = [k for k, p in named.items() if p.requires_grad]
        else:
            missing = [k for k in params if k not in named]
            if missing:
                raise ValueError(f"params: unknown parameter names {missing}; model has "
                                 f"{sorted(named)}")
            names = list(params)
        if not names:
            raise ValueError("no parameters to differentiate")
        self.params = {k: named[k].detach().clone() for k in names}  # a snapshot
        self.method: Method = method
        self.is_dropout = is_dropout
        self.num_params = sum(p.numel() for p in self.params.values())
        self.dtype = next(iter(self.params.values())).dtype
        self.device = next(iter(self.params.values())).device
        self.num_matvecs = 0
        n_pieces = -(-n // self.batch_size) * (1 if self.masks is None else len(self.masks))
        self.cache_graph = (n_pieces == 1) if cache_graph is None else bool(cache_graph)
        self._graphs: list | None = None
        if method == "auto":  # cached double backward skips the forward pass of every product
            self.method = "double-backward" if self.cache_graph else "auto"

    @property
    def shape(self) -> tuple[int, int]:
        """``(P, P)`` with ``P`` = :attr:`num_params`."""
        return (self.num_params, self.num_params)

    # -- evaluation helpers -------------------------------------------------------------------
    def _pieces(self):
        """Yield (weight, Xb, yb, mask-dict or None) over batches and masks."""
        n = self.X.shape[0]
        masks = self.masks if self.masks is not None else [None]
        w_mask = 1.0 / len(masks)
        for start in range(0, n, self.batch_size):
            stop = min(start + self.batch_size, n)
            w = (stop - start) / n * w_mask
            for m in masks:
                md = None if m is None else m.batch(start, stop).masks
                yield w, self.X[start:stop], self.y[start:stop], md

    def _loss_of(self, state: DropoutState, md, Xb, yb):
        def f(p: dict[str, Tensor]) -> Tensor:
            state.set_masks(md)
            return self.loss_fn(functional_call(self.model, p, (Xb,)), yb)

        return f

    def loss(self, vec: Tensor | None = None) -> float:
        """The loss in this dropout state at the parameters, or at ``vec`` (flat) if given.

        Example:
            >>> g = torch.Generator().manual_seed(0)
            >>> X = torch.randn(6, 3, generator=g, dtype=torch.float64)
            >>> y = torch.randn(6, 1, generator=g, dtype=torch.float64)
            >>> net = torch.nn.Linear(3, 1, bias=False).double()
            >>> H = HessianOperator(net, torch.nn.functional.mse_loss, (X, y))
            >>> H.loss() == torch.nn.functional.mse_loss(net(X), y).item()
            True
            >>> H.loss(torch.zeros(3, dtype=torch.float64)) == (y**2).mean().item()
            True
        """
        p = self.params if vec is None else unflatten_params(vec, self.params)
        total = 0.0
        with torch.no_grad(), dropout_state(self.model, is_dropout=self.is_dropout) as h:
            for w, Xb, yb, md in self._pieces():
                total += w * float(self._loss_of(h, md, Xb, yb)(p))
        return total

    def gradient(self) -> Tensor:
        """The flat gradient of the loss in this dropout state.

        Example:
            >>> g = torch.Generator().manual_seed(0)
            >>> X = torch.randn(6, 3, generator=g, dtype=torch.float64)
            >>> y = torch.randn(6, 1, generator=g, dtype=torch.float64)
            >>> net = torch.nn.Linear(3, 1, bias=False).double()
            >>> H = HessianOperator(net, torch.nn.functional.mse_loss, (X, y))
            >>> w = net.weight.detach()[0]
            >>> bool(torch.allclose(H.gradient(), 2 * X.T @ (X @ w - y[:, 0]) / 6))
            True
        """
        g = torch.zeros(self.num_params, dtype=self.dtype, device=self.device)
        with dropout_state(self.model, is_dropout=self.is_dropout) as h:
            for w, Xb, yb, md in self._pieces():
                gd = torch.func.grad(self._loss_of(h, md, Xb, yb))(self.params)
                g += w * flatten_params(gd)
        return g

    def _hvp_fwd(self, vd: dict[str, Tensor]) -> Tensor:
        out = torch.zeros(self.num_params, dtype=self.dtype, device=self.device)
        with dropout_state(self.model, is_dropout=self.is_dropout) as h:
            for w, Xb, yb, md in self._pieces():
                g = torch.func.grad(self._loss_of(h, md, Xb, yb))
                _, hv = torch.func.jvp(g, (self.params,), (vd,))
                out += w * flatten_params(hv)
        return out

    def _gradient_graphs(self):
        """Yield ``(weight, leaves, grads with graph)`` per piece; cached when ``cache_graph``."""
        if self._graphs is not None:
            yield from self._graphs
            return
        built = []
        with dropout_state(self.model, is_dropout=self.is_dropout) as h:
            for w, Xb, yb, md in self._pieces():
                leaves = [p.detach().requires_grad_(True) for p in self.params.values()]
                pd = dict(zip(self.params, leaves))
                loss = self._loss_of(h, md, Xb, yb)(pd)
                gs = torch.autograd.grad(loss, leaves, create_graph=True, allow_unused=True)
                item = (w, leaves, gs)
                if self.cache_graph:
                    built.append(item)
                yield item
        if self.cache_graph:
            self._graphs = built

    def _hvp_dbl(self, vd: dict[str, Tensor]) -> Tensor:
        out = torch.zeros(self.num_params, dtype=self.dtype, device=self.device)
        vs = list(vd.values())
        for w, leaves, gs in self._gradient_graphs():
            pairs = [(g, v) for g, v in zip(gs, vs) if g is not None and g.requires_grad]
            if not pairs:
                continue  # loss is linear in these parameters on this piece
            hv = torch.autograd.grad([g for g, _ in pairs], leaves,
                                     grad_outputs=[v for _, v in pairs],
                                     retain_graph=self.cache_graph, allow_unused=True)
            hv = [torch.zeros_like(p) if t is None else t for t, p in zip(hv, leaves)]
            out += w * torch.cat([t.reshape(-1) for t in hv])
        return out

    def matvec(self, v: Tensor) -> Tensor:
        """``H @ v`` for a flat vector ``v`` of length :attr:`num_params`.

        Example:
            For a linear model under the mean squared error, ``H = 2 X^T X / N`` exactly:

            >>> g = torch.Generator().manual_seed(0)
            >>> X = torch.randn(6, 3, generator=g, dtype=torch.float64)
            >>> y = torch.randn(6, 1, generator=g, dtype=torch.float64)
            >>> net = torch.nn.Linear(3, 1, bias=False).double()
            >>> H = HessianOperator(net, torch.nn.functional.mse_loss, (X, y))
            >>> v = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
            >>> bool(torch.allclose(H.matvec(v), 2 * X.T @ X @ v / 6)), H.num_matvecs
            (True, 1)
        """
        if v.shape != (self.num_params,):
            raise ValueError(f"v must have shape ({self.num_params},), got {tuple(v.shape)}")
        vd = unflatten_params(v.to(self.dtype), self.params)
        self.num_matvecs += 1
        if self.method == "double-backward":
            return self._hvp_dbl(vd)
        if self.method == "forward-over-reverse":
            return self._hvp_fwd(vd)
        try:
            out = self._hvp_fwd(vd)
            self.method = "forward-over-reverse"
            return out
        except Exception:  # torch.func cannot trace some models: fall back, and remember
            self.method = "double-backward"
            return self._hvp_dbl(vd)

    def _hmm_fwd(self, V: Tensor) -> Tensor:
        """``H @ V`` for ``V`` (P, k) with vmap over the columns (forward-over-reverse)."""
        out = torch.zeros(V.shape[1], self.num_params, dtype=self.dtype, device=self.device)
        vd = unflatten_params_batched(V.T.to(self.dtype), self.params)
        with dropout_state(self.model, is_dropout=self.is_dropout) as h:
            for w, Xb, yb, md in self._pieces():
                g = torch.func.grad(self._loss_of(h, md, Xb, yb))

                def hvp(t: dict[str, Tensor], g=g) -> dict[str, Tensor]:
                    return torch.func.jvp(g, (self.params,), (t,))[1]

                hv = torch.func.vmap(hvp)(vd)
                out += w * torch.cat([hv[k].reshape(V.shape[1], -1) for k in self.params], 1)
        return out.T

    def matmat(self, V: Tensor, chunk_size: int = 64) -> Tensor:
        """``H @ V`` for ``V`` of shape (P, k): vectorised over columns where ``torch.func`` can,
        one product at a time otherwise. Counts ``k`` products.

        Example:
            >>> g = torch.Generator().manual_seed(0)
            >>> X = torch.randn(6, 3, generator=g, dtype=torch.float64)
            >>> y = torch.randn(6, 1, generator=g, dtype=torch.float64)
            >>> net = torch.nn.Linear(3, 1, bias=False).double()
            >>> H = HessianOperator(net, torch.nn.functional.mse_loss, (X, y))
            >>> V = torch.eye(3, 2, dtype=torch.float64)
            >>> bool(torch.allclose(H.matmat(V), 2 * X.T @ X @ V / 6)), H.num_matvecs
            (True, 2)
        """
        if V.ndim != 2 or V.shape[0] != self.num_params:
            raise ValueError(f"V must have shape ({self.num_params}, k), got {tuple(V.shape)}")
        if self.method != "double-backward":
            try:
                cols = [self._hmm_fwd(V[:, i:i + chunk_size])
                        for i in range(0, V.shape[1], chunk_size)]
                self.num_matvecs += V.shape[1]
                self.method = "forward-over-reverse"
                return torch.cat(cols, 1)
            except Exception:
                if self.method == "forward-over-reverse":
                    raise
                self.method = "double-backward"
        return torch.stack([self.matvec(c) for c in V.T], dim=1)

    def __matmul__(self, v: Tensor) -> Tensor:
        if v.ndim == 2:
            return self.matmat(v)
        return self.matvec(v)

    def to_dense(self) -> Tensor:
        """The full P x P Hessian from P products (small models only), symmetrised.

        Example:
            >>> g = torch.Generator().manual_seed(0)
            >>> X = torch.randn(6, 3, generator=g, dtype=torch.float64)
            >>> y = torch.randn(6, 1, generator=g, dtype=torch.float64)
            >>> net = torch.nn.Linear(3, 1, bias=False).double()
            >>> H = HessianOperator(net, torch.nn.functional.mse_loss, (X, y))
            >>> bool(torch.allclose(H.to_dense(), 2 * X.T @ X / 6))
            True
        """
        H = self.matmat(torch.eye(self.num_params, dtype=self.dtype, device=self.device))
        return (H + H.T) / 2

    def to_scipy(self) -> LinearOperator:
        """A ``scipy.sparse.linalg.LinearOperator`` (float64) over :meth:`matvec`.

        Example:
            >>> import numpy as np
            >>> g = torch.Generator().manual_seed(0)
            >>> X = torch.randn(6, 3, generator=g, dtype=torch.float64)
            >>> y = torch.randn(6, 1, generator=g, dtype=torch.float64)
            >>> net = torch.nn.Linear(3, 1, bias=False).double()
            >>> H = HessianOperator(net, torch.nn.functional.mse_loss, (X, y))
            >>> A = H.to_scipy()
            >>> A.shape, bool(np.allclose(A @ np.ones(3), (2 * X.T @ X @ torch.ones(3,
            ...                                 dtype=torch.float64) / 6).numpy()))
            ((3, 3), True)
        """
        import numpy as np
        from scipy.sparse.linalg import LinearOperator

        def mv(x):
            t = torch.as_tensor(np.asarray(x).reshape(-1), dtype=self.dtype, device=self.device)
            return self.matvec(t).detach().cpu().double().numpy()

        return LinearOperator(self.shape, matvec=mv, rmatvec=mv, dtype=np.float64)
