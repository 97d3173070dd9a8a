"""Claims of Helmbold & Long, *Surprising properties of dropout in deep networks* (COLT 2017).

Every criterion here is exact (enumeration of all dropout patterns,
:func:`dropreg.relu.dropout_criterion`) unless it says Monte Carlo. Dropout drops inputs and hidden
units with probability ``p`` (the paper's ``q``), kept ones scaled by ``1 / (1 - p)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from dropreg._random import mean_and_stderr
from dropreg.experiments import measures
from dropreg.experiments.claims import Measurement, Outcome, claim
from dropreg.experiments.context import ClaimContext
from dropreg.experiments.helmbold2017 import figures
from dropreg.experiments.helmbold2017.runs import fit_weight_decay_batch, sign_parity_run
from dropreg.relu import (
    StandardNet,
    all_patterns,
    dropout_criterion,
    dropout_output,
    dropout_penalty,
    expected_dropout_output,
    figure1_example,
    fit_dropout_criterion,
    lemma10_criterion,
    linear_layers,
    monotone_target,
    num_dropout_nodes,
    rescale_inputs,
    rescale_layers,
    rescale_output,
    risk,
    theorem17_w_neg,
    theorem18_penalty,
    theorem18_weight_decay,
    theorem18_weight_decay_bound,
    theorem18_witness,
    theorem20_witness,
    two_unit_penalty,
    w_neg,
    weight_decay_criterion,
)


def _f(x) -> float:
    return float(x.detach()) if isinstance(x, torch.Tensor) else float(x)


# ---------------------------------------------------------------------------------------------
# Theorem 19 (Fig. 1): negative penalty


@dataclass(frozen=True)
class PenaltyCurveSettings:
    """Number of drop probabilities in (0.02, 0.86) at which the penalty is enumerated."""

    points: int


@claim(
    "helmbold2017.negative-dropout-penalty",
    "helmbold2017",
    "The dropout penalty can be negative (Theorem 19, Fig. 1): for the 2-2-1 all-ones ReLU net "
    "on x = (1, -1), y = 8 and p = 1/2, the dropout criterion is 54 while the risk is 64 "
    "(penalty -10).",
    settings={"smoke": PenaltyCurveSettings(8), "quick": PenaltyCurveSettings(22),
              "full": PenaltyCurveSettings(85)},
    figure=figures.negative_penalty,
    deterministic=True,
)
def negative_dropout_penalty(ctx: ClaimContext) -> Outcome:
    ps = np.linspace(0.02, 0.86, ctx.settings.points).tolist()
    net, X, Y = figure1_example()
    with torch.no_grad():
        jd, r = _f(dropout_criterion(net, X, Y, 0.5)), _f(risk(net, X, Y))
        D = dropout_output(net, X, all_patterns(num_dropout_nodes(net)), 0.5).flatten()
        measured = [_f(dropout_penalty(net, X, Y, p)) for p in ps]
        table = {str(q): _f(dropout_penalty(net, X, Y, q)) for q in (0.1, 0.3, 0.5, 0.7, 0.9)}
    predicted = [two_unit_penalty(p, 8.0) for p in ps]
    nonzero = sorted(D[D != 0].tolist())
    dev = max(abs(a - b) for a, b in zip(measured, predicted))
    # the penalty 2(1+k)(1-k)/k^2 - 32(1-k) changes sign where 16 k^2 - k - 1 = 0, k = 1 - p
    p_root = 1.0 - (1.0 + math.sqrt(65.0)) / 32.0
    return Outcome(
        measurements=[
            Measurement("dropout penalty J_D - R", jd - r, expected=-10.0, tolerance=1e-12),
            Measurement("dropout criterion J_D (p = 1/2)", jd, expected=54.0, tolerance=1e-12),
            Measurement("risk R", r, expected=64.0, tolerance=1e-12),
            Measurement("patterns with non-zero output (paper: 3)", float(len(nonzero)),
                        expected=3.0, tolerance=0.0),
            Measurement("max abs(enumeration - closed form 2(1-k^2)/k^2 - 32(1-k)) over p", dev,
                        expected=0.0, tolerance=1e-10, kind="at_most"),
            Measurement("p below which the penalty is negative (closed form)", p_root,
                        kind="info"),
        ],
        notes="Non-zero outputs under dropout: " + ", ".join(f"{v:g}" for v in nonzero)
        + ". Penalty across p: " + ", ".join(f"p={q}: {v:.4f}" for q, v in table.items())
        + ". Tolerances: the values are sums of 16 dyadic terms, exact in float64.",
        details={"p": ps, "penalty": measured, "predicted": predicted, "table": table,
                 "deviation": dev, "p_root": p_root},
    )


# ---------------------------------------------------------------------------------------------
# Theorem 20: label dependence


@dataclass(frozen=True)
class LabelSettings:
    """Labels in [-2, 5] (the count must keep y = 0 on the grid) and drop probabilities."""

    labels: int
    drop_rates: tuple[float, ...] = (0.1, 0.25, 0.5, 0.75, 0.9)


@claim(
    "helmbold2017.label-dependent-penalty",
    "helmbold2017",
    "The dropout penalty of a ReLU net depends on the labels, not only on the inputs (Theorem 20): "
    "for x = (1, -2) and the 2-2-1 all-ones net the penalty at p = 1/2 is 6 - 2y, and its slope "
    "in y is non-zero for every drop probability.",
    settings={"smoke": LabelSettings(8, (0.1, 0.5, 0.9)), "quick": LabelSettings(8),
              "full": LabelSettings(29)},
    figure=figures.label_dependence,
    deterministic=True,
)
def label_dependent_penalty(ctx: ClaimContext) -> Outcome:
    s = ctx.settings
    ys = np.linspace(-2.0, 5.0, s.labels)
    if not np.isclose(ys, 0.0).any():
        raise ValueError(f"settings.labels={s.labels} must put y = 0 on the grid of [-2, 5]")
    ctx.progress.set_total(len(s.drop_rates))
    pen, pred = {}, {}
    slope_dev, min_abs_slope = 0.0, math.inf
    net, X, _ = theorem20_witness()
    with torch.no_grad():
        for p in s.drop_rates:
            pen[p] = [_f(dropout_penalty(*theorem20_witness(float(y)), p)) for y in ys]
            pred[p] = [two_unit_penalty(p, float(y)) for y in ys]
            slope = -2.0 * (_f(expected_dropout_output(net, X, p)) - _f(net(X)))
            fitted = np.polyfit(ys, pen[p], 1)[0]
            slope_dev = max(slope_dev, abs(fitted - slope), abs(slope - (-4.0 * p)))
            min_abs_slope = min(min_abs_slope, abs(slope))
            ctx.progress.advance()
    dev_half = float(np.abs(np.array(pen[0.5]) - (6.0 - 2.0 * ys)).max()) if 0.5 in pen else 0.0
    return Outcome(
        measurements=[
            Measurement("max abs(penalty - (6 - 2y)) at p = 1/2", dev_half, expected=0.0,
                        tolerance=1e-12, kind="at_most"),
            Measurement("max abs(slope in y + 2 (E_R D - W(x))), and vs -4p", slope_dev,
                        expected=0.0, tolerance=1e-10, kind="at_most"),
            Measurement("min abs(slope in y) over p (strictly > 0)", min_abs_slope, expected=0.0,
                        tolerance=0.0, kind="at_least"),
        ],
        notes="Slope predicted here: penalty(y) = 2(1-k^2)/k^2 - 4(1-k) y with k = 1 - p "
        "(derived from the only active pattern, keep x_1 and drop x_2).",
        details={"y": ys.tolist(), "penalty": {str(p): v for p, v in pen.items()},
                 "predicted": {str(p): v for p, v in pred.items()},
                 "deviation": max(dev_half, slope_dev)},
    )


# ---------------------------------------------------------------------------------------------
# Theorem 18: exponential growth with depth


@dataclass(frozen=True)
class DepthSettings:
    """Deepest exactly enumerated witness (K = n = 2), deepest Monte-Carlo one (K = n = 4) and
    its samples per depth."""

    exact_depth: int
    mc_depth: int
    samples: int


def _depth_rows(s: DepthSettings, generator: torch.Generator, y: float = 1.0,
                lam: float = 0.5) -> list[dict]:
    """Penalty (p = 1/2) and weight decay of Theorem 18's witness at each depth."""
    rows = []
    for method, K, dmax in (("exact", 2, s.exact_depth), ("monte_carlo", 4, s.mc_depth)):
        for d in range(2, dmax + 1):
            net, X, Y = theorem18_witness(K, K, d, y)
            with torch.no_grad():
                if method == "exact":
                    pen, se = _f(dropout_penalty(net, X, Y, 0.5)), 0.0
                else:
                    res = dropout_penalty(net, X, Y, 0.5, method="monte_carlo",
                                          samples=s.samples, generator=generator)
                    pen, se = _f(res.value), float(res.stderr)
                wd = _f(weight_decay_criterion(net, X, Y, lam))
            rows.append({"method": method, "K": K, "n": K, "d": d, "penalty": pen, "stderr": se,
                         "predicted": theorem18_penalty(K, K, d, y), "weight_decay": wd,
                         "weight_decay_pred": theorem18_weight_decay(K, K, d, y, lam),
                         "weight_decay_bound": theorem18_weight_decay_bound(K, K, d, y, lam)})
    return rows


