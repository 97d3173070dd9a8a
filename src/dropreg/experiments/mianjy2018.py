"""Claims of Mianjy, Arora and Vidal (ICML 2018), "On the Implicit Bias of Dropout"
(``docs/papers/mianjy2018.md``)."""

from __future__ import annotations

import numpy as np
import torch

from dropreg.experiments._common import pyplot
from dropreg.experiments.claims import Figure, Measurement, Outcome, Progress, claim

F64 = torch.float64


@claim(
    "mianjy2018.dropout-equalized-global-optimum",
    "mianjy2018",
    "The global optimum of the Dropout objective of a one-hidden-layer linear net is singular "
    "value thresholding restricted to rank <= r (tau = (lam/r)||A*||_*), and it is equalized: "
    "||u_i|| ||v_i|| = ||A*||_*/r for every hidden unit.",
)
def dropout_equalized_global_optimum(profile: str, generator: torch.Generator,
                                     progress: Progress) -> Outcome:
    from dropreg.experiments.pal2020 import _lbfgs_factorized
    from dropreg.linear import solve_dropout

    settings = [((8, 6), 6, 0.5), ((8, 6), 3, 0.5), ((7, 9), 4, 2 / 3)]
    if profile == "full":
        settings += [((8, 6), 2, 0.5), ((12, 10), 10, 0.3), ((12, 10), 5, 0.6)]
    starts = 2 if profile == "quick" else 5
    progress.set_total(len(settings))
    rows, ms = [], []
    for shape, r, p in settings:
        lam = p / (1 - p)
        M = torch.randn(*shape, generator=generator, dtype=F64)
        sol = solve_dropout(M, r, p)
        f, U, V = _lbfgs_factorized(M, r, 1, lam, generator, starts)
        prods = (U.norm(dim=0) * V.norm(dim=0)).numpy()
        nuc = float(sol.singular_values.sum())
        spread = float((prods.max() - prods.min()) / prods.max())
        gap = (f - sol.value) / sol.value
        lab = f"M {shape[0]}x{shape[1]}, r={r}, p={p:.2f}"
        rows.append((lab, prods, nuc / r, sol.rank))
        ms.append(Measurement(f"L-BFGS optimum vs closed form (relative), {lab}", gap,
                              expected=0.0, tolerance=1e-9))
        ms.append(Measurement(f"relative spread of ||u_i|| ||v_i||, {lab}", spread,
                              expected=0.0, tolerance=max(1e-6, 10 * abs(gap) ** 0.5),
                              kind="at_most"))
        progress.advance()

    plt = pyplot()

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for i, (lab, prods, pred, _) in enumerate(rows):
        ax.plot(np.arange(1, len(prods) + 1), prods, "o", color=f"C{i}",
                label=f"measured: L-BFGS optimum, {lab}")
        ax.axhline(pred, color=f"C{i}", ls="--", lw=1, label="prediction: ||A*||_*/r")
    ax.set_xlabel("hidden unit i (index)")
    ax.set_ylabel("||u_i|| ||v_i|| (units of M)")
    ax.set_title("Dropout optima are equalized")
    ax.legend(fontsize=7)
    fig.tight_layout()
    figure = Figure.from_matplotlib(
        "equalized",
        "Products of incoming and outgoing weight norms at L-BFGS optima of the factorized "
        "Dropout objective; the paper predicts they all equal ||A*||_*/r (dashed lines), with "
        "A* the closed-form minimizer (rank-limited cases included).", fig)
    return Outcome(measurements=ms, figures=[figure],
                   notes="Spread tolerance 10 sqrt(relative objective gap) (at least 1e-6): "
                         "parameter error of an optimizer that stops at that gap.")
