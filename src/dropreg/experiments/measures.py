"""Measurement kinds for verdicts that rest on random numbers.

Each function turns raw numbers (per-seed values, paired differences, a scatter) into one
:class:`~dropreg.experiments.claims.Measurement` that carries its uncertainty, so that the verdict
rule of :mod:`dropreg.experiments.claims` can decide it, or call it undecided:

- :func:`mean_of` -- a mean over independent samples with its standard error, judged against a
  bound;
- :func:`sign_of_difference` -- the sign of a mean (paired) difference, decided only at
  ``DECISION_Z`` standard errors from zero;
- :func:`correlation` -- a Pearson or Spearman correlation with its Fisher-z confidence interval;
- :func:`slope` -- a least-squares slope with its t confidence interval.

Example:
    >>> m = sign_of_difference("loss(none) - loss(dropout)", [0.21, 0.19, 0.20, 0.22],
    ...                        predicted="positive")
    >>> m.status, m.n
    ('pass', 4)
    >>> sign_of_difference("d", [0.1, -0.2, 0.15], predicted="positive").status
    'undecided'
    >>> c = correlation("rho", [1, 2, 3, 4, 5, 6], [1.2, 1.9, 3.5, 3.9, 5.2, 6.1],
    ...                 predicted="positive")
    >>> c.status, c.interval[0] > 0
    ('pass', True)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
from scipy import stats

from dropreg.experiments.claims import Measurement

__all__ = ["mean_of", "sign_of_difference", "correlation", "slope"]

Sign = Literal["positive", "negative"]
#: Confidence level of the intervals of :func:`correlation` and :func:`slope` (our choice: the
#: two-sided 95% interval, whose one-sided error matches ``DECISION_Z = 2`` closely).
LEVEL: float = 0.95


def _values(name: str, values: Sequence[float], minimum: int) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    if v.size < minimum:
        raise ValueError(f"{name} needs at least {minimum} values, got {v.size}")
    if not np.all(np.isfinite(v)):
        raise ValueError(f"{name}: values must be finite, got {v.tolist()}")
    return v


def _kind(predicted: Sign) -> str:
    if predicted not in ("positive", "negative"):
        raise ValueError(f"predicted must be 'positive' or 'negative', got {predicted!r}")
    return "at_least" if predicted == "positive" else "at_most"


def mean_of(name: str, values: Sequence[float], *, expected: float,
            kind: Literal["at_least", "at_most"], tolerance: float = 0.0, unit: str = "",
            ours: bool = False) -> Measurement:
    """The mean of independent ``values`` with its standard error, judged against a bound.

    Example:
        >>> mean_of("ratio", [0.3, 0.4, 0.35], expected=1.0, kind="at_most").status
        'pass'
    """
    v = _values(name, values, 2)
    se = float(v.std(ddof=1) / math.sqrt(v.size))
    return Measurement(name, float(v.mean()), expected=expected, tolerance=tolerance, kind=kind,
                       stderr=se, n=int(v.size), unit=unit, ours=ours)


def sign_of_difference(name: str, differences: Sequence[float], *, predicted: Sign,
                       unit: str = "") -> Measurement:
    """The mean of (paired) ``differences``, predicted to be ``"positive"`` or ``"negative"``.

    Decided only when the mean is at least ``DECISION_Z`` standard errors from zero (its sign
    decides, both ways); closer to zero it is undecided, and
    :meth:`~dropreg.experiments.claims.Measurement.samples_to_resolve` says about how many
    samples would decide it.
    """
    v = _values(name, differences, 2)
    se = float(v.std(ddof=1) / math.sqrt(v.size))
    return Measurement(name, float(v.mean()), expected=0.0, kind=_kind(predicted), stderr=se,
                       n=int(v.size), unit=unit)


def correlation(name: str, x: Sequence[float], y: Sequence[float], *, predicted: Sign,
                method: Literal["pearson", "spearman"] = "spearman",
                level: float = LEVEL) -> Measurement:
    """A correlation of ``x`` and ``y`` with its Fisher-z interval, predicted of one sign.

    The interval is ``tanh(atanh(r) +- z / sqrt(n - 3))`` (Spearman: the Bonett-Wright variance
    ``(1 + r^2 / 2) / (n - 3)``).
    """
    xv, yv = _values(name, x, 4), _values(name, y, 4)
    if xv.size != yv.size:
        raise ValueError(f"{name}: x and y must have the same length, got {xv.size} and "
                         f"{yv.size}")
    if method == "pearson":
        r = float(stats.pearsonr(xv, yv)[0])
        var = 1.0 / (xv.size - 3)
    elif method == "spearman":
        r = float(stats.spearmanr(xv, yv)[0])
        var = (1.0 + r * r / 2.0) / (xv.size - 3)
    else:
        raise ValueError(f"method must be 'pearson' or 'spearman', got {method!r}")
    z = float(stats.norm.ppf(0.5 + level / 2))
    zr = math.atanh(max(min(r, 1 - 1e-15), -1 + 1e-15))
    lo, hi = math.tanh(zr - z * math.sqrt(var)), math.tanh(zr + z * math.sqrt(var))
    return Measurement(name, r, expected=0.0, kind=_kind(predicted), interval=(lo, hi),
                       n=int(xv.size))


def slope(name: str, x: Sequence[float], y: Sequence[float], *, predicted: Sign,
          level: float = LEVEL, unit: str = "") -> Measurement:
    """The least-squares slope of ``y`` on ``x`` with its t interval, predicted of one sign.

    Example:
        >>> m = slope("s", [0, 1, 2, 3, 4], [0.1, 1.0, 2.1, 2.9, 4.2], predicted="positive")
        >>> round(m.value, 2), m.status
        (1.01, 'pass')
    """
    xv, yv = _values(name, x, 3), _values(name, y, 3)
    if xv.size != yv.size:
        raise ValueError(f"{name}: x and y must have the same length, got {xv.size} and "
                         f"{yv.size}")
    fit = stats.linregress(xv, yv)
    t = float(stats.t.ppf(0.5 + level / 2, xv.size - 2))
    half = t * float(fit.stderr)
    return Measurement(name, float(fit.slope), expected=0.0, kind=_kind(predicted),
                       interval=(float(fit.slope) - half, float(fit.slope) + half),
                       stderr=float(fit.stderr), n=int(xv.size), unit=unit)