@claim(
    "helmbold2017.penalty-exponential-in-depth",
    "helmbold2017",
    "The dropout penalty can grow exponentially with depth while weight decay grows polynomially "
    "(Theorem 18): for the zero-risk witness on x = 1_K the penalty is "
    "y^2((1 + 1/K)(1 + 1/n)^(d-1) - 1) >= y^2/K at p = 1/2, and J_2 <= (lam y^(2/d)/2)(Kn + "
    "n^2(d-2) + n). Monte-Carlo estimates must lie within 5 s.e. of the closed form (ours).",
    settings={"smoke": DepthSettings(5, 3, 2000), "quick": DepthSettings(9, 8, 20000),
              "full": DepthSettings(12, 12, 100000)},
    figure=figures.penalty_vs_depth,
)
def penalty_exponential_in_depth(ctx: ClaimContext) -> Outcome:
    rows = _depth_rows(ctx.settings, ctx.generator)
    ex = [r for r in rows if r["method"] == "exact"]
    mc = [r for r in rows if r["method"] == "monte_carlo"]
    zmax = max(abs(r["penalty"] - r["predicted"]) / r["stderr"] for r in mc)
    # Theorem 18(b) (proof): J_D >= y^2 / K, checked on the measured (exact) or closed-form value
    worst_bound = min([r["penalty"] * r["K"] for r in ex] + [r["predicted"] * r["K"] for r in mc])
    growth = (ex[-1]["penalty"] / ex[-1]["weight_decay"]) / (ex[-3]["penalty"]
                                                              / ex[-3]["weight_decay"])
    slope_dropout = float(np.polyfit([r["d"] for r in ex], np.log([r["penalty"] for r in ex]),
                                     1)[0])
    return Outcome(
        measurements=[
            Measurement("max relative abs(exact - closed form) (K = n = 2)",
                        max(abs(r["penalty"] - r["predicted"]) / r["predicted"] for r in ex),
                        expected=0.0, tolerance=1e-10, kind="at_most"),
            Measurement("max abs(Monte Carlo - closed form) / s.e. (K = n = 4; 5 is ours)", zmax,
                        expected=0.0, tolerance=5.0, kind="at_most", ours=True),
            Measurement("min penalty / (y^2 / K) over depths (Theorem 18b: >= 1)", worst_bound,
                        expected=1.0, kind="at_least"),
            Measurement("max J_2 - bound of Theorem 18c over depths (<= 0)",
                        max(r["weight_decay"] - r["weight_decay_bound"] for r in rows),
                        expected=0.0, kind="at_most"),
            Measurement("max relative abs(J_2 - closed form) (K = n = 2)",
                        max(abs(r["weight_decay"] - r["weight_decay_pred"]) / r["weight_decay"]
                            for r in ex), expected=0.0, tolerance=1e-12, kind="at_most"),
            Measurement("growth of dropout/weight-decay ratio over the last 2 layers (> 1)",
                        growth, expected=1.0, kind="at_least"),
            Measurement("fitted slope of log penalty per layer (K = n = 2)", slope_dropout,
                        kind="info"),
        ],
        notes="Theorem 18(b) states J_D >= y^2/(K+1); the proof gives the sharper y^2/K, checked "
        "here. Monte Carlo samples the inputs and the hidden layers but the last (folded in "
        "closed form), independently per sample.",
        details={"rows": rows, "samples": ctx.settings.samples, "zmax": zmax,
                 "log_slope": slope_dropout},
    )


