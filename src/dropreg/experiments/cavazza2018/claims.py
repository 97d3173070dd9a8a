"""Claims of Cavazza et al. 2018: the Dropout expected objective of a one-hidden-layer linear net
(the Dropout case of the expected objectives of Pal et al. 2020, Sec. 3).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch

from dropreg.experiments.cavazza2018 import figures
from dropreg.experiments.claims import Measurement, Outcome, claim
from dropreg.experiments.context import ClaimContext


@dataclass(frozen=True)
class ObjectiveSettings:
    """Sizes of the random nets whose expected loss is enumerated."""

    widths: tuple[int, ...]
    drop_rates: tuple[float, ...] = (0.1, 0.3, 0.5, 0.7)
    out_dim: int = 3
    in_dim: int = 4
    examples: int = 5


def _enumerated_dropout_loss(U, V, X, Y, p):
    """Exact E_z (1/N)||Y - U diag(z/(1-p)) V^T X||_F^2 by enumeration of all 2^r masks."""
    r = U.shape[1]
    keep = 1.0 - p
    total = torch.zeros((), dtype=torch.float64)
    for bits in itertools.product((0.0, 1.0), repeat=r):
        z = torch.tensor(bits, dtype=torch.float64)
        prob = keep ** z.sum() * p ** (r - z.sum())
        pred = U @ torch.diag(z / keep) @ V.T @ X
        total = total + prob * ((Y - pred) ** 2).sum() / X.shape[1]
    return total


@claim(
    "cavazza2018.dropout-expected-objective",
    "cavazza2018",
    "Averaging the sampled Dropout loss of a one-hidden-layer linear network over all masks "
    "equals the loss plus lam * sum_i ||u_i||^2 ||X^T v_i||^2 / N, lam = p / (1 - p).",
    settings={"smoke": ObjectiveSettings(widths=(3,), drop_rates=(0.3, 0.7)),
              "quick": ObjectiveSettings(widths=(4, 6)),
              "full": ObjectiveSettings(widths=(4, 6, 8, 10))},
    figure=figures.expected_objective,
)
def dropout_expected_objective(ctx: ClaimContext) -> Outcome:
    from dropreg.linear import dropout_regularizer, linear_loss

    s, g = ctx.settings, ctx.generator
    ctx.progress.set_total(len(s.widths) * len(s.drop_rates))
    D, d, N = s.out_dim, s.in_dim, s.examples
    rows = []
    for r in s.widths:
        for p in s.drop_rates:
            U = torch.randn(D, r, generator=g, dtype=torch.float64)
            V = torch.randn(d, r, generator=g, dtype=torch.float64)
            X = torch.randn(d, N, generator=g, dtype=torch.float64)
            Y = torch.randn(D, N, generator=g, dtype=torch.float64)
            # the library's formula (dropreg.linear), rows = examples: X.T is (N, d)
            formula = linear_loss(U, V, X.T, Y.T) + dropout_regularizer(U, V, p,
                                                                        sigma_x=X @ X.T / N)
            exact = _enumerated_dropout_loss(U, V, X, Y, p)
            rows.append({"r": r, "p": p, "enumerated": float(exact), "formula": float(formula),
                         "rel": float(abs(exact - formula) / exact)})
            ctx.progress.advance()
    worst = max(row["rel"] for row in rows)
    return Outcome(
        measurements=[
            Measurement("max relative deviation, formula vs enumeration", worst,
                        expected=0.0, tolerance=1e-12, kind="at_most"),
            Measurement("cases checked", float(len(rows)), kind="info"),
        ],
        details={"rows": rows},
    )
