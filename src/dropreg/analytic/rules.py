"""The update rules of Wei, Kakade, Ma 2020 (Algorithms 1, 2 and 4; ``docs/papers/wei2020.md``).

Each function builds the :class:`~dropreg.analytic.updates.UpdateRule` of one rule of the paper,
for :func:`~dropreg.analytic.train` and :func:`~dropreg.analytic.accumulate_gradient`:

===============================  =========================================================
``no_dropout()``                 plain clean-loss gradient
``dropout(k)``                   Dropout_k: mean of k dropout gradients (Algorithm 1)
``dropout_with_noise(k, n)``     Dropout_k + sqrt(1 - 1/k) * xi~_drop or xi_approx (Sec. 3.1)
``explicit()``                   clean loss + R_approx (sampled-label estimator), no dropout
``explicit_implicit()``          clean loss + R_approx + xi_approx (Algorithm 2)
``ablation(kind, implicit)``     R_approx with H_out -> I/C ("identity") or the loss-Jacobian
                                 outer product ("loss_jacobian") (Sec. 5.2), optionally + xi_approx
===============================  =========================================================

Use them through the namespace (``rules.dropout(2)``, ``rules.explicit()``): the names are those
of the paper, and ``dropout`` or ``explicit`` alone would read as the layer function
:func:`dropreg.nn.functional.dropout` or the module :mod:`dropreg.analytic.explicit`.

Example:
    >>> from dropreg.analytic import rules
    >>> [r.name for r in (rules.dropout(2), rules.explicit(), rules.explicit_implicit())]
    ['Dropout_2', 'R_approx', 'R_approx + xi_approx']
"""

from __future__ import annotations

from dropreg.analytic.explicit import Coefficient
from dropreg.analytic.implicit import Variance
from dropreg.analytic.updates import UpdateRule

__all__ = ["ablation", "dropout", "dropout_with_noise", "explicit", "explicit_implicit",
           "no_dropout"]


def no_dropout() -> UpdateRule:
    """The clean-loss gradient (every site passes through).

    Example:
        >>> no_dropout()
        UpdateRule(name='none', k=0, top_up='none', explicit='none', implicit=False, \
coefficient=None, variance=None, n_label_samples=1)
    """
    return UpdateRule("none", k=0)


def dropout(k: int = 1) -> UpdateRule:
    """Dropout_k (Algorithm 1): the mean of ``k`` dropout gradients on the same minibatch.

    Example:
        >>> rule = dropout(4)
        >>> rule.name, rule.k
        ('Dropout_4', 4)
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    return UpdateRule(f"Dropout_{k}", k=k)


def dropout_with_noise(k: int, noise: str = "xi_tilde", variance: Variance = None) -> UpdateRule:
    """Dropout_k + ``sqrt(1 - 1/k)`` times ``xi~_drop`` (Section 3.1) or ``xi_approx`` (Algorithm
    4).

    Example:
        >>> rule = dropout_with_noise(8, "xi_approx")
        >>> rule.name, rule.k, rule.top_up
        ('Dropout_8 + xi_approx', 8, 'xi_approx')
    """
    if noise not in ("xi_tilde", "xi_approx"):
        raise ValueError(f"noise must be 'xi_tilde' or 'xi_approx', got {noise!r}")
    return UpdateRule(f"Dropout_{k} + {noise}", k=k, top_up=noise, variance=variance)


def explicit(coefficient: Coefficient = None) -> UpdateRule:
    """Clean loss + R_approx by the sampled-label estimator (no dropout, no noise).

    Example:
        >>> rule = explicit(coefficient=0.25)
        >>> rule.k, rule.explicit, rule.implicit, rule.coefficient
        (0, 'hessian', False, 0.25)
    """
    return UpdateRule("R_approx", k=0, explicit="hessian", coefficient=coefficient)


def explicit_implicit(coefficient: Coefficient = None, variance: Variance = None) -> UpdateRule:
    """Algorithm 2: clean loss + R_approx + xi_approx, no dropout at all.

    Example:
        >>> rule = explicit_implicit()
        >>> rule.name, rule.k, rule.explicit, rule.implicit
        ('R_approx + xi_approx', 0, 'hessian', True)
    """
    return UpdateRule("R_approx + xi_approx", k=0, explicit="hessian", implicit=True,
                      coefficient=coefficient, variance=variance)


def ablation(kind: str, implicit: bool = True, coefficient: Coefficient = None) -> UpdateRule:
    """R_approx with ``H_out`` replaced by ``I/C`` (``"identity"``) or by the loss-Jacobian outer
    product (``"loss_jacobian"``, eq. 5.1), optionally + xi_approx (Section 5.2).

    Example:
        >>> ablation("identity").name, ablation("loss_jacobian", implicit=False).name
        ('R_id + xi_approx', 'R~_approx')
    """
    if kind not in ("identity", "loss_jacobian"):
        raise ValueError(f"kind must be 'identity' or 'loss_jacobian', got {kind!r}")
    label = {"identity": "R_id", "loss_jacobian": "R~_approx"}[kind]
    return UpdateRule(label + (" + xi_approx" if implicit else ""), k=0, explicit=kind,
                      implicit=implicit, coefficient=coefficient)