# ---------------------------------------------------------------------------------------------
# Theorems 4-6: rescaling invariance


@dataclass(frozen=True)
class RescalingSettings:
    """Random 3-3-3-1 nets checked (6 Gaussian examples each)."""

    nets: int


def _rescaling_changes(generator: torch.Generator) -> dict[str, float]:
    """Relative changes of J_D of one random net under the rescalings of Theorems 4-6."""
    K, d, n = 3, 3, 3
    net = StandardNet(K, d, n, generator=generator)
    X = torch.randn(6, K, generator=generator, dtype=torch.float64)
    Y = torch.randn(6, 1, generator=generator, dtype=torch.float64)
    logc = torch.randn(d, generator=generator, dtype=torch.float64)
    c = torch.exp(logc - logc.mean()).tolist()  # product 1
    A = torch.randn(K, generator=generator, dtype=torch.float64) * 2
    with torch.no_grad():
        j0 = _f(dropout_criterion(net, X, Y))
        new = rescale_layers(net, c)
        R = all_patterns(num_dropout_nodes(net))
        D0 = dropout_output(net, X, R, 0.5)
        j3 = _f(dropout_criterion(rescale_output(net, 3.0), X, 3.0 * Y))
        sq = [sum(_f((lin.weight ** 2).sum()) for lin in linear_layers(m)) for m in (net, new)]
        return {
            "layer": abs(_f(dropout_criterion(new, X, Y)) - j0) / j0,
            "pattern": float((dropout_output(new, X, R, 0.5) - D0).abs().max() / D0.abs().max()),
            "input": abs(_f(dropout_criterion(rescale_inputs(net, A), X * A, Y)) - j0) / j0,
            "output": abs(j3 - 9.0 * j0) / (9.0 * j0),
            "weight_ratio": sq[1] / sq[0],
        }


