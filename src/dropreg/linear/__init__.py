"""Single-hidden-layer and deep linear networks under dropout-type masks.

Exact expected objectives of any mask law, the spectral k-support norm, closed-form global
minimizers with equal-norm factors and a certificate, the deep-linear regularizer, last-layer
predictions and a scikit-learn style estimator (Pal et al. 2020 and the
prior results it builds on; ``docs/papers/pal2020.md``). Where each formula lives (section titles
of that page):

- ``objective.py``: plain, sampled and expected losses, induced regularizers ("Expected objective
  of Dropout" to "DropConnect equals Dropout");
- ``ksupport.py``: the (spectral) k-support norm, its dual and the prox of its square ("The
  k-support norm");
- ``closed_form.py``: closed-form Dropout / DropBlock minimizers and their certificate ("Induced
  regularizer", "Closed-form minimizer"; Mianjy, Arora & Vidal 2018), ``M = Y^T X / N``;
- ``deep.py``: the deep-linear regularizer, its envelope and the rank-one optimum (Mianjy & Arora
  2019, ``docs/papers/mianjy2019.md``);
- ``last_layer.py``: the spectrum of last-layer predictions ("Last layer of a deep network");
- ``training.py``: masked SGD on the expected objective ("Expected objective of Dropout");
- ``estimators.py``: :class:`DropBlockRegressor` over the closed form;
- the input whitening ("Setup") is :func:`dropreg.data.whiten`, re-exported here.
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
