"""scikit-learn style estimator over the closed-form DropBlock / Dropout minimizer.

Example:
    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> X = torch.randn(200, 6, generator=g, dtype=torch.float64)
    >>> Y = X @ torch.randn(6, 3, generator=g, dtype=torch.float64)
    >>> est = DropBlockRegressor(width=6, p=0.2, block_size=2).fit(X, Y)
    >>> est.certificate_.attained, est.U_.shape, round(est.score(X, Y), 2) > 0.9
    (True, torch.Size([3, 6]), True)
    >>> DropoutRegressor(width=6, p=0.2).block_size  # block_size = 1 is Dropout
    1
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted, validate_data
from torch import Tensor

from dropreg.linear.closed_form import LinearSolution, cross_covariance, solve_dropblock, whiten

__all__ = ["DropBlockRegressor", "DropoutRegressor"]


def _to_numpy(a: Any) -> Any:
    """Tensors become float64 numpy arrays; everything else goes to scikit-learn's validation."""
    if isinstance(a, Tensor):
        return a.detach().cpu().to(torch.float64).numpy()
    return a


class DropBlockRegressor(RegressorMixin, BaseEstimator):
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
        >>> bool(np.allclose(ols.coef_, [[1.0, -2.0, 0.5]]))
        True
        >>> drop = DropBlockRegressor(width=4, p=0.5, block_size=2).fit(X, y)
        >>> drop.certificate_.attained, bool(np.linalg.norm(drop.coef_) < np.linalg.norm(ols.coef_))
        (True, True)
    """

    def __init__(self, width: int = 4, p: float = 0.5, block_size: int = 1, *,
                 whiten: bool = True, fit_intercept: bool = True, starts: int = 5) -> None:
        self.width = width
        self.p = p
        self.block_size = block_size
        self.whiten = whiten
        self.fit_intercept = fit_intercept
        self.starts = starts

    def __sklearn_tags__(self) -> Any:
        """scikit-learn tags: multi-output regression (``y`` may be ``(N, D)``); no check is
        skipped."""
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    def fit(self, X: Any, y: Any) -> DropBlockRegressor:
        """Fit on ``X`` ``(N, d)`` and ``y`` ``(N,)`` or ``(N, D)`` (numpy arrays, tensors or any
        array-like; validated by scikit-learn).

        Example:
            >>> g = torch.Generator().manual_seed(0)
            >>> X = torch.randn(50, 3, generator=g, dtype=torch.float64)
            >>> y = X @ torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64) + 3.0
            >>> est = DropBlockRegressor(width=4, p=0.0).fit(X, y)
            >>> est.coef_.shape, round(float(est.intercept_[0]), 10)
            ((1, 3), 3.0)
        """
        X, y = validate_data(self, _to_numpy(X), _to_numpy(y), multi_output=True,
                             y_numeric=True, dtype=np.float64)
        if X.shape[0] < 2:
            raise ValueError(f"DropBlockRegressor needs n_samples >= 2 to whiten X, got "
                             f"n_samples={X.shape[0]}")
        Xt, Y = torch.tensor(X), torch.tensor(np.asarray(y, dtype=np.float64))
        self._y_1d = Y.dim() == 1
        if self._y_1d:
            Y = Y[:, None]
        N, d = Xt.shape
        x_mean = Xt.mean(0) if self.fit_intercept else torch.zeros(d, dtype=torch.float64)
        y_mean = Y.mean(0) if self.fit_intercept else torch.zeros(Y.shape[1],
                                                                   dtype=torch.float64)
        Xc, Yc = Xt - x_mean, Y - y_mean
        if self.whiten:
            T = whiten(Xc).transform
            M = Yc.T @ (Xc @ T) / N
        else:  # the whitening check of cross_covariance (ValueError "X is not whitened")
            T = torch.eye(d, dtype=torch.float64)
            M = cross_covariance(Xc, Yc)
        sol: LinearSolution = solve_dropblock(M, self.width, self.p, self.block_size,
                                              starts=self.starts)
        self.solution_ = sol
        self.U_, self.V_ = sol.U, sol.V
        self.singular_values_ = sol.singular_values
        self.certificate_ = sol.certificate
        self.whitening_ = T
        coef = sol.map @ T
        self.coef_ = coef.numpy()
        self.intercept_ = (y_mean - x_mean @ coef.T).numpy()
        return self

    def predict(self, X: Any) -> np.ndarray:
        """Predictions ``X @ coef_.T + intercept_``, a numpy array (``(N,)`` if fitted on 1-D
        ``y``); ``NotFittedError`` before ``fit``.

        Example:
            >>> g = torch.Generator().manual_seed(0)
            >>> X = torch.randn(50, 3, generator=g, dtype=torch.float64)
            >>> y = X @ torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64) + 3.0
            >>> est = DropBlockRegressor(width=4, p=0.0).fit(X, y)
            >>> pred = est.predict(X)
            >>> pred.shape, bool(np.allclose(pred, y.numpy()))
            ((50,), True)
        """
        check_is_fitted(self)
        X = validate_data(self, _to_numpy(X), reset=False, dtype=np.float64)
        out = X @ self.coef_.T + self.intercept_
        return out[:, 0] if self._y_1d else out


class DropoutRegressor(DropBlockRegressor):
    """:class:`DropBlockRegressor` with ``block_size = 1``: the net trained with Dropout (and
    DropConnect at the same ``p``; Pal et al. 2020, Section 2).

    Example:
        >>> DropoutRegressor(width=3, p=0.1)
        DropoutRegressor(p=0.1, width=3)
    """

    def __init__(self, width: int = 4, p: float = 0.5, *, whiten: bool = True,
                 fit_intercept: bool = True, starts: int = 5) -> None:
        super().__init__(width, p, 1, whiten=whiten, fit_intercept=fit_intercept, starts=starts)
