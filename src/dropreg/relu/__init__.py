"""Exact dropout criterion of small ReLU networks (Helmbold & Long 2017).

``docs/papers/helmbold2017.md``. Dropout drops every input and hidden unit
with probability ``p`` (inverted scaling); :func:`dropout_criterion` computes ``E_R E_x (D - y)^2``
exactly by enumerating all patterns (vectorised, memory-bounded) or by Monte Carlo with a standard
error. Where each result of the paper lives:

- ``network.py``: the standard architecture;
- ``criterion.py``: ``J_D`` (eq. 1), the risk, the penalty and ``J_2``, the closed-form fold of
  the last hidden layer;
- ``rescaling.py``: the input, layer and output rescalings (Theorems 4-6, Section 3);
- ``constructions.py``: Fig. 1, ``W_neg`` and Lemma 10 / Theorem 17 (Section 4), Theorem 18's
  witness (Section 5.1), Theorem 20's witness (Sections 5.2-5.3), the projected fit of non-negative
  nets behind Theorem 17's lower bound.

Example:
    >>> import torch
    >>> from dropreg.relu import figure1_example, dropout_criterion, risk
    >>> net, X, Y = figure1_example()
    >>> float(dropout_criterion(net, X, Y, p=0.5)), risk(net, X, Y).item()
    (54.0, 64.0)
"""

from dropreg.relu import constructions, criterion, network, rescaling
from dropreg.relu.constructions import *  # noqa: F403
from dropreg.relu.criterion import *  # noqa: F403
from dropreg.relu.network import *  # noqa: F403
from dropreg.relu.rescaling import *  # noqa: F403

#: the public names, each defined (with its docstring and source) in one submodule
__all__ = [*network.__all__, *criterion.__all__, *rescaling.__all__, *constructions.__all__]
