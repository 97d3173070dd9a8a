"""scikit-learn style estimator over the closed-form DropBlock / Dropout minimizer.

Example:
    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> X = torch.randn(200, 6, generator=g, dtype=torch.float64)
    >>> Y = X @ torch.randn(6, 3, generator=g, dtype=torch.float64)
    >>> est = DropBlockRegressor(width=6, p=0.2, block_size=2).fit(X, Y)
    >>> est.certificate_.attained, est.U_.shape, round(est.score(X, Y), 2) > 0.9
    (True, torch.Size([3, 6]), True)
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from dropreg.linear.closed_form import LinearSolution, solve_dropblock, whiten

__all__ = ["DropBlockRegressor"]


def _as_tensor(a: Any, name: str) -> Tensor:
    if isinstance(a, Tensor):
        t = a.detach()
    else:
        try:
            t = torch.as_tensor(np.asarray(a, dtype=np.float64))
        except (TypeError, ValueError) as exc:
            raise TypeError(f"{name} must be array-like of numbers, got {type(a).__name__}"
                            ) from exc
    return t.to(torch.float64)


class DropBlockRegressor:
    """Linear regression by a one-hidden-layer linear net trained with DropBlock, solved exactly.

    ``fit`` whitens ``X`` (``whiten=True``), forms ``M = Y^T X_w / N`` and calls
    :func:`~dropreg.linear.solve_dropblock`: the net ``x -> U V^T T (x - mean)`` is the global
    minimizer of the expected DropBlock loss on the training data (``T`` the whitening
    transform; ``docs/papers/pal2020.md``, "Setup" and "Closed-form minimizer"). ``block_size = 1``
    is Dropout (and DropConnect at the same ``p``, "DropConnect equals Dropout").

    Args:
        width: hidden width ``r``.
        p: drop probability (keep probability ``1 - p``).
        block_size: contiguous block size ``k`` (divides ``width``); 1 is Dropout.
        whiten: whiten the inputs first; with ``False`` the inputs must already satisfy
            ``X^T X / N = I`` (after centering) or ``fit`` raises ``ValueError``.
        fit_intercept: center ``X`` and ``Y`` and fit an intercept.
        starts: L-BFGS starts of the fallback when the closed form is not attainable.

    Attributes:
        U_, V_: fitted factors in whitened coordinates (``(D, r)``, ``(d, r)``).
        coef_: ``(D, d)`` map on raw inputs, ``predict(X) = X @ coef_.T + intercept_``.
        intercept_: ``(D,)``.
        singular_values_: singular values of the whitened-space map.
        certificate_: global-optimality certificate.
        solution_: the full :class:`~dropreg.linear.LinearSolution`.

    Example:
        At ``p = 0`` it is least squares; dropout shrinks the map towards zero:

        >>> g = torch.Generator().manual_seed(0)
        >>> X = torch.randn(50, 3, generator=g, dtype=torch.float64)
        >>> y = X @ torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64) + 3.0
        >>> ols = DropBlockRegressor(width=4, p=0.0).fit(X, y)
        >>> bool(torch.allclose(ols.coef_, torch.tensor([[1.0, -2.0, 0.5]], dtype=torch.float64)))
        True
        >>> drop = DropBlockRegressor(width=4, p=0.5, block_size=2).fit(X, y)
        >>> drop.certificate_.attained, bool(drop.coef_.norm() < ols.coef_.norm())
        (True, True)
    """

    def __init__(self, width: int, p: float, block_size: int = 1, *, whiten: bool = True,
                 fit_intercept: bool = True, starts: int = 5) -> None:
        self.width = width
        self.p = p
        self.block_size = block_size
        self.whiten = whiten
        self.fit_intercept = fit_intercept
        self.starts = starts

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Constructor arguments, as scikit-learn's ``get_params`` (``deep`` is ignored).

        Example:
            >>> DropBlockRegressor(4, 0.1).get_params()["p"]
            0.1
        """
        return {"width": self.width, "p": self.p, "block_size": self.block_size,
                "whiten": self.whiten, "fit_intercept": self.fit_intercept,
                "starts": self.starts}

    def set_params(self, **params: Any) -> DropBlockRegressor:
        """Set constructor arguments by name; unknown names raise ``ValueError``.

        Example:
            >>> DropBlockRegressor(4, 0.1).set_params(p=0.3, block_size=2)
            DropBlockRegressor(width=4, p=0.3, block_size=2)
        """
        for key, value in params.items():
            if key not in self.get_params():
                raise ValueError(f"unknown parameter {key!r}; valid: {sorted(self.get_params())}")
            setattr(self, key, value)
        return self

    def fit(self, X: Any, y: Any) -> DropBlockRegressor:
        """Fit on ``X`` ``(N, d)`` and ``y`` ``(N,)`` or ``(N, D)``.

        Example:
            >>> g = torch.Generator().manual_seed(0)
            >>> X = torch.randn(50, 3, generator=g, dtype=torch.float64)
            >>> y = X @ torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64) + 3.0
            >>> est = DropBlockRegressor(width=4, p=0.0).fit(X, y)
            >>> est.coef_.shape, round(float(est.intercept_), 10)
            (torch.Size([1, 3]), 3.0)
        """
        X = _as_tensor(X, "X")
        Y = _as_tensor(y, "y")
        if X.dim() != 2:
            raise ValueError(f"X must be 2-D (N, d), got shape {tuple(X.shape)}")
        self._y_1d = Y.dim() == 1
        if self._y_1d:
            Y = Y[:, None]
        if Y.dim() != 2 or Y.shape[0] != X.shape[0]:
            raise ValueError(f"y must have N = {X.shape[0]} rows, got shape {tuple(Y.shape)}")
        N, d = X.shape
        x_mean = X.mean(0) if self.fit_intercept else torch.zeros(d, dtype=torch.float64)
        y_mean = Y.mean(0) if self.fit_intercept else torch.zeros(Y.shape[1],
                                                                   dtype=torch.float64)
        Xc, Yc = X - x_mean, Y - y_mean
        if self.whiten:
            T = whiten(Xc).transform
        else:
            dev = float((Xc.T @ Xc / N - torch.eye(d, dtype=torch.float64)).abs().max())
            if dev > 1e-8:
                raise ValueError(f"whiten=False but X is not whitened (max |X^T X / N - I| = "
                                 f"{dev:.2e} > 1e-8); use whiten=True")
            T = torch.eye(d, dtype=torch.float64)
        M = Yc.T @ (Xc @ T) / N
        sol: LinearSolution = solve_dropblock(M, self.width, self.p, self.block_size,
                                              starts=self.starts)
        self.solution_ = sol
        self.U_, self.V_ = sol.U, sol.V
        self.singular_values_ = sol.singular_values
        self.certificate_ = sol.certificate
        self.whitening_ = T
        self.coef_ = sol.map @ T
        self.intercept_ = y_mean - x_mean @ self.coef_.T
        self.n_features_in_ = d
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "coef_"):
            raise RuntimeError("this DropBlockRegressor is not fitted yet; call fit(X, y) first")

    def predict(self, X: Any) -> Tensor:
        """Predictions ``X @ coef_.T + intercept_`` (``(N,)`` if fitted on 1-D ``y``).

        Example:
            >>> g = torch.Generator().manual_seed(0)
            >>> X = torch.randn(50, 3, generator=g, dtype=torch.float64)
            >>> y = X @ torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64) + 3.0
            >>> est = DropBlockRegressor(width=4, p=0.0).fit(X, y)
            >>> pred = est.predict(X)
            >>> pred.shape, bool(torch.allclose(pred, y))
            (torch.Size([50]), True)
        """
        self._check_fitted()
        X = _as_tensor(X, "X")
        if X.dim() != 2 or X.shape[1] != self.n_features_in_:
            raise ValueError(f"X must be (N, {self.n_features_in_}), got {tuple(X.shape)}")
        out = X @ self.coef_.T + self.intercept_
        return out[:, 0] if self._y_1d else out

    def score(self, X: Any, y: Any) -> float:
        """Coefficient of determination R^2 (uniform average over outputs, as scikit-learn).

        Example:
            >>> g = torch.Generator().manual_seed(0)
            >>> X = torch.randn(50, 3, generator=g, dtype=torch.float64)
            >>> y = X @ torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64) + 3.0
            >>> round(DropBlockRegressor(width=4, p=0.0).fit(X, y).score(X, y), 10)
            1.0
        """
        Y = _as_tensor(y, "y")
        P = self.predict(X)
        if Y.dim() == 1:
            Y, P = Y[:, None], P[:, None]
        ss_res = ((Y - P) ** 2).sum(0)
        ss_tot = ((Y - Y.mean(0)) ** 2).sum(0)
        r2 = torch.where(ss_tot > 0, 1 - ss_res / torch.where(ss_tot > 0, ss_tot,
                         torch.ones_like(ss_tot)), torch.zeros_like(ss_tot))
        return float(r2.mean())

    def __repr__(self) -> str:
        return (f"DropBlockRegressor(width={self.width}, p={self.p}, "
                f"block_size={self.block_size})")
