"""Exact dropout criterion of small ReLU networks (Helmbold & Long 2017).

Digest ``zhang2022_flatness_helmbold2017.md`` Part B. Dropout drops every input and hidden unit
with probability ``p`` (inverted scaling); :func:`dropout_criterion` computes ``E_R E_x (D - y)^2``
exactly by enumerating all patterns (vectorised, memory-bounded) or by Monte Carlo with a standard
error. The constructions of the paper and its rescalings live beside it.

Example:
    >>> import torch
    >>> from dropreg.relu import figure1_example, dropout_criterion, risk
    >>> net, X, Y = figure1_example()
    >>> float(dropout_criterion(net, X, Y, p=0.5)), risk(net, X, Y).item()
    (54.0, 64.0)
"""

from dropreg.relu.constructions import (
    Example,
    FitResult,
    best_output_scale,
    figure1_example,
    fit_dropout_criterion,
    lemma10_criterion,
    monotone_target,
    theorem17_w_neg,
    theorem18_penalty,
    theorem18_weight_decay,
    theorem18_weight_decay_bound,
    theorem18_witness,
    theorem20_witness,
    two_unit_penalty,
    w_neg,
)
from dropreg.relu.criterion import (
    DEFAULT_MAX_NODES,
    CriterionResult,
    all_patterns,
    dropout_criterion,
    dropout_output,
    dropout_penalty,
    enumerated_nodes,
    expected_dropout_output,
    risk,
    weight_decay_criterion,
)
from dropreg.relu.network import (
    StandardNet,
    dropout_layer_widths,
    linear_layers,
    num_dropout_nodes,
    relu_net,
)
from dropreg.relu.rescaling import rescale_inputs, rescale_layers, rescale_output

__all__ = [
    "StandardNet",
    "relu_net",
    "linear_layers",
    "dropout_layer_widths",
    "num_dropout_nodes",
    "CriterionResult",
    "DEFAULT_MAX_NODES",
    "dropout_criterion",
    "dropout_penalty",
    "risk",
    "weight_decay_criterion",
    "expected_dropout_output",
    "dropout_output",
    "all_patterns",
    "enumerated_nodes",
    "rescale_inputs",
    "rescale_layers",
    "rescale_output",
    "Example",
    "figure1_example",
    "two_unit_penalty",
    "theorem18_witness",
    "theorem18_penalty",
    "theorem18_weight_decay",
    "theorem18_weight_decay_bound",
    "monotone_target",
    "w_neg",
    "lemma10_criterion",
    "theorem17_w_neg",
    "theorem20_witness",
    "FitResult",
    "fit_dropout_criterion",
    "best_output_scale",
]
