"""DropBlockRegressor under scikit-learn's contract: check_estimator, numpy in and out, tensors
accepted, NotFittedError, the whitening check of cross_covariance, DropoutRegressor."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.utils.estimator_checks import check_estimator

from dropreg.linear import DropBlockRegressor, cross_covariance
from dropreg.linear.estimators import DropoutRegressor


def test_check_estimator_passes() -> None:
    results = check_estimator(DropBlockRegressor(), on_fail=None)
    failed = [(r["check_name"], str(r["exception"])[:200]) for r in results
              if r["status"] == "failed"]
    assert not failed
    # skipped only where this environment lacks what the check needs (pandas, array API)
    skipped = [str(r["exception"]) for r in results if r["status"] == "skipped"]
    assert all("pandas" in m or "array_api" in m or "SCIPY_ARRAY_API" in m for m in skipped)


def test_numpy_in_numpy_out_and_tensors_accepted() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 4))
    y = X @ np.array([1.0, -1.0, 0.5, 2.0]) + 0.3
    a = DropBlockRegressor(width=4, p=0.3).fit(X, y)
    b = DropBlockRegressor(width=4, p=0.3).fit(torch.from_numpy(X), torch.from_numpy(y))
    assert isinstance(a.predict(X), np.ndarray) and a.predict(X).shape == (60,)
    np.testing.assert_allclose(a.predict(X), b.predict(torch.from_numpy(X)), rtol=1e-12)
    assert a.n_features_in_ == 4 and "whiten=" not in repr(a)  # defaults omitted by sklearn
    assert "fit_intercept=False" in repr(DropBlockRegressor(fit_intercept=False))
    assert clone(a).get_params() == a.get_params()


def test_not_fitted_and_whitening_check_is_cross_covariances() -> None:
    X = np.random.default_rng(1).normal(size=(30, 3)) * 3.0
    with pytest.raises(NotFittedError):
        DropBlockRegressor().predict(X)
    with pytest.raises(ValueError) as est_err:
        DropBlockRegressor(width=3, p=0.1, whiten=False).fit(X, X[:, 0])
    Xc = torch.from_numpy(X - X.mean(0))
    with pytest.raises(ValueError) as cc_err:
        cross_covariance(Xc, Xc[:, :1])
    assert str(est_err.value) == str(cc_err.value)


def test_dropout_regressor_is_block_size_one() -> None:
    rng = np.random.default_rng(2)
    X = rng.normal(size=(80, 5))
    Y = X @ rng.normal(size=(5, 2))
    a = DropoutRegressor(width=5, p=0.4).fit(X, Y)
    b = DropBlockRegressor(width=5, p=0.4, block_size=1).fit(X, Y)
    np.testing.assert_allclose(a.predict(X), b.predict(X), rtol=1e-12, atol=1e-12)
    assert a.predict(X).shape == (80, 2)
