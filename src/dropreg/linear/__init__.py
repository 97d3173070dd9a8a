"""Single-hidden-layer and deep linear networks under dropout-type masks.

Exact expected objectives of any mask law, the spectral k-support norm, closed-form global
minimizers with equal-norm factors and a certificate, the deep-linear regularizer, last-layer
predictions and a scikit-learn style estimator (digest ``pal2020_structured_dropout.md``).
Where each formula of the digest lives:

- ``objective.py``: plain, sampled and expected losses, induced regularizers (§1.1-§2.4);
- ``ksupport.py``: the (spectral) k-support norm, its dual and the prox of its square (§5);
- ``closed_form.py``: closed-form Dropout / DropBlock minimizers and their certificate (§2.5,
  §2.6, §4.2), ``M = Y^T X / N``;
- ``deep.py``: the deep-linear regularizer, its envelope and the rank-one optimum (§4.3);
- ``last_layer.py``: the spectrum of last-layer predictions (§2.7);
- ``training.py``: masked SGD on the expected objective (§2.1, the RQ2 protocol of §3);
- ``estimators.py``: :class:`DropBlockRegressor` over the closed form;
- the input whitening (§1.1) is :func:`dropreg.data.whiten`, re-exported here.
"""

from dropreg.linear import closed_form, deep, estimators, ksupport, last_layer, objective, training
from dropreg.linear.closed_form import *  # noqa: F403
from dropreg.linear.deep import *  # noqa: F403
from dropreg.linear.estimators import *  # noqa: F403
from dropreg.linear.ksupport import *  # noqa: F403
from dropreg.linear.last_layer import *  # noqa: F403
from dropreg.linear.objective import *  # noqa: F403
from dropreg.linear.training import *  # noqa: F403

#: the public names, each defined (with its docstring and source) in one submodule
__all__ = [
    *objective.__all__, *ksupport.__all__, *closed_form.__all__, *deep.__all__,
    *last_layer.__all__, *training.__all__, *estimators.__all__,
]
