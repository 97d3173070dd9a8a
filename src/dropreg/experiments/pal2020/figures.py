"""Figures of the Pal et al. 2020 claims, drawn from stored ``details`` only."""

from __future__ import annotations

from typing import Any

import numpy as np

from dropreg.experiments._common import pyplot
from dropreg.experiments.claims import Figure


def _label(row: dict[str, Any]) -> str:
    return ("Dropout" if row["k"] == 1 else f"DropBlock k={row['k']}") + f", p={row['p']}"


def identities(details: dict[str, Any]) -> list[Figure]:
    """Exact enumeration against the formula; Monte-Carlo deviations in standard errors."""
    plt = pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    rows, mc = details["exact"], details["monte_carlo"]
    ex = [r["enumerated"] for r in rows]
    lo, hi = min(ex) * 0.9, max(ex) * 1.1
    ax1.plot([lo, hi], [lo, hi], color="0.6", lw=1, label="prediction: formula = enumeration")
    for i, r in enumerate(rows):
        ax1.scatter([r["enumerated"]], [r["formula"]], color=f"C{i % 10}", zorder=3,
                    label=r["law"])
    ax1.set_xscale("log")
    ax1.set_yscale("log")
    ax1.set_xlabel("expected loss, exact enumeration of all masks\n(squared output units)")
    ax1.set_ylabel("expected loss, deterministic formula\n(squared output units)")
    ax1.legend(fontsize=7, loc="upper left")
    xs = np.arange(len(mc))
    ax2.axhline(0.0, color="0.4", lw=1, label="prediction: MC mean = formula")
    ax2.axhspan(-5, 5, color="0.9", label="tolerance: 5 standard errors (ours)")
    ax2.plot(xs, [(m["mean"] - m["formula"]) / m["stderr"] for m in mc], "o", color="C3",
             label="measured")
    ax2.set_ylim(-7, 7)
    ax2.set_xticks(xs, [m["strategy"].replace(" (", "\n(") for m in mc], fontsize=8)
    ax2.set_ylabel("(Monte-Carlo mean - formula) / standard error\n(standard errors)")
    ax2.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    worst = max(r["rel"] for r in rows)
    return [Figure.from_matplotlib(
        "identities",
        "Left: exact enumeration of every mask against the formula (Dropout, DropBlock, "
        "KeepExactly, sliding-seed DropBlock, a random mask pmf, DropConnect on either layer); "
        f"the paper predicts the diagonal, the largest relative deviation is {worst:.1e}. "
        "Right: Monte-Carlo mean of the sampled loss minus the formula, in standard errors.", fig)]


def sgd_vs_closed_form(details: dict[str, Any]) -> list[Figure]:
    """Objective along SGD against the closed-form optimum, and singular values reached."""
    plt = pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for i, row in enumerate(details["runs"]):
        ax1.plot(row["steps"], [max((o - row["E_star"]) / row["E_star"], 1e-12)
                                for o in row["objective"]], color=f"C{i}",
                 label=f"measured: {_label(row)}")
        m = len(row["sv_closed"])
        ax2.plot(np.arange(1, m + 1), row["sv_closed"], "s", mfc="none", ms=9, color=f"C{i}",
                 label=f"prediction: closed form, {_label(row)}")
        ax2.plot(np.arange(1, m + 1), row["sv"], "x", color=f"C{i}", label="measured: SGD")
    ax1.axhline(1e-3, color="k", ls=":", label="threshold: relative gap 1e-3 (ours)")
    ax1.set_yscale("log")
    ax1.set_xlabel("SGD step (iterations)")
    ax1.set_ylabel("(E - E*) / E* (dimensionless)")
    ax1.legend(fontsize=7)
    ax2.set_xlabel("index i (dimensionless)")
    ax2.set_ylabel("singular value of U V^T (output / input units)")
    ax2.legend(fontsize=7)
    fig.tight_layout()
    return [Figure.from_matplotlib(
        "sgd-vs-closed-form",
        f"Whitened synthetic regression {details['problem']}, width {details['width']}, "
        f"minibatch {details['batch']}, {details['steps']} SGD steps. The paper predicts that "
        "SGD reaches the closed-form global minimum. Final relative gaps: " + ", ".join(
            f"{_label(r)}: {r['gap']:.1e}" for r in details["runs"]) + ".", fig)]


