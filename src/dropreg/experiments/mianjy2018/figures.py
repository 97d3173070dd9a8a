"""Figures of the Mianjy et al. 2018 claims, drawn from stored ``details`` only."""

from __future__ import annotations

from typing import Any

import numpy as np

from dropreg.experiments._common import pyplot
from dropreg.experiments.claims import Figure


def equalized(details: dict[str, Any]) -> list[Figure]:
    """Products ||u_i|| ||v_i|| at L-BFGS optima against ||A*||_*/r."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for i, row in enumerate(details["rows"]):
        ax.plot(np.arange(1, len(row["products"]) + 1), row["products"], "o", color=f"C{i}",
                label=f"measured: L-BFGS optimum, {row['label']}")
        ax.axhline(row["predicted"], color=f"C{i}", ls="--", lw=1, label="prediction: ||A*||_*/r")
    ax.set_xlabel("hidden unit i (index)")
    ax.set_ylabel("||u_i|| ||v_i|| (units of M)")
    ax.set_title("Dropout optima are equalized")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return [Figure.from_matplotlib(
        "equalized",
        "Products of incoming and outgoing weight norms at L-BFGS optima of the factorized "
        "Dropout objective; the paper predicts they all equal ||A*||_*/r (dashed lines), with "
        "A* the closed-form minimizer (rank-limited cases included).", fig)]
