"""Claims of Mianjy and Arora (ICML 2019), "On Dropout and Nuclear Norm Regularization":
the deep-linear Dropout regularizer and its convex envelope (Sec. 3, Theorems 3.1-3.3)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dropreg.experiments.claims import Measurement, Outcome, claim
from dropreg.experiments.context import ClaimContext
from dropreg.experiments.mianjy2019 import figures

F64 = torch.float64


def _product(ws):
    P = ws[-1]
    for W in reversed(ws[:-1]):
        P = P @ W
    return P


@dataclass(frozen=True)
class EnvelopeSettings:
    """Random nets per architecture and L-BFGS random starts for the rank-one optimum."""

    n_nets: int
    starts: int


@claim(
    "mianjy2019.deep-linear-envelope",
    "mianjy2019",
    "For deep linear nets with Dropout (whitened inputs) the induced regularizer never goes below "
    "nu ||W_{K+1}...W_1||_*^2 with nu = prod_l (1 + lam/d_l) - 1, reaches it on flat rank-one "
    "nets, and for large dropout the global optimum is rank one with singular value s_1/(1+nu) "
    "(Mianjy and Arora 2019, Sec. 3). Tolerances (ours): 1e-12 relative (float64 rounding), "
    "the L-BFGS optimum within 1e-6.",
    settings={"smoke": EnvelopeSettings(50, 2), "quick": EnvelopeSettings(500, 10),
              "full": EnvelopeSettings(5000, 40)},
    figure=figures.envelope,
)
def deep_linear_envelope(ctx: ClaimContext) -> Outcome:
    from scipy.optimize import minimize

    from dropreg.linear import (
        deep_linear_regularizer,
        envelope_constant,
        flat_rank_one_network,
        rank_one_optimum,
    )

    p = 0.4                                                    # keep probability 0.6
    n_nets, generator, progress = ctx.settings.n_nets, ctx.generator, ctx.progress
    archs = [(4, 5, 3), (4, 6, 6, 3), (5, 3, 8, 4, 2)]
    progress.set_total(len(archs) + 1)
    ms, ratios_all = [], []
    for dims in archs:
        hidden = list(dims[1:-1])
        nu = envelope_constant(hidden, p)
        ratios = []
        for _ in range(n_nets):
            # random nets with random layer scales (unbalanced nets included)
            ws = [torch.randn(dims[i + 1], dims[i], generator=generator, dtype=F64)
                  * float(torch.exp(torch.randn((), generator=generator, dtype=F64)))
                  for i in range(len(dims) - 1)]
            nuc = float(torch.linalg.svdvals(_product(ws)).sum())
            ratios.append(float(deep_linear_regularizer(ws, p)) / nuc**2)
        A = torch.outer(torch.randn(dims[-1], generator=generator, dtype=F64),
                        torch.randn(dims[0], generator=generator, dtype=F64))
        flat = flat_rank_one_network(A, hidden)
        flat_ratio = float(deep_linear_regularizer(flat, p)) / float(
            torch.linalg.svdvals(A).sum()) ** 2
        ratios_all.append({"dims": list(dims), "nu": nu, "ratios": ratios, "flat": flat_ratio})
        ms.append(Measurement(f"min R/||P||_*^2 over {n_nets} random nets, dims {dims}",
                              min(ratios), expected=nu, tolerance=1e-12 * nu, kind="at_least"))
        ms.append(Measurement(f"R/||P||_*^2 of a flat rank-one net, dims {dims}", flat_ratio,
                              expected=nu, tolerance=1e-12 * nu))
        progress.advance()
    # large-dropout rank-one optimum: dims (4, 5, 5, 3), theta = .3, s = (4, 1, .5)
    dims, pl = (4, 5, 5, 3), 0.7
    M = torch.zeros(3, 4, dtype=F64)
    M[0, 0], M[1, 1], M[2, 2] = 4.0, 1.0, 0.5
    opt = rank_one_optimum(M, [5, 5], pl)
    shapes = [(dims[i + 1], dims[i]) for i in range(3)]
    sizes = [a * b for a, b in shapes]

    def fg(x):
        t = torch.tensor(x, dtype=F64, requires_grad=True)
        ws, o = [], 0
        for (a, b), n in zip(shapes, sizes):
            ws.append(t[o:o + n].reshape(a, b))
            o += n
        f = ((M - _product(ws)) ** 2).sum() + deep_linear_regularizer(ws, pl)
        f.backward()
        return f.item(), t.grad.numpy().copy()

    starts = ctx.settings.starts
    found = min(minimize(fg, 0.5 * torch.randn(sum(sizes), generator=generator,
                                               dtype=F64).numpy(),
                         jac=True, method="L-BFGS-B",
                         options={"maxiter": 5000, "ftol": 1e-15, "gtol": 1e-10}).fun
                for _ in range(starts))
    progress.advance()
    ms.append(Measurement("predicted rank-one optimum (dims 4-5-5-3, p = 0.7, s = (4, 1, .5))",
                          opt.value, expected=9.811983, tolerance=5e-7, ours=True))
    ms.append(Measurement(f"best L-BFGS value over {starts} random starts", found,
                          expected=opt.value, tolerance=1e-6, ours=True))

    return Outcome(measurements=ms, details={"p": p, "archs": ratios_all},
                   notes="Tolerances: 1e-12 relative is float64 rounding; the L-BFGS optimum "
                         "within 1e-6 of the prediction (optimizer tolerance gtol 1e-10).")