@claim(
    "helmbold2017.rescaling-invariance",
    "helmbold2017",
    "The dropout criterion is invariant under diagonal input rescaling (W_1 -> W_1 A^-1 on data "
    "Ax, Theorem 4) and under layer rescalings with product 1 (Theorem 5), and scales by c^2 "
    "when the output weights and labels scale by c (Theorem 6); weight decay is not invariant.",
    settings={"smoke": RescalingSettings(2), "quick": RescalingSettings(4),
              "full": RescalingSettings(20)},
    figure=figures.rescaling_family,
)
def rescaling_invariance(ctx: ClaimContext) -> Outcome:
    g = ctx.generator
    ctx.progress.set_total(ctx.settings.nets + 1)
    changes = []
    for _ in range(ctx.settings.nets):
        changes.append(_rescaling_changes(g))
        ctx.progress.advance()
    net = StandardNet(3, 3, 3, generator=g)  # a one-parameter family (t, 1/t, 1): J_D flat
    X = torch.randn(6, 3, generator=g, dtype=torch.float64)
    Y = torch.randn(6, 1, generator=g, dtype=torch.float64)
    ts = np.logspace(-1, 1, 21).tolist()
    with torch.no_grad():
        fam = [rescale_layers(net, [t, 1.0 / t, 1.0]) for t in ts]
        jd = [_f(dropout_criterion(m, X, Y)) for m in fam]
        j2 = [_f(weight_decay_criterion(m, X, Y, 0.5)) for m in fam]
    ctx.progress.advance()
    spread = (max(jd) - min(jd)) / jd[10]

    def worst(key: str) -> float:
        return max(c[key] for c in changes)

    return Outcome(
        measurements=[
            Measurement(f"max relative change of J_D, {name}", worst(key), expected=0.0,
                        tolerance=1e-12, kind="at_most")
            for name, key in (("layer rescaling (product 1)", "layer"),
                              ("of D(W, x, R) over all 2^9 patterns", "pattern"),
                              ("diagonal input rescaling", "input"),
                              ("output and labels times c = 3, vs c^2 J_D", "output"))
        ] + [
            Measurement("relative spread of J_D along the family", spread, expected=0.0,
                        tolerance=1e-12, kind="at_most"),
            Measurement("median sum W'^2 / sum W^2 (weight decay changes)",
                        float(np.median([c["weight_ratio"] for c in changes])), kind="info"),
        ],
        notes=f"{ctx.settings.nets} random StandardNet(K=3, d=3, n=3) with 6 Gaussian examples "
        "each; random product-1 layer factors and random diagonal A (negative entries included). "
        "The 1e-12 tolerance is float64 round-off on sums of 2^9 terms.",
        details={"t": ts, "dropout": jd, "weight_decay": j2, "spread": spread},
    )


# ---------------------------------------------------------------------------------------------
# Theorem 17 (Section 4): negative weights for a monotone target


