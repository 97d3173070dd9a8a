"""Figures of the Mianjy and Arora 2019 claims, drawn from stored ``details`` only."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from dropreg.experiments._common import pyplot
from dropreg.experiments.claims import Figure


def envelope(details: dict[str, Any]) -> list[Figure]:
    """Histogram of R(W) / ||P||_*^2 over random nets against the floor nu."""
    plt = pyplot()
    archs = details["archs"]
    fig, axes = plt.subplots(1, len(archs), figsize=(14, 4), squeeze=False)
    for ax, a in zip(axes[0], archs):
        logs = np.log10(a["ratios"])
        ax.hist(logs, bins=40, color="C0", alpha=0.7, label=f"measured: {len(logs)} random nets")
        ax.axvline(math.log10(a["nu"]), color="C3", lw=2,
                   label=f"prediction: floor nu = {a['nu']:.5f}")
        ax.axvline(math.log10(a["flat"]), color="k", ls="--", lw=1,
                   label="measured: flat rank-one net")
        lo = min(math.log10(a["nu"]), math.log10(a["flat"]), float(logs.min()))
        hi = float(logs.max())
        ax.set_xlim(lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo))
        ax.set_ylim(top=ax.get_ylim()[1] * 1.3)
        ax.set_xlabel("log10( R(W) / ||P||_*^2 ) (dimensionless)")
        ax.set_ylabel("number of nets (count)")
        ax.set_title(f"dims {'-'.join(map(str, a['dims']))}, p = {details['p']}")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return [Figure.from_matplotlib(
        "envelope",
        "Explicit Dropout regularizer of random deep linear nets divided by the squared nuclear "
        "norm of the end-to-end map. Mianjy and Arora predict the floor nu = prod(1 + lam/d_l) "
        "- 1 (red), reached by flat rank-one nets (dashed). Measured minima: " + ", ".join(
            f"{min(a['ratios']):.4f} (nu {a['nu']:.4f})" for a in archs) + ".", fig)]
