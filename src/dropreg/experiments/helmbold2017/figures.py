"""Figures of the Helmbold & Long 2017 claims, drawn from stored ``details`` only."""

from __future__ import annotations

from typing import Any

import numpy as np

from dropreg.experiments._common import pyplot
from dropreg.experiments.claims import Figure

#: Training errors read off Fig. 2 of the paper at the scales 0.5, 0.75, 1, 1.25, 1.5.
PAPER_FIG2: dict[str, list[float]] = {"dropout": [0.71, 0.71, 0.745, 0.73, 0.715],
                                      "weight decay": [0.98, 0.915, 0.78, 0.65, 0.575]}


def negative_penalty(details: dict[str, Any]) -> list[Figure]:
    """Penalty of the Fig. 1 net against p: enumeration, closed form, the paper's -10."""
    ps = details["p"]
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.axhline(0.0, color="0.7", lw=1)
    ax.plot(ps, details["predicted"], color="C1", lw=2,
            label="prediction: closed form 2(1-k²)/k² - 32(1-k), k = 1-p")
    ax.plot(ps, details["penalty"], "o", color="C0", ms=4,
            label="measured: exact enumeration of 2^4 patterns")
    ax.plot([0.5], [-10.0], "*", color="C3", ms=14,
            label="prediction (paper): penalty -10 at p = 1/2")
    ax.set_xlabel("drop probability p (paper's q; dimensionless)")
    ax.set_ylabel("dropout penalty J_D - R (squared output units)")
    ax.set_title("Negative dropout penalty (Helmbold & Long, Fig. 1)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return [Figure.from_matplotlib(
        "penalty-vs-p",
        "Dropout penalty of the Fig. 1 network (x = (1, -1), y = 8) against the drop probability. "
        "The paper predicts -10 at p = 1/2 (star); the exact enumeration (dots) gives "
        f"{details['table']['0.5']:.6g}, negative for every "
        f"p below {details['p_root']:.4f}, and matches the closed form derived here (line) to "
        f"{details['deviation']:.1e}.",
        fig,
    )]


def label_dependence(details: dict[str, Any]) -> list[Figure]:
    """Penalty(y) - penalty(0) per drop probability: exact dots on predicted lines."""
    ys = np.array(details["y"])
    i0 = int(np.argmin(np.abs(ys)))
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for i, (p, pen) in enumerate(details["penalty"].items()):
        pred = np.array(details["predicted"][p])
        ax.plot(ys, pred - pred[i0], color=f"C{i}", lw=1.5,
                label=f"prediction, p = {p}: -{4 * float(p):g} y (penalty(0) = {pred[i0]:.3g})")
        ax.plot(ys, np.array(pen) - pen[i0], "o", color=f"C{i}", ms=4)
    ax.axhline(0.0, color="0.7", lw=1, ls=":", label="label-independent penalty (GLMs)")
    ax.set_xlabel("label y (output units; same input x = (1, -2))")
    ax.set_ylabel("penalty(y) - penalty(0) (squared output units)")
    ax.set_title("Label dependence of the dropout penalty (Theorem 20)")
    ax.legend(fontsize=7, title="lines: prediction, dots: exact", title_fontsize=7)
    fig.tight_layout()
    return [Figure.from_matplotlib(
        "penalty-vs-label",
        "Dropout penalty against the label for one fixed input. The paper predicts a dependence on "
        "y (6 - 2y at p = 1/2); exact enumeration (dots) lies on the predicted lines to "
        f"{details['deviation']:.1e}; the slope -2(E_R D - W(x)) = -4p is non-zero for every p.",
        fig,
    )]


