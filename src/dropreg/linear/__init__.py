"""Single-hidden-layer and deep linear networks under dropout-type masks.

Exact expected objectives of any mask law, the spectral k-support norm, closed-form global
minimizers with equal-norm factors and a certificate, the deep-linear regularizer, last-layer
predictions and a scikit-learn style estimator (digest ``pal2020_structured_dropout.md``).
"""

from dropreg.linear.closed_form import (
    Certificate,
    LinearSolution,
    Whitening,
    block_norm_spread,
    block_norms,
    cross_covariance,
    dropblock_singular_values,
    dropout_singular_values,
    numerical_rank,
    solve_dropblock,
    solve_dropout,
    whiten,
)
from dropreg.linear.deep import (
    RankOneOptimum,
    deep_linear_expected_loss,
    deep_linear_regularizer,
    envelope_constant,
    flat_rank_one_network,
    rank_one_optimum,
)
from dropreg.linear.estimators import DropBlockRegressor
from dropreg.linear.ksupport import (
    ksupport_box_weights,
    ksupport_dual_norm,
    ksupport_norm,
    prox_squared_ksupport,
    prox_squared_spectral_ksupport,
    spectral_ksupport_dual_norm,
    spectral_ksupport_norm,
)
from dropreg.linear.last_layer import last_layer_singular_values, last_layer_solution
from dropreg.linear.objective import (
    drop_to_lam,
    dropblock_regularizer,
    dropconnect_expected_loss,
    dropconnect_masked_loss,
    dropconnect_regularizer,
    dropout_regularizer,
    expected_loss,
    expected_objective_from_moments,
    factorized_objective,
    induced_regularizer,
    linear_loss,
    masked_loss,
    normalized_covariance_of,
)
from dropreg.linear.training import SGDRun, masked_loss_grad, train_masked_sgd

__all__ = [
    "SGDRun",
    "expected_objective_from_moments",
    "train_masked_sgd",
    "masked_loss_grad",
    "DropBlockRegressor",
    "RankOneOptimum",
    "deep_linear_expected_loss",
    "deep_linear_regularizer",
    "envelope_constant",
    "flat_rank_one_network",
    "rank_one_optimum",
    "last_layer_singular_values",
    "last_layer_solution",
    "Certificate",
    "LinearSolution",
    "Whitening",
    "block_norm_spread",
    "block_norms",
    "cross_covariance",
    "drop_to_lam",
    "dropblock_regularizer",
    "dropblock_singular_values",
    "dropconnect_expected_loss",
    "dropconnect_masked_loss",
    "dropconnect_regularizer",
    "dropout_regularizer",
    "dropout_singular_values",
    "expected_loss",
    "factorized_objective",
    "induced_regularizer",
    "ksupport_box_weights",
    "ksupport_dual_norm",
    "ksupport_norm",
    "linear_loss",
    "masked_loss",
    "normalized_covariance_of",
    "numerical_rank",
    "prox_squared_ksupport",
    "prox_squared_spectral_ksupport",
    "solve_dropblock",
    "solve_dropout",
    "spectral_ksupport_dual_norm",
    "spectral_ksupport_norm",
    "whiten",
]
