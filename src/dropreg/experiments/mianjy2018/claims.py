"""Claims of Mianjy, Arora and Vidal (ICML 2018), "On the Implicit Bias of Dropout": the global
optimum of the Dropout objective of a one-hidden-layer linear net (Sec. 3, Theorem 3.6)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dropreg.experiments.claims import Measurement, Outcome, claim
from dropreg.experiments.context import ClaimContext
from dropreg.experiments.mianjy2018 import figures

F64 = torch.float64


@dataclass(frozen=True)
class EqualizedSettings:
    """Cases ``((rows, cols) of M, width r, drop rate p)`` and L-BFGS random starts."""

    cases: tuple[tuple[tuple[int, int], int, float], ...]
    starts: int


_CASES = (((8, 6), 6, 0.5), ((8, 6), 3, 0.5), ((7, 9), 4, 2 / 3))


@claim(
    "mianjy2018.dropout-equalized-global-optimum",
    "mianjy2018",
    "The global optimum of the Dropout objective of a one-hidden-layer linear net is singular "
    "value thresholding restricted to rank <= r (tau = (lam/r)||A*||_*), and it is equalized: "
    "||u_i|| ||v_i|| = ||A*||_*/r for every hidden unit (Mianjy et al. 2018, Sec. 3). "
    "Tolerances (ours): 1e-9 relative on the value, 10 sqrt(gap) (at least 1e-6) on the spread.",
    settings={"smoke": EqualizedSettings((((8, 6), 3, 0.5),), 1),
              "quick": EqualizedSettings(_CASES, 2),
              "full": EqualizedSettings(_CASES + (((8, 6), 2, 0.5), ((12, 10), 10, 0.3),
                                                  ((12, 10), 5, 0.6)), 5)},
    figure=figures.equalized,
)
def dropout_equalized_global_optimum(ctx: ClaimContext) -> Outcome:
    from dropreg.experiments._references import lbfgs_factorized
    from dropreg.linear import solve_dropout

    s, g = ctx.settings, ctx.generator
    ctx.progress.set_total(len(s.cases))
    rows, ms = [], []
    for shape, r, p in s.cases:
        M = torch.randn(*shape, generator=g, dtype=F64)
        sol = solve_dropout(M, r, p)
        f, U, V = lbfgs_factorized(M, r, 1, p / (1 - p), g, s.starts)
        prods = U.norm(dim=0) * V.norm(dim=0)
        spread = float((prods.max() - prods.min()) / prods.max())
        gap = (f - sol.value) / sol.value
        lab = f"M {shape[0]}x{shape[1]}, r={r}, p={p:.2f}"
        rows.append({"label": lab, "products": prods.tolist(),
                     "predicted": float(sol.singular_values.sum()) / r, "rank": sol.rank})
        ms += [Measurement(f"L-BFGS optimum vs closed form (relative), {lab}", gap,
                           expected=0.0, tolerance=1e-9, ours=True),
               Measurement(f"relative spread of ||u_i|| ||v_i||, {lab}", spread, expected=0.0,
                           tolerance=max(1e-6, 10 * abs(gap) ** 0.5), kind="at_most", ours=True)]
        ctx.progress.advance()
    return Outcome(measurements=ms,
                   notes="The optimum is found by dropreg.experiments._references."
                         "lbfgs_factorized, independent of the closed form. Spread tolerance: "
                         "parameter error of an optimizer that stops at that objective gap.",
                   details={"rows": rows})