def penalty_vs_depth(details: dict[str, Any]) -> list[Figure]:
    """Dropout penalty and weight decay of Theorem 18's witness against depth (log scale)."""
    rows = details["rows"]
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.3))
    for K, col in ((2, "C0"), (4, "C2")):
        sel = [r for r in rows if r["K"] == K]
        d = [r["d"] for r in sel]
        ax.plot(d, [r["predicted"] for r in sel], "-", color=col, lw=1.5,
                label=f"prediction: dropout penalty, K = n = {K}")
        if sel[0]["method"] == "exact":
            ax.plot(d, [r["penalty"] for r in sel], "o", color=col, ms=5,
                    label="measured: exact enumeration")
        else:
            ax.errorbar(d, [r["penalty"] for r in sel], yerr=[2 * r["stderr"] for r in sel],
                        fmt="s", color=col, ms=4,
                        label=f"measured: Monte Carlo ({details['samples']}), ±2 s.e.")
        ax.plot(d, [r["weight_decay_pred"] for r in sel], "--", color=col, lw=1.2,
                label=f"weight decay J_2 (lam = 1/2), K = n = {K}")
        ax.plot(d, [r["weight_decay"] for r in sel], "x", color=col, ms=5)
    ax.set_yscale("log")
    ax.set_xlabel("depth d (number of layers, counting the output)")
    ax.set_ylabel("penalty of the zero-risk witness, y = 1\n(squared output units, log scale)")
    ax.set_title("Dropout penalty vs weight decay with depth (Theorem 18)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    ex = [r for r in rows if r["method"] == "exact"]
    worst = max(abs(r["penalty"] - r["predicted"]) / r["predicted"] for r in ex)
    return [Figure.from_matplotlib(
        "penalty-vs-depth",
        "Theorem 18's witness (all weights equal, risk 0, y = 1, p = 1/2). The paper predicts a "
        "dropout penalty (1 + 1/K)(1 + 1/n)^(d-1) - 1, exponential in d (solid lines), against a "
        "weight-decay value polynomial in d (dashed, x = measured). Measured: exact enumeration "
        f"(K = n = 2, deviation {worst:.1e}) and Monte Carlo (K = n = 4, max |z| = "
        f"{details['zmax']:.2f}); fitted log-slope of the exact penalty {details['log_slope']:.3f} "
        "per layer.",
        fig,
    )]


def rescaling_family(details: dict[str, Any]) -> list[Figure]:
    """J_D and J_2 along the product-1 rescalings (t, 1/t, 1)."""
    ts, jd, j2 = details["t"], details["dropout"], details["weight_decay"]
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.axhline(jd[len(jd) // 2], color="C1", lw=2, label="prediction: J_D constant (Theorem 5)")
    ax.plot(ts, jd, "o", color="C0", ms=4, label="measured: exact dropout criterion J_D")
    ax.plot(ts, j2, "s-", color="C2", ms=3, label="measured: weight decay J_2 (lam = 1/2)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("layer rescaling t (dimensionless): (c_1, c_2, c_3) = (t, 1/t, 1)")
    ax.set_ylabel("criterion (squared output units)")
    ax.set_title("Rescaling invariance of the dropout criterion")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return [Figure.from_matplotlib(
        "rescaling-family",
        "Random 3-3-3-1 ReLU net under the rescalings (t, 1/t, 1). The paper predicts a constant "
        f"dropout criterion; measured relative spread {details['spread']:.1e}, while weight decay "
        f"varies by a factor {max(j2) / min(j2):.1f}.",
        fig,
    )]


def monotone_target(details: dict[str, Any]) -> list[Figure]:
    """J_D of W_neg against the width, and of the optimised nets."""
    ns, wneg, width = details["n"], details["w_neg"], details["width"]
    nonneg, free = details["nonnegative"], details["unconstrained"]
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.3, 4.2))
    ax.axhline(0.125, color="C3", lw=1.5, ls="--",
               label="prediction: every non-negative net has J_D >= 1/8")
    ax.axhline(0.1, color="C1", lw=1.5, ls=":", label="prediction: W_neg -> 1/10")
    ax.plot(ns, wneg, "o-", color="C0", ms=4, label="measured: W_neg (bias 1/5, best c), exact")
    ax.plot([width] * len(nonneg), nonneg, "^", color="C3", ms=7,
            label=f"measured: optimised non-negative nets ({len(nonneg)} starts)")
    ax.plot([width] * len(free), free, "v", color="C2", ms=7,
            label=f"measured: optimised unconstrained nets ({len(free)} starts)")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("hidden units n (count; K = 2 inputs, d = 2)")
    ax.set_ylabel("exact dropout criterion J_D on P_(1,1)\n(squared output units)")
    ax.set_title("Negative weights are optimal for a monotone target")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return [Figure.from_matplotlib(
        "monotone-target",
        "P_(1,1) with K = 2, p = 1/2. The paper predicts J_D(W_neg) -> 1/10 and J_D >= 1/8 for "
        f"non-negative weights. Measured: W_neg reaches {wneg[-1]:.4f} at n = {ns[-1]}; "
        f"Adam-optimised non-negative nets stop at {min(nonneg):.4f} (n = {width}); "
        f"unconstrained ones reach {min(free):.4f} using negative weights.",
        fig,
    )]


def error_vs_scale(details: dict[str, Any]) -> list[Figure]:
    """Training error against the input scale per method, with the paper's Fig. 2 values."""
    sc = details["scales"]
    mean, se, runs = np.array(details["mean"]), np.array(details["stderr"]), details["runs"]
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.3, 4.2))
    for m, (name, col) in enumerate((("dropout", "C0"), ("weight decay", "C1"),
                                     ("none", "C2"))):
        ax.errorbar(sc, mean[:, m], yerr=2 * se[:, m], fmt="o-", color=col, capsize=3,
                    label=f"measured: {name} (mean of {runs} runs, ±2 s.e.)")
        if name in PAPER_FIG2 and len(sc) == len(PAPER_FIG2[name]):
            ax.plot(sc, PAPER_FIG2[name], "x--", color=col, ms=7,
                    label=f"prediction (paper Fig. 2): {name}")
    ax.set_xlabel("input scale (dimensionless factor multiplying the inputs)")
    ax.set_ylabel("training error: mean square loss, no dropout\n(squared output units)")
    ax.set_title("Sign parity, K = 5, d = 2, n = 5 (Helmbold & Long, Section 6)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    (sd, sd_se), (sw, sw_se) = details["slope_dropout"], details["slope_weight_decay"]
    return [Figure.from_matplotlib(
        "error-vs-scale",
        "Training error after SGD (lr 0.01/(1 + 1e-5 t), momentum 0.5, "
        f"{details['iterations']} per-example steps) against the input scale. The paper "
        "(crosses, read off Fig. 2) predicts a flat dropout curve and a decreasing weight-decay "
        f"curve. Measured slopes per unit scale: dropout {sd:+.3f} ± {sd_se:.3f}, weight decay "
        f"{sw:+.3f} ± {sw_se:.3f} (± 1 s.e.).",
        fig,
    )]


def aversion_vs_scale(details: dict[str, Any]) -> list[Figure]:
    """Risk at the J_2 minimiser against the input scale, with lam^2 / (x.x)."""
    rows, lam = details["rows"], details["lam"]
    scales = [r["scale"] for r in rows]
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    ss = np.linspace(min(scales), max(scales), 200)
    ax.plot(ss, [min(0.25, lam**2 / (2 * s * s)) for s in ss], color="C1", lw=2,
            label="prediction: weight-decay aversion min(1/4, lam²/(x·x))")
    ax.plot(scales, [r["risk"] for r in rows], "o", color="C0",
            label=f"measured: risk at the J_2 minimiser (best of {details['starts']} Adam starts)")
    ax.set_yscale("symlog", linthresh=1e-3)
    ax.set_xlabel("input scale s (dimensionless), x = s (1, 1)")
    ax.set_ylabel("risk of the regularised minimiser\n(squared output units)")
    ax.set_title(f"Weight decay depends on the input scale (Theorem 7, lam = {lam:g})")
    ax.legend(fontsize=7)
    fig.tight_layout()
    worst = max(abs(r["risk"] - r["risk_pred"]) for r in rows)
    return [Figure.from_matplotlib(
        "aversion-vs-scale",
        f"P_(x,1) with x = s (1, 1), 4 hidden ReLUs, lam = {lam:g}. The paper predicts a "
        "weight-decay aversion lam²/(x·x) that shrinks with the input scale (line); the "
        f"minimisers found by Adam (dots) match it to {worst:.1e}. By contrast the dropout "
        "aversion does not depend on the scale (Theorem 4; see helmbold2017.rescaling-invariance).",
        fig,
    )]
