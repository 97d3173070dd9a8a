"""Claims of Cavazza et al. 2018 (the Dropout expected objective of a one-hidden-layer linear net).

``docs/papers/cavazza2018.md``.
"""

from __future__ import annotations

import itertools

import torch

from dropreg.experiments._common import pyplot
from dropreg.experiments.claims import Figure, Measurement, Outcome, Progress, claim


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
)
def dropout_expected_objective(
    profile: str, generator: torch.Generator, progress: Progress
) -> Outcome:
    from dropreg.linear import dropout_regularizer, linear_loss

    widths = (4, 6) if profile == "quick" else (4, 6, 8, 10)
    drop_rates = (0.1, 0.3, 0.5, 0.7)
    progress.set_total(len(widths) * len(drop_rates))
    D, d, N = 3, 4, 5
    rows = []
    worst = 0.0
    for r in widths:
        for p in drop_rates:
            U = torch.randn(D, r, generator=generator, dtype=torch.float64)
            V = torch.randn(d, r, generator=generator, dtype=torch.float64)
            X = torch.randn(d, N, generator=generator, dtype=torch.float64)
            Y = torch.randn(D, N, generator=generator, dtype=torch.float64)
            # the library's formula (dropreg.linear), rows = examples: X.T is (N, d)
            loss = linear_loss(U, V, X.T, Y.T)
            reg = dropout_regularizer(U, V, p, sigma_x=X @ X.T / N)
            exact = _enumerated_dropout_loss(U, V, X, Y, p)
            rel = float(abs(exact - (loss + reg)) / exact)
            worst = max(worst, rel)
            rows.append((r, p, float(exact), float(loss + reg), rel))
            progress.advance()

    plt = pyplot()

    fig, ax = plt.subplots(figsize=(5.5, 4))
    exact_vals = [row[2] for row in rows]
    formula_vals = [row[3] for row in rows]
    lo, hi = min(exact_vals) * 0.9, max(exact_vals) * 1.1
    ax.plot([lo, hi], [lo, hi], color="0.6", lw=1, label="prediction: formula = enumeration")
    ax.scatter(exact_vals, formula_vals, color="C0", zorder=3,
               label=f"measured ({len(rows)} random nets)")
    ax.set_xlabel("expected Dropout loss by enumerating all 2^r masks\n(squared output units)")
    ax.set_ylabel("loss + lam * sum_i ||u_i||^2 ||X^T v_i||^2 / N\n(squared output units)")
    ax.set_title("Dropout expected objective (Cavazza et al. 2018)")
    ax.legend(loc="upper left")
    fig.tight_layout()
    figure = Figure.from_matplotlib(
        "identity",
        "Each point is a random one-hidden-layer linear net (widths "
        f"{', '.join(map(str, widths))}; p in {drop_rates}). The paper predicts every point on "
        f"the diagonal; the largest measured relative deviation is {worst:.1e}.",
        fig,
    )
    return Outcome(
        measurements=[
            Measurement("max relative deviation, formula vs enumeration", worst,
                        expected=0.0, tolerance=1e-12, kind="at_most"),
            Measurement("cases checked", float(len(rows)), kind="info"),
        ],
        figures=[figure],
        details={"rows": [dict(zip(("r", "p", "enumerated", "formula", "rel"), row))
                          for row in rows]},
    )
