"""Figures of the Cavazza et al. 2018 claims, drawn from stored ``details`` only."""

from __future__ import annotations

from typing import Any

from dropreg.experiments._common import pyplot
from dropreg.experiments.claims import Figure


def expected_objective(details: dict[str, Any]) -> list[Figure]:
    """Formula against enumeration, one point per random net."""
    rows = details["rows"]
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4))
    exact = [row["enumerated"] for row in rows]
    formula = [row["formula"] for row in rows]
    lo, hi = min(exact) * 0.9, max(exact) * 1.1
    ax.plot([lo, hi], [lo, hi], color="0.6", lw=1, label="prediction: formula = enumeration")
    ax.scatter(exact, formula, color="C0", zorder=3, label=f"measured ({len(rows)} random nets)")
    ax.set_xlabel("expected Dropout loss by enumerating all 2^r masks\n(squared output units)")
    ax.set_ylabel("loss + lam * sum_i ||u_i||^2 ||X^T v_i||^2 / N\n(squared output units)")
    ax.set_title("Dropout expected objective (Cavazza et al. 2018)")
    ax.legend(loc="upper left")
    fig.tight_layout()
    widths = ", ".join(str(w) for w in sorted({row["r"] for row in rows}))
    drops = tuple(sorted({row["p"] for row in rows}))
    worst = max(row["rel"] for row in rows)
    return [Figure.from_matplotlib(
        "identity",
        f"Each point is a random one-hidden-layer linear net (widths {widths}; "
        f"p in {drops}). The paper predicts every point on the diagonal; the largest "
        f"measured relative deviation is {worst:.1e}.",
        fig,
    )]