@dataclass(frozen=True)
class MonotoneSettings:
    """Width of the optimised nets, Adam starts (non-negative / free), steps and rate, and the
    widest W_neg (2^max_log2_width hidden units)."""

    width: int
    starts_nonnegative: int
    starts_free: int
    steps: int
    lr: float
    max_log2_width: int = 12


@claim(
    "helmbold2017.negative-weights-monotone-target",
    "helmbold2017",
    "Dropout's optimum for the monotone target P_(1,1) uses negative weights (Theorem 17, K = 2): "
    "the first-one gadget network W_neg has J_D -> 1/10 as n grows, while every network with "
    "non-negative weights has J_D >= 1/8.",
    settings={"smoke": MonotoneSettings(16, 1, 1, 700, 0.02, 6),
              "quick": MonotoneSettings(32, 3, 2, 700, 0.02),
              "full": MonotoneSettings(64, 8, 4, 3000, 0.01)},
    figure=figures.monotone_target,
)
def negative_weights_monotone_target(ctx: ClaimContext) -> Outcome:
    s, g = ctx.settings, ctx.generator
    ns = [2**k for k in range(1, s.max_log2_width + 1)]
    ctx.progress.set_total(s.starts_nonnegative + s.starts_free + 1)
    X, Y = monotone_target(2)
    lemma_dev = 0.0
    with torch.no_grad():
        for K, n, d in [(2, 4, 2), (4, 8, 2), (2, 4, 3), (4, 8, 3), (8, 16, 2), (2, 8, 4)]:
            XK, YK = monotone_target(K)
            lemma_dev = max(lemma_dev, abs(_f(dropout_criterion(w_neg(K, n, d), XK, YK))
                                           - lemma10_criterion(K, n, d)))
        wneg = [_f(dropout_criterion(theorem17_w_neg(n), X, Y)) for n in ns]
    ctx.progress.advance()
    fits = {True: [], False: []}
    for nonneg, starts in ((True, s.starts_nonnegative), (False, s.starts_free)):
        for _ in range(starts):
            fit = fit_dropout_criterion(StandardNet(2, 2, s.width, generator=g), X, Y,
                                        steps=s.steps, lr=s.lr, nonnegative_weights=nonneg)
            fits[nonneg].append((fit.value, fit.n_negative_weights))
            ctx.progress.advance()
    nonneg, free = [v for v, _ in fits[True]], [v for v, _ in fits[False]]
    return Outcome(
        measurements=[
            Measurement(f"min J_D over optimised non-negative nets (n = {s.width})", min(nonneg),
                        expected=0.125, kind="at_least"),
            Measurement("max abs(J_D(W_neg) - Lemma 10)", lemma_dev, expected=0.0,
                        tolerance=1e-12, kind="at_most"),
            Measurement(f"J_D(W_neg), n = {ns[-1]} (paper: -> 1/10; below 1/8)", wneg[-1],
                        expected=0.125, kind="at_most"),
            Measurement(f"J_D(W_neg) - 1/10 at n = {ns[-1]} (O(1/n))", wneg[-1] - 0.1,
                        kind="info"),
            Measurement(f"min J_D over optimised unconstrained nets (n = {s.width}; paper: "
                        "can go below 1/8)", min(free), kind="info"),
            Measurement("negative weights in the best unconstrained net",
                        float(fits[False][int(np.argmin(free))][1]), kind="info"),
        ],
        reason=f"Not reproduced because W_neg (n = {ns[-1]}) has J_D = {wneg[-1]:.4f} against "
        f"the 1/8 of non-negative nets, the best optimised non-negative net {min(nonneg):.4f} "
        f"and Lemma 10 deviates by {lemma_dev:.1e}.",
        notes=f"Projected Adam (lr {s.lr}, {s.steps} steps) on the exact criterion; non-negative "
        "nets clamp every weight at 0 after each step, biases free. The lower bound 1/8 is a "
        "theorem about the global minimum, so any optimised non-negative net must stay above it. "
        "The unconstrained fits are reported, not judged: how far Adam gets below 1/8 depends on "
        "the steps and starts, and W_neg already shows negative weights beat 1/8.",
        details={"n": ns, "w_neg": wneg, "nonnegative": nonneg, "unconstrained": free,
                 "width": s.width},
    )


# ---------------------------------------------------------------------------------------------
# Section 6 (Fig. 2): the sign-parity experiment


