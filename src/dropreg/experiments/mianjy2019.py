"""Claims of Mianjy and Arora (ICML 2019), "On Dropout and Nuclear Norm Regularization":
the deep-linear Dropout regularizer and its convex envelope
(``docs/papers/mianjy2019.md``)."""

from __future__ import annotations

import math

import numpy as np
import torch

from dropreg.experiments._common import pyplot
from dropreg.experiments.claims import Figure, Measurement, Outcome, Progress, claim

F64 = torch.float64


def _product(ws):
    P = ws[-1]
    for W in reversed(ws[:-1]):
        P = P @ W
    return P


@claim(
    "mianjy2019.deep-linear-envelope",
    "mianjy2019",
    "For deep linear nets with Dropout (whitened inputs) the induced regularizer never goes below "
    "nu ||W_{K+1}...W_1||_*^2 with nu = prod_l (1 + lam/d_l) - 1, reaches it on flat rank-one "
    "nets, and for large dropout the global optimum is rank one with singular value s_1/(1+nu).",
)
def deep_linear_envelope(profile: str, generator: torch.Generator,
                         progress: Progress) -> Outcome:
    from scipy.optimize import minimize

    from dropreg.linear import (
        deep_linear_regularizer,
        envelope_constant,
        flat_rank_one_network,
        rank_one_optimum,
    )

    p = 0.4                                                    # keep probability theta = .6
    n_nets = 500 if profile == "quick" else 5000
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
        ratios_all.append((dims, nu, ratios, flat_ratio))
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

    starts = 10 if profile == "quick" else 40
    found = min(minimize(fg, 0.5 * torch.randn(sum(sizes), generator=generator,
                                               dtype=F64).numpy(),
                         jac=True, method="L-BFGS-B",
                         options={"maxiter": 5000, "ftol": 1e-15, "gtol": 1e-10}).fun
                for _ in range(starts))
    progress.advance()
    ms.append(Measurement("predicted rank-one optimum (dims 4-5-5-3, p = 0.7, s = (4, 1, .5))",
                          opt.value, expected=9.811983, tolerance=5e-7))
    ms.append(Measurement(f"best L-BFGS value over {starts} random starts", found,
                          expected=opt.value, tolerance=1e-6))

    plt = pyplot()

    fig, axes = plt.subplots(1, len(archs), figsize=(14, 4))
    for ax, (dims, nu, ratios, flat_ratio) in zip(axes, ratios_all):
        ax.hist(np.log10(ratios), bins=40, color="C0", alpha=0.7,
                label=f"measured: {len(ratios)} random nets")
        ax.axvline(math.log10(nu), color="C3", lw=2, label=f"prediction: floor nu = {nu:.5f}")
        ax.axvline(math.log10(flat_ratio), color="k", ls="--", lw=1,
                   label="measured: flat rank-one net")
        ax.set_xlabel("log10( R(W) / ||P||_*^2 ) (dimensionless)")
        ax.set_ylabel("number of nets (count)")
        lo = min(math.log10(nu), math.log10(flat_ratio), float(np.log10(ratios).min()))
        hi = float(np.log10(ratios).max())
        ax.set_xlim(lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo))  # floor line clear of the frame
        ax.set_ylim(top=ax.get_ylim()[1] * 1.3)  # room for the legend above the histogram
        ax.set_title(f"dims {'-'.join(map(str, dims))}, p = {p}")
        ax.legend(fontsize=7)
    fig.tight_layout()
    figure = Figure.from_matplotlib(
        "envelope",
        "Explicit Dropout regularizer of random deep linear nets divided by the squared nuclear "
        "norm of the end-to-end map. Mianjy and Arora predict the floor nu = prod(1 + lam/d_l) "
        "- 1 (red), reached by flat rank-one nets (dashed). Measured minima: " + ", ".join(
            f"{min(x[2]):.4f} (nu {x[1]:.4f})" for x in ratios_all) + ".", fig)
    return Outcome(measurements=ms, figures=[figure],
                   notes="Tolerances: 1e-12 relative is float64 rounding; the L-BFGS optimum "
                         "within 1e-6 of the prediction (optimizer tolerance gtol 1e-10).")
