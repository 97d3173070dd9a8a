"""Curvature and dropout-noise diagnostics (Zhang, Zhou, Xu 2022; Helmbold, Long 2017).

* The empirical risk of a model in three dropout states, clean, fixed masks, and the expected
  loss over M masks (:class:`DropoutRisk`: data as tensors or batches, snapshots, masks, loss,
  gradient) and its Hessian-vector products (:class:`HessianOperator`; sites, masks and dropout
  states come from :mod:`dropreg.sites`).
* :func:`top_eigenpairs` (Lanczos, full reorthogonalisation), :func:`stochastic_trace`
  (Hutchinson, Hutch++), :func:`xtrace`, :func:`xnystrace` (Epperly et al. 2024) and
  :func:`auto_trace`, :func:`spectral_density` (stochastic Lanczos quadrature).
* Dropout gradient noise (:func:`dropout_gradient_noise`) and its alignment with the Hessian
  (:func:`noise_alignment`), with the exact last-hidden-layer theory (:mod:`.last_layer`).
* :func:`diagnose`: one call, top eigenvalues, trace, density and noise alignment in the clean
  and expected states, with a text summary and a figure.
* Flatness: :func:`sharpness`, :func:`interval_flatness`, :func:`loss_profile`,
  :func:`filter_normalized_direction`, :func:`variance_flatness`.

Every attribute named like a submodule is that submodule: ``dropreg.curvature.trace``,
``.alignment`` and ``.diagnosis`` are the modules; the functions are :func:`stochastic_trace`
(``trace`` in 0.1.0), :func:`noise_alignment` (``alignment`` in 0.1.0) and :func:`diagnose`
(its module was ``diagnose`` in 0.1.0).
"""

from dropreg.curvature.alignment import (
    AlignmentResult,
    matrix_alignment,
    noise_alignment,
    null_alignment,
    spearman,
)
from dropreg.curvature.density import SpectralDensity, spectral_density
from dropreg.curvature.diagnosis import Diagnosis, StateDiagnosis, diagnose
from dropreg.curvature.flatness import (
    IntervalFlatness,
    Sharpness,
    VarianceFlatness,
    filter_normalized_direction,
    interval_flatness,
    loss_profile,
    sharpness,
    trajectory_pca,
    variance_flatness,
)
from dropreg.curvature.hvp import HessianOperator, flatten_params, unflatten_params
from dropreg.curvature.lanczos import (
    EigenResult,
    lanczos_iteration,
    lanczos_tridiagonal,
    top_eigenpairs,
)
from dropreg.curvature.last_layer import (
    dropout_eta_moments,
    last_layer_hessian,
    last_layer_noise_covariance,
    last_layer_noise_covariance_linear,
    last_layer_terms,
)
from dropreg.curvature.noise import GradientNoise, dropout_gradient_noise, dropout_gradients
from dropreg.curvature.risk import DropoutRisk, uncontrolled_randomness
from dropreg.curvature.trace import (
    TraceResult,
    auto_trace,
    hutchinson_variance,
    squared_frobenius,
    stochastic_trace,
    xnystrace,
    xtrace,
)
from dropreg.sites import DropoutMasks, dropout_state, sample_masks

__all__ = [
    "AlignmentResult",
    "DropoutMasks",
    "Diagnosis",
    "DropoutRisk",
    "EigenResult",
    "GradientNoise",
    "HessianOperator",
    "IntervalFlatness",
    "Sharpness",
    "SpectralDensity",
    "StateDiagnosis",
    "TraceResult",
    "VarianceFlatness",
    "auto_trace",
    "diagnose",
    "dropout_eta_moments",
    "dropout_gradient_noise",
    "dropout_gradients",
    "dropout_state",
    "filter_normalized_direction",
    "flatten_params",
    "hutchinson_variance",
    "interval_flatness",
    "lanczos_iteration",
    "lanczos_tridiagonal",
    "last_layer_hessian",
    "last_layer_noise_covariance",
    "last_layer_noise_covariance_linear",
    "last_layer_terms",
    "loss_profile",
    "matrix_alignment",
    "noise_alignment",
    "null_alignment",
    "sample_masks",
    "sharpness",
    "spearman",
    "spectral_density",
    "squared_frobenius",
    "stochastic_trace",
    "top_eigenpairs",
    "trajectory_pca",
    "uncontrolled_randomness",
    "unflatten_params",
    "variance_flatness",
    "xnystrace",
    "xtrace",
]