@dataclass(frozen=True)
class SignParitySettings:
    """Independent runs (data set + initialisation each), SGD steps, input scales, and the
    flatness margin on the dropout slope (error per unit scale; ours)."""

    runs: int
    iterations: int
    scales: tuple[float, ...] = (0.5, 0.75, 1.0, 1.25, 1.5)
    flat_margin: float = 0.1


@claim(
    "helmbold2017.dropout-scale-invariant-sgd",
    "helmbold2017",
    "On sign-parity data (K = 5, one hidden layer of 5 ReLUs, 10 examples), the training error "
    "reached by dropout (p = 1/2) is insensitive to the input scale (0.5 to 1.5), while that of "
    "weight decay (lam = 1/2) decreases with the scale (Section 6, Fig. 2). Insensitive: the "
    "mean slope of the dropout error per unit scale lies within +-0.1 (our margin, a quarter "
    "of the paper's weight-decay slope), both bounds decided at 2 s.e. over runs.",
    settings={"smoke": SignParitySettings(4, 5000), "quick": SignParitySettings(12, 100_000),
              "full": SignParitySettings(20, 100_000)},
    figure=figures.error_vs_scale,
)
def dropout_scale_invariant_sgd(ctx: ClaimContext) -> Outcome:
    s = ctx.settings
    ctx.progress.set_total(1.0)
    run = sign_parity_run(s.runs, s.iterations, s.scales, ctx.generator, progress=ctx.progress)
    err = np.array(run.error)  # (runs, scales, methods)
    drop, wd = run.slopes(0), run.slopes(1)
    stats = [[mean_and_stderr(err[:, i, m]) for m in range(3)] for i in range(len(s.scales))]
    drop_wd = mean_and_stderr(err[:, 0, 1] - err[:, -1, 1])
    ms = [
        measures.mean_of("dropout: slope of error per unit scale, >= -margin", drop,
                         expected=-s.flat_margin, kind="at_least", ours=True),
        measures.mean_of("dropout: slope of error per unit scale, <= +margin", drop,
                         expected=s.flat_margin, kind="at_most", ours=True),
        measures.mean_of("weight decay: slope of error per unit scale (< 0)", wd, expected=0.0,
                         kind="at_most"),
        Measurement("weight decay: error drop from the smallest to the largest scale",
                    drop_wd[0], kind="info", stderr=drop_wd[1], n=s.runs),
        Measurement("unregularised: worst mean training error over scales (paper < 0.05)",
                    max(st[2][0] for st in stats), kind="info"),
    ]
    for i, sc in enumerate(s.scales):
        for m, name in ((0, "dropout"), (1, "weight decay")):
            ms.append(Measurement(f"{name} error at scale {sc}", stats[i][m][0], kind="info",
                                  stderr=stats[i][m][1], n=s.runs))
    (sd, sd_se), (sw, sw_se) = mean_and_stderr(drop), mean_and_stderr(wd)
    return Outcome(
        measurements=ms,
        reason=f"Over {s.runs} runs the dropout error's slope is {sd:+.3f} +- {sd_se:.3f} s.e. "
        f"per unit scale (flat: within +-{s.flat_margin}, our margin, 2 s.e. band included) and "
        f"the weight-decay slope {sw:+.3f} +- {sw_se:.3f} (predicted < 0 at 2 s.e.).",
        notes="Assumptions (the paper leaves them open): training error is the square loss "
        "without dropout at the last iterate; one random example per SGD step; Torch7 momentum "
        "with dampening 0.5; weight decay also on biases (Torch7 weightDecay on the flat "
        "parameter vector). Each run draws its data with dropreg.data.sign_parity and one Torch "
        "default initialisation shared by its (scale, method) nets. Slopes are fitted per run; "
        f"their mean and s.e. are over {s.runs} runs (the paper averaged 10).",
        details={"scales": list(s.scales), "mean": [[st[m][0] for m in range(3)] for st in stats],
                 "stderr": [[st[m][1] for m in range(3)] for st in stats], "runs": s.runs,
                 "iterations": s.iterations, "slope_dropout": (sd, sd_se),
                 "slope_weight_decay": (sw, sw_se)},
    )


# ---------------------------------------------------------------------------------------------
# Theorem 7: weight decay is scale-sensitive