def balance_rank(details: dict[str, Any]) -> list[Figure]:
    """Block norms at L-BFGS optima against (k/r)||A||_(k); singular values reached."""
    plt = pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for i, row in enumerate(details["rows"]):
        lab = f"r={row['r']}, k={row['k']}, p={row['p']:.2f}"
        ax1.plot(np.arange(1, len(row["norms"]) + 1), row["norms"], "o", color=f"C{i}",
                 label=f"measured: L-BFGS optimum, {lab}")
        ax1.axhline(row["pred_norm"], color=f"C{i}", ls="--", lw=1,
                    label="prediction: (k/r)||A||_(k)")
        ax2.plot(np.arange(1, 9), row["sv"][:8], "o-", color=f"C{i}", label=f"measured, {lab}")
        ax2.plot(np.arange(1, 9), row["pred_sv"][:8], "s", mfc="none", ms=10, color=f"C{i}",
                 label="prediction: closed form")
    ax2.plot(np.arange(1, 9), details["spectrum"], "k:", label="singular values of M")
    ax1.set_xlabel("block g (index)")
    ax1.set_ylabel("||U_g V_g^T||_F (output / input units)")
    ax1.legend(fontsize=7)
    ax2.set_yscale("symlog", linthresh=1e-3)
    ax2.set_xlabel("index i (dimensionless)")
    ax2.set_ylabel("singular value at the optimum (output / input units)")
    ax2.legend(fontsize=7)
    fig.tight_layout()
    return [Figure.from_matplotlib(
        "balance-rank",
        "L-BFGS from random starts on the factorized DropBlock objective (M 10x8). The paper "
        "predicts equal block norms (dashed) and low-rank optima. Measured spreads: "
        + ", ".join(f"{x['spread']:.1e}" for x in details["rows"]) + ".", fig)]


def last_layer_spectrum(details: dict[str, Any]) -> list[Figure]:
    """Singular values of the trained net's predictions against the closed form."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.3))
    xs = np.arange(1, 11)
    for i, row in enumerate(details["runs"]):
        ax.plot(xs, row["pred"], "s", mfc="none", ms=9, color=f"C{i}",
                label=f"prediction: {_label(row)}")
        ax.plot(xs, row["sv"], "x-", lw=0.8, color=f"C{i}",
                label=f"measured (max rel. err {row['rel_err']:.1e})")
    ax.plot(xs, details["Y_sv"], "k:", label="singular values of Y")
    ax.set_xlabel("index i (dimensionless)")
    ax.set_ylabel("singular value of the training predictions\n(units of Y = sqrt(counts))")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return [Figure.from_matplotlib(
        "last-layer-spectrum",
        f"MLP on an imbalanced digits subsample (N={details['N']}, counts {details['counts']}), "
        f"{details['steps']} Adam steps, masks on the width-{details['width']} last hidden "
        "layer. The paper predicts the squares; crosses are measured.", fig)]


def training_curves(details: dict[str, Any]) -> list[Figure]:
    """Expected objective along SGD for both mask laws with the minimum of each one's basin, and
    the constant-step chains' excess over that minimum against the step, extrapolated to 0."""
    plt = pyplot()
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4.3))
    for i, c in enumerate(details["curves"]):
        ax.plot(c["steps"], c["objective"], color=f"C{i}", label=f"measured: {c['name']}")
        ax.axhline(c["basin"], color=f"C{i}", ls="--", lw=1,
                   label=f"prediction: minimum of its own expected objective, {c['name']}")
        etas = [ch["eta"] for ch in c["chains"]]
        bx.errorbar(etas, [ch["mean"] - c["basin"] for ch in c["chains"]],
                    yerr=[2 * ch["stderr"] for ch in c["chains"]], fmt="o", color=f"C{i}",
                    capsize=3, label=f"measured: stationary mean, {c['name']}")
        bx.errorbar([0.0], [c["limit"] - c["basin"]], yerr=[2 * c["limit_se"]], fmt="s",
                    color=f"C{i}", capsize=3, mfc="none",
                    label=f"extrapolated to step 0 (+- 2 s.e.), {c['name']}")
        bx.plot([0.0, max(etas)], [c["limit"] - c["basin"], c["chains"][0]["mean"] - c["basin"]],
                color=f"C{i}", lw=0.8, ls=":")
    ax.set_yscale("log")
    ax.set_xlabel("SGD step (iterations)")
    ax.set_ylabel("expected training objective per example\n(squared output units)")
    ax.legend(fontsize=7)
    bx.axhline(0.0, color="k", lw=0.8, label="prediction: the basin's minimum (excess 0)")
    bx.set_xlabel("constant SGD step size eta")
    bx.set_ylabel("stationary expected objective minus the basin minimum\n"
                  "(squared output units)")
    bx.legend(fontsize=7)
    fig.tight_layout()
    return [Figure.from_matplotlib(
        "training-curves",
        "Linear net, whitened synthetic regression, the same initialization and SGD schedule; "
        "fixed contiguous blocks (the law Pal et al. analyse) against sliding-seed DropBlock "
        "(Ghiasi et al. 2018) at the same mean drop fraction. Left: the training curves; dashed, "
        "the minimum of each law's own expected objective in the basin SGD ends in (L-BFGS from "
        "the SGD iterate). Right: constant-step SGD chains started at that minimum, mean "
        "excess over it at steps eta and eta/2 (bars 2 s.e., batch means), and its "
        "linear extrapolation to eta = 0 (the prediction is 0).", fig)]
