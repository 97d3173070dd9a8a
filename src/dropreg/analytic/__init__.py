"""Analytic dropout for deep nets (Wei, Kakade, Ma 2020; ``docs/papers/wei2020.md``).

Find a model's dropout sites (:mod:`dropreg.sites`, re-exported here), compute the explicit
regularizer of dropout (exactly, or with the sampled-label estimator that trains), the implicit
update noise, and train with the update rules of the paper (Dropout_k, noise top-ups, explicit +
implicit without dropout).

Example:
    >>> import torch
    >>> from dropreg.analytic import MLP, explicit_regularizer, monte_carlo_dropout_gap
    >>> net = MLP(4, 16, 3, p=0.1, depth=1).double()
    >>> x, y = torch.randn(8, 4, dtype=torch.float64), torch.randint(0, 3, (8,))
    >>> r = explicit_regularizer(net, x, y, estimator="gauss_newton")
    >>> gap = monte_carlo_dropout_gap(net, x, y, n_masks=200,
    ...                               generator=torch.Generator().manual_seed(0))
    >>> r.item() > 0 and gap.stderr > 0
    True
"""

from dropreg._params import flatten_params as flatten
from dropreg.analytic import rules
from dropreg.analytic.explicit import (
    ESTIMATORS,
    DropoutGap,
    explicit_regularizer,
    last_layer_regularizer,
    monte_carlo_dropout_gap,
    sampled_regularizer,
    site_coefficient,
    taylor_coefficient,
)
from dropreg.analytic.implicit import (
    dropout_gradient,
    implicit_noise_term,
    site_variance,
    xi_approx,
    xi_drop_tilde,
)
from dropreg.analytic.losses import mean_loss, per_term_loss
from dropreg.analytic.models import MLP, WordLSTM, language_model_windows, pydoc_corpus
from dropreg.analytic.trainer import EpochRecord, TrainingHistory, evaluate, train
from dropreg.analytic.updates import UpdateRule, accumulate_gradient
from dropreg.sites import (
    DropoutSite,
    DropoutState,
    bernoulli_mask,
    dropout_sites,
    dropout_state,
    is_dropout_site,
    site_mode,
)

__all__ = [
    "ESTIMATORS", "MLP", "DropoutGap", "DropoutSite", "DropoutState", "EpochRecord",
    "TrainingHistory", "UpdateRule", "WordLSTM", "accumulate_gradient",
    "bernoulli_mask", "dropout_gradient", "dropout_sites", "dropout_state",
    "evaluate", "explicit_regularizer", "flatten",
    "implicit_noise_term", "is_dropout_site", "language_model_windows", "last_layer_regularizer",
    "mean_loss", "monte_carlo_dropout_gap", "per_term_loss", "pydoc_corpus", "rules",
    "sampled_regularizer", "site_coefficient", "site_mode", "site_variance", "taylor_coefficient",
    "train", "xi_approx", "xi_drop_tilde",
]

#: Names this package exported before :mod:`dropreg.analytic.rules`, kept for one release.
DEPRECATED_RULES = ("ablation", "dropout", "dropout_with_noise", "explicit_implicit",
                    "no_dropout")


def __getattr__(name: str) -> object:
    """``dropreg.analytic.<rule>`` (deprecated): ``dropreg.analytic.rules.<rule>``, with a
    ``DeprecationWarning``."""
    if name in DEPRECATED_RULES:
        import warnings

        warnings.warn(f"dropreg.analytic.{name} is deprecated and will be removed in the next "
                      f"release; use dropreg.analytic.rules.{name}", DeprecationWarning,
                      stacklevel=2)
        return getattr(rules, name)
    raise AttributeError(f"module 'dropreg.analytic' has no attribute {name!r}")