@dataclass(frozen=True)
class WeightDecaySettings:
    """Adam steps, starts per scale, input scales s (x = s (1, 1)) and lam."""

    steps: int
    starts: int
    scales: tuple[float, ...]
    lam: float = 0.25


@claim(
    "helmbold2017.weight-decay-scale-sensitive",
    "helmbold2017",
    "Weight decay is sensitive to the input scale (Theorem 7): for P_(x,1) and depth-2 ReLU nets "
    "the risk at the minimiser of J_2 is min(1/4, lam^2/(x.x)) and the minimum is "
    "lam/|x| - lam^2/(x.x); when 2 lam > |x| the optimum has all weights 0 and output bias 1/2. "
    "The optimisation tolerances (1e-6 relative on J_2, 1e-4 on the risk, 1e-3 on weights and "
    "bias) are ours.",
    settings={"smoke": WeightDecaySettings(800, 2, (0.5, 2.0)),
              "quick": WeightDecaySettings(800, 3, (0.5, 1.0, 2.0)),
              "full": WeightDecaySettings(4000, 6, (0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0))},
    figure=figures.aversion_vs_scale,
)
def weight_decay_scale_sensitive(ctx: ClaimContext) -> Outcome:
    s, g, lam = ctx.settings, ctx.generator, ctx.settings.lam
    ctx.progress.set_total(2)
    xs = [sc * torch.ones(2, dtype=torch.float64) for sc in s.scales]
    R, J, *_ = fit_weight_decay_batch(xs, lam, 4, s.starts, s.steps, g)
    ctx.progress.advance()
    rows = []
    for i, sc in enumerate(s.scales):
        nx = sc * math.sqrt(2.0)
        k = int(torch.argmin(J[i]))
        rows.append({"scale": sc, "J2_min": float(J[i, k]), "risk": float(R[i, k]),
                     "J2_pred": lam / nx - lam**2 / nx**2 if 2 * lam < nx else 0.25,
                     "risk_pred": min(0.25, lam**2 / nx**2)})
    # threshold: x = (1, 1), lam = 1 > |x| / 2: all weights 0, output bias 1/2
    R1, J1, W1, w, b = fit_weight_decay_batch([torch.ones(2, dtype=torch.float64)], 1.0, 4,
                                              s.starts, s.steps, g)
    k = int(torch.argmin(J1[0]))
    ctx.progress.advance()
    below = min(r["J2_min"] - r["J2_pred"] for r in rows)
    reason = (f"Not reproduced because a found J_2 lies {-below:.1e} below the closed-form "
              "global minimum of Theorem 7." if below < -1e-12 else
              f"Not reproduced at these settings: Adam ({s.steps} steps, best of {s.starts} "
              "starts) stops outside our optimisation tolerances (see the failing measurements), "
              f"while no found J_2 lies below the closed-form minimum (gap {below:.1e}): an "
              "optimisation limit, not evidence against Theorem 7.")
    return Outcome(
        measurements=[
            Measurement("max relative abs(min J_2 - (lam/norm(x) - lam^2/x.x))",
                        max(abs(r["J2_min"] - r["J2_pred"]) / r["J2_pred"] for r in rows),
                        expected=0.0, tolerance=1e-6, kind="at_most", ours=True),
            Measurement("max abs(risk at minimiser - lam^2/x.x)",
                        max(abs(r["risk"] - r["risk_pred"]) for r in rows), expected=0.0,
                        tolerance=1e-4, kind="at_most", ours=True),
            Measurement("min (found J_2 - global minimum) (cannot be < 0)", below, expected=0.0,
                        tolerance=1e-12, kind="at_least"),
            Measurement("threshold case (lam = 1, x = (1,1)): max abs(weight)",
                        float(max(W1[k].abs().max(), w[k].abs().max())), expected=0.0,
                        tolerance=1e-3, kind="at_most", ours=True),
            Measurement("threshold case: output bias", float(b[k]), expected=0.5, tolerance=1e-3,
                        ours=True),
            Measurement("threshold case: risk", float(R1[0, k]), expected=0.25, tolerance=1e-6,
                        ours=True),
        ],
        reason=reason,
        notes=f"Adam (lr 0.01, cosine schedule, {s.steps} steps) from {s.starts} Torch-default "
        "starts per scale; the best start is reported. The found minimum can only lie above the "
        "global one (third measurement). In the threshold case the weights shrink like "
        "lr-limited Adam noise, hence 1e-3.",
        details={"rows": rows, "starts": s.starts, "lam": lam},
    )
