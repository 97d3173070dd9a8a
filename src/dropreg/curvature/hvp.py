"""Hessian-vector products of a :class:`~dropreg.curvature.risk.DropoutRisk` (products only).

``H = d^2 R / d theta^2`` of the risk in its dropout state (clean, fixed masks, or expected over
M masks; Zhang, Zhou, Xu 2022). Products are forward-over-reverse (``torch.func.jvp`` of
``torch.func.grad``) where ``torch.func`` can trace the model, double backward otherwise; both
are exact. The fallback catches only the failures of ``torch.func`` it is meant for (missing
forward-mode or batching rules, in-place operations inside a transform) and keeps that first
error as :attr:`HessianOperator.fallback_error` (and as the cause of any later error).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import Tensor, nn

from dropreg._params import flatten_params, unflatten_params, unflatten_params_batched
from dropreg.curvature.risk import DropoutRisk

if TYPE_CHECKING:
    from scipy.sparse.linalg import LinearOperator

__all__ = ["HessianOperator", "flatten_params", "unflatten_params"]

Method = Literal["auto", "forward-over-reverse", "double-backward"]
_FUNC_FAILURES = ("forward ad", "forward-mode", "forward mode", "jvp", "vmap", "batching rule",
                  "functorch", "torch.func", "transform", "not implemented", "randomness")


def _is_func_failure(exc: BaseException) -> bool:
    """Whether ``exc`` is ``torch.func`` failing to trace the model (not a bug of the model)."""
    if not isinstance(exc, (RuntimeError, NotImplementedError)):
        return False
    msg = str(exc).lower()
    return any(k in msg for k in _FUNC_FAILURES)


class HessianOperator:
    """The Hessian of a :class:`DropoutRisk` as a matrix-free symmetric operator.

    Args:
        risk: the risk; or, for the older call ``HessianOperator(model, loss_fn, data, ...)``,
            the model, with ``loss_fn``, ``data`` and the keyword arguments of
            :class:`DropoutRisk` (``dropout``, ``batch_size``, ``params``, ``is_dropout``, ...).
        method: ``"forward-over-reverse"``, ``"double-backward"`` or ``"auto"``: double backward
            over a cached gradient graph when ``cache_graph``, else forward-over-reverse,
            falling back to double backward if ``torch.func`` cannot trace the model.
        cache_graph: keep the gradient's autograd graph between products (double backward), so
            each product is one backward pass and no forward pass. Default: when the risk is
            one forward pass (on every rank, for a risk over a process group).

    With a risk over a process group (``DropoutRisk(..., process_group=)``) every product is
    collective: call it on every rank with the same vector (checked) and the same ``method``
    and ``cache_graph``; the result is the same tensor on every rank.

    Attributes:
        risk: the risk.
        num_matvecs: Hessian-vector products computed so far.
        fallback_error: the ``torch.func`` error that made ``"auto"`` fall back, or ``None``.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(),
        ...                           torch.nn.Linear(4, 1)).double()
        >>> X = torch.randn(8, 3, generator=g, dtype=torch.float64)
        >>> y = torch.randn(8, 1, generator=g, dtype=torch.float64)
        >>> H = HessianOperator(DropoutRisk(net, torch.nn.functional.mse_loss, (X, y)))
        >>> H.shape, bool(torch.allclose(H.to_dense(), H.to_dense().T))
        ((21, 21), True)
    """

    def __init__(
        self,
        risk: DropoutRisk | nn.Module,
        loss_fn: Callable[[Any, Tensor], Tensor] | None = None,
        data: Any = None,
        *,
        method: Method = "auto",
        cache_graph: bool | None = None,
        **risk_kwargs: Any,
    ) -> None:
        if method not in ("auto", "forward-over-reverse", "double-backward"):
            raise ValueError(f"method must be 'auto', 'forward-over-reverse' or "
                             f"'double-backward', got {method!r}")
        if isinstance(risk, DropoutRisk):
            if loss_fn is not None or data is not None or risk_kwargs:
                raise TypeError("HessianOperator(risk) takes no loss_fn, data or risk "
                                "arguments: they belong to the DropoutRisk")
        elif isinstance(risk, nn.Module):
            if loss_fn is None or data is None:
                raise TypeError("HessianOperator(model, loss_fn, data): loss_fn and data are "
                                "required with a model (or pass a DropoutRisk)")
            risk = DropoutRisk(risk, loss_fn, data, **risk_kwargs)
        else:
            raise TypeError(f"risk must be a DropoutRisk or an nn.Module, got "
                            f"{type(risk).__name__}")
        self.risk = risk
        self.num_matvecs = 0
        self.fallback_error: BaseException | None = None
        one_piece = risk.max_pieces == 1  # the same on every rank of a process group
        self.cache_graph = one_piece if cache_graph is None else bool(cache_graph)
        self._graphs: list | None = None
        self.method: Method = method
        if method == "auto" and self.cache_graph:
            self.method = "double-backward"

    # -- what the risk owns -------------------------------------------------------------------
    @property
    def params(self) -> dict[str, Tensor]:
        """The risk's snapshot of the parameters."""
        return self.risk.params

    @property
    def model(self) -> nn.Module:
        """The risk's model."""
        return self.risk.model

    @property
    def dtype(self) -> torch.dtype:
        """Dtype of the parameters."""
        return self.risk.dtype

    @property
    def device(self) -> torch.device:
        """Device of the parameters."""
        return self.risk.device

    @property
    def num_params(self) -> int:
        """``P``, the number of parameters differentiated."""
        return self.risk.num_params

    @property
    def shape(self) -> tuple[int, int]:
        """``(P, P)``."""
        return (self.num_params, self.num_params)

    def loss(self, vec: Tensor | None = None) -> float:
        """The risk at the parameters (or at flat ``vec``): :meth:`DropoutRisk.loss`.

        Example:
            >>> net = torch.nn.Linear(3, 1, bias=False).double()
            >>> X, y = torch.randn(6, 3).double(), torch.randn(6, 1).double()
            >>> H = HessianOperator(net, torch.nn.functional.mse_loss, (X, y))
            >>> H.loss() == torch.nn.functional.mse_loss(net(X), y).item()
            True
        """
        return self.risk.loss(vec)

    def gradient(self) -> Tensor:
        """The flat gradient of the risk: :meth:`DropoutRisk.gradient`."""
        return self.risk.gradient()

    # -- products -----------------------------------------------------------------------------
    def _hvp_fwd(self, vd: dict[str, Tensor], v: Tensor) -> Tensor:
        def compute() -> tuple[Tensor, float]:
            out = torch.zeros(self.num_params, dtype=self.dtype, device=self.device)
            weight = 0.0
            with self.risk.evaluation() as pieces:
                for w, f in pieces():
                    _, hv = torch.func.jvp(torch.func.grad(f), (self.params,), (vd,))
                    out += w * flatten_params(hv)
                    weight += w
            return out, weight

        return self.risk.reduce(compute, (self.num_params,), v)

    def _gradient_graphs(self):
        """Yield ``(weight, leaves, grads with graph)`` per piece; cached when ``cache_graph``."""
        if self._graphs is not None:
            yield from self._graphs
            return
        built = []
        with self.risk.evaluation() as pieces:
            for w, f in pieces():
                leaves = [p.detach().requires_grad_(True) for p in self.params.values()]
                loss = f(dict(zip(self.params, leaves)))
                gs = torch.autograd.grad(loss, leaves, create_graph=True, allow_unused=True)
                item = (w, leaves, gs)
                if self.cache_graph:
                    built.append(item)
                yield item
        if self.cache_graph:
            self._graphs = built

    def _hvp_dbl(self, vd: dict[str, Tensor], v: Tensor) -> Tensor:
        def compute() -> tuple[Tensor, float]:
            out = torch.zeros(self.num_params, dtype=self.dtype, device=self.device)
            vs = list(vd.values())
            weight = 0.0
            for w, leaves, gs in self._gradient_graphs():
                weight += w
                pairs = [(g, u) for g, u in zip(gs, vs) if g is not None and g.requires_grad]
                if not pairs:
                    continue  # loss is linear in these parameters on this piece
                hv = torch.autograd.grad([g for g, _ in pairs], leaves,
                                         grad_outputs=[u for _, u in pairs],
                                         retain_graph=self.cache_graph, allow_unused=True)
                hv = [torch.zeros_like(p) if t is None else t for t, p in zip(hv, leaves)]
                out += w * torch.cat([t.reshape(-1) for t in hv])
            return out, weight

        return self.risk.reduce(compute, (self.num_params,), v)

    def _fall_back(self, exc: BaseException) -> None:
        if self.method != "auto" or not _is_func_failure(exc):
            raise exc
        self.fallback_error = exc
        self.method = "double-backward"

    def _dbl(self, vd: dict[str, Tensor], v: Tensor) -> Tensor:
        try:
            return self._hvp_dbl(vd, v)
        except Exception as exc:
            if self.fallback_error is not None:
                raise exc from self.fallback_error
            raise

    def _check_vector(self, v: Tensor) -> None:
        if not isinstance(v, Tensor) or v.shape != (self.num_params,):
            shape = tuple(v.shape) if isinstance(v, Tensor) else type(v).__name__
            raise ValueError(f"v must be a tensor of shape ({self.num_params},), got {shape}")
        if not bool(torch.isfinite(v).all()):
            raise ValueError("v has non-finite entries (NaN or inf)")

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
        self._check_vector(v)
        v = v.to(self.dtype).contiguous()  # e.g. a column of V
        vd = unflatten_params(v, self.params)
        self.num_matvecs += 1
        if self.method == "double-backward":
            return self._dbl(vd, v)
        try:
            out = self._hvp_fwd(vd, v)
        except Exception as exc:
            self._fall_back(exc)
            return self._dbl(vd, v)
        self.method = "forward-over-reverse"
        return out

    def _hmm_fwd(self, V: Tensor) -> Tensor:
        """``H @ V`` for ``V`` (P, k) with vmap over the columns (forward-over-reverse)."""
        k = V.shape[1]
        vd = unflatten_params_batched(V.T.to(self.dtype), self.params)

        def compute() -> tuple[Tensor, float]:
            out = torch.zeros(k, self.num_params, dtype=self.dtype, device=self.device)
            weight = 0.0
            with self.risk.evaluation() as pieces:
                for w, f in pieces():
                    g = torch.func.grad(f)

                    def hvp(t: dict[str, Tensor], g=g) -> dict[str, Tensor]:
                        return torch.func.jvp(g, (self.params,), (t,))[1]

                    hv = torch.func.vmap(hvp, randomness="same")(vd)
                    out += w * torch.cat([hv[n].reshape(k, -1) for n in self.params], 1)
                    weight += w
            return out, weight

        return self.risk.reduce(compute, (k, self.num_params), V).T

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
        if not isinstance(V, Tensor) or V.ndim != 2 or V.shape[0] != self.num_params:
            shape = tuple(V.shape) if isinstance(V, Tensor) else type(V).__name__
            raise ValueError(f"V must have shape ({self.num_params}, k), got {shape}")
        if self.method != "double-backward":
            try:
                cols = [self._hmm_fwd(V[:, i:i + chunk_size])
                        for i in range(0, V.shape[1], chunk_size)]
                self.num_matvecs += V.shape[1]
                self.method = "forward-over-reverse"
                return torch.cat(cols, 1)
            except Exception as exc:
                if not _is_func_failure(exc):
                    raise
                if self.method == "auto":
                    self.fallback_error = exc
                    self.method = "double-backward"
                # forward-over-reverse products may still work one at a time (no vmap)
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
            >>> X = torch.eye(3, dtype=torch.float64)
            >>> net = torch.nn.Linear(3, 1, bias=False).double()
            >>> H = HessianOperator(net, torch.nn.functional.mse_loss,
            ...                     (X, torch.zeros(3, 1, dtype=torch.float64)))
            >>> A = H.to_scipy()
            >>> A.shape, bool(np.allclose(A @ np.ones(3), 2 / 3 * np.ones(3)))
            ((3, 3), True)
        """
        import numpy as np
        from scipy.sparse.linalg import LinearOperator

        def mv(x):
            t = torch.as_tensor(np.asarray(x).reshape(-1), dtype=self.dtype, device=self.device)
            return self.matvec(t).detach().cpu().double().numpy()

        return LinearOperator(self.shape, matvec=mv, rmatvec=mv, dtype=np.float64)

