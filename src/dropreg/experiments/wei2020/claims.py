"""Claims of Wei, Kakade, Ma 2020 (checks of Sec. 2-5): measure with :mod:`.runs`, judge, and
return an Outcome whose ``details`` feed the drawers of :mod:`.figures`."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from dropreg._random import mean_and_stderr
from dropreg.analytic import MLP, flatten, xi_drop_tilde
from dropreg.analytic.rules import dropout, dropout_with_noise
from dropreg.experiments.claims import Measurement, Outcome, claim
from dropreg.experiments.context import ClaimContext
from dropreg.experiments.measures import sign_of_difference
from dropreg.experiments.wei2020 import figures
from dropreg.experiments.wei2020.runs import (
    TrainingSettings,
    compare_training,
    explicit_vs_gap,
    lstm_testbed,
    mnist1d,
    mnist1d_testbed,
    rule_gradients,
    seeded_model,
    small_q_limit_by_width,
    trace_cov,
    training_outcome,
    training_rules,
    xi_covariance_comparison,
)


@dataclass(frozen=True)
class GapSettings:
    """Drop probabilities, training and Monte-Carlo sizes of the coefficient check."""

    qs: tuple[float, ...]
    n_train: int
    epochs: int
    n_eval: int
    n_masks: int
    confident_epochs: int
    trained: tuple[tuple[float, int], ...] = ()
    hidden: int = 50


@claim(
    "wei2020.explicit-regularizer-matches-dropout-gap",
    "wei2020",
    "The explicit regularizer of dropout, E_eta l(F(x, eta)) - l(F(x)), is approximated by "
    "R_approx = q/(2(1-q)) sum_i <diag(J^T H_out J), h_i^2> (eqs. 4.2-4.4); on networks trained "
    "with dropout the Monte-Carlo gap is fitted by R_approx times a multiplier closer to 1 (the "
    "derivation's q/(2(1-q))) than to 2 (q/(1-q)), also on nets trained longer with dropout "
    "(q = 0.4, up to 40 epochs); the band 1 +- 0.5 is ours.",
    settings={"smoke": GapSettings((0.1, 0.4), 200, 1, 16, 100, 1, ((0.4, 2),)),
              "quick": GapSettings((0.05, 0.1, 0.2, 0.4), 1000, 8, 64, 1000, 20, ((0.4, 40),)),
              "full": GapSettings((0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5), 2000, 20, 256, 8000,
                                  60, ((0.4, 5), (0.4, 20), (0.4, 40)))},
    figure=figures.coefficient,
)
def explicit_matches_gap(ctx: ClaimContext) -> Outcome:
    s = ctx.settings
    ctx.progress.set_total(2 * len(s.qs) + len(s.trained))
    rows = explicit_vs_gap(s.qs, hidden=s.hidden, n_train=s.n_train, epochs=s.epochs,
                           n_eval=s.n_eval, n_masks=s.n_masks,
                           confident_epochs=s.confident_epochs, trained=s.trained,
                           generator=ctx.generator, progress=ctx.progress)
    ms = []
    for r in rows:
        tag, judged = r["regime"], r["regime"].startswith("dropout-trained")
        ms.append(Measurement(
            f"{tag}, q={r['q']}: multiplier mean gap / mean R_approx", r["mult"], expected=1.0,
            tolerance=0.5, stderr=r["mult_se"], kind="close" if judged else "info", ours=True))
        ms.append(Measurement(f"{tag}, q={r['q']}: per-example least-squares multiplier k*",
                              r["kstar"], kind="info", stderr=r["kstar_se"]))
        ms.append(Measurement(f"{tag}, q={r['q']}: per-example Pearson correlation", r["corr"],
                              kind="info"))
        ms.append(Measurement(f"{tag}, q={r['q']}: mean max softmax probability", r["maxprob"],
                              kind="info"))
    return Outcome(
        measurements=ms, details={"rows": rows},
        notes=("Judged: mean gap / mean R_approx within 0.5 of 1 (our band), i.e. closer to the "
               "Taylor constant q/(2(1-q)) than to q/(1-q), on nets trained with dropout at the "
               "same q (8 epochs), and on nets trained longer with dropout (up to 40 epochs at "
               "q = 0.4, so that they are not barely trained: see their mean max softmax "
               "probability). The confidently trained net without dropout is reported, not judged: "
               "there higher-order terms (footnote 4 of the paper) make the true gap larger "
               "than the second-order term."))


@dataclass(frozen=True)
class NoiseSettings:
    """Drop probabilities, examples and dropout-gradient samples of the noise check; hidden
    widths and examples of the width arm (exact small-q limits only)."""

    qs: tuple[float, ...]
    n_examples: int
    n_masks: int
    widths: tuple[int, ...]
    width_examples: int


@claim(
    "wei2020.xi-approx-matches-dropout-noise",
    "wei2020",
    "At small drop probability the analytic update noise xi_approx (eq. 4.6, Rademacher signs "
    "scaled by sqrt(q/(1-q))) has nearly the covariance of dropout's gradient noise xi_drop: "
    "at q = 0.05 each example's trace ratio tr Cov(xi_approx) / tr Cov(xi_drop) equals its exact "
    "q -> 0 limit (one-unit deletions) within 5% pooled over examples, cosine >= 0.9; cosine "
    ">= 0.8 at q = 0.4 (all thresholds ours). That limit is below 1 on confident examples and "
    "approaches 1 as the net widens: the mean distance |1 - limit| over the same examples is "
    "smaller at the largest width than at the smallest (paired, 2 s.e.).",
    settings={"smoke": NoiseSettings((0.05, 0.4), 2, 60, (8, 16), 2),
              "quick": NoiseSettings((0.05, 0.4), 16, 400, (25, 50, 100), 16),
              "full": NoiseSettings((0.05, 0.1, 0.2, 0.4), 32, 2000, (25, 50, 100, 200),
                                    32)},
    figure=figures.noise_covariance,
)
def xi_approx_matches(ctx: ClaimContext) -> Outcome:
    s = ctx.settings
    ctx.progress.set_total(len(s.qs) * s.n_examples + len(s.widths))
    rows = xi_covariance_comparison(s.qs, n_examples=s.n_examples, n_masks=s.n_masks,
                                    generator=ctx.generator, progress=ctx.progress)
    wide = small_q_limit_by_width(s.widths, n_examples=s.width_examples, generator=ctx.generator,
                                  progress=ctx.progress)
    small = [r for r in rows if r["q"] == min(s.qs)]
    rel = [r["trace_ratio"] / r["limit_ratio"] for r in small]
    m, se = mean_and_stderr(rel)
    ms = [Measurement(f"q={min(s.qs)}: trace ratio / its exact small-q limit, mean over "
                      f"{len(rel)} examples", m, expected=1.0, tolerance=0.05, tolerance_z=2,
                      stderr=se, n=len(rel), ours=True),
          Measurement("exact small-q limit of the trace ratio, smallest example", min(
              r["limit_ratio"] for r in small), kind="info"), *_width_arm(wide)]
    for r in rows:
        tag = f"q={r['q']}, example {r['example']}"
        ms.append(Measurement(f"{tag}: trace ratio (exact small-q limit "
                              f"{r['limit_ratio']:.3f})", r["trace_ratio"], kind="info",
                              stderr=r["trace_ratio_se"]))
        bound = {0.05: 0.9, 0.4: 0.8}.get(r["q"])
        ms.append(Measurement(f"{tag}: cosine of the covariances", r["cosine"],
                              expected=bound, kind="at_least" if bound else "info",
                              ours=bound is not None))
    return Outcome(measurements=ms, details={"rows": rows, "widths": wide},
                   notes="Cov(xi_approx) exact (A^T A); Cov(xi_drop) from sampled dropout "
                         "gradients. Limitation: as q -> 0 every noise moment is of order q and "
                         "Cov(xi_drop) is dominated by deleting one unit at a time, while "
                         "xi_approx is the linearisation of each deletion; the exact limit of "
                         "the trace ratio (dropreg.analytic.small_q) is below 1 on confident "
                         "examples and rises toward 1 with width (the width arm: the same "
                         "examples on nets of each width, limits computed, not sampled), so the "
                         "ratio is judged against that limit, not against 1. The 5% band (plus "
                         "2 s.e.) and cosine bounds are ours.")


def _width_arm(wide: list[dict]) -> list[Measurement]:
    """The width arm: per example, |1 - limit| at the smallest width minus at the largest
    (predicted > 0), and the mean limit per width."""
    widths = sorted({r["hidden"] for r in wide})
    at = {w: {r["example"]: r["limit_ratio"] for r in wide if r["hidden"] == w} for w in widths}
    lo, hi = at[widths[0]], at[widths[-1]]
    ms = [sign_of_difference(f"|1 - small-q limit| at hidden {widths[0]} minus at hidden "
                             f"{widths[-1]}, paired over examples",
                             [abs(1 - lo[i]) - abs(1 - hi[i]) for i in sorted(lo)],
                             predicted="positive")]
    for w in widths:
        m, se = mean_and_stderr(list(at[w].values()))
        ms.append(Measurement(f"hidden {w}: exact small-q limit of the trace ratio, mean over "
                              f"{len(at[w])} examples", m, stderr=se, kind="info"))
        ms.append(Measurement(f"hidden {w}: smallest exact small-q limit over examples",
                              min(at[w].values()), kind="info"))
    return ms


@dataclass(frozen=True)
class DropoutKSettings:
    """Values of k and gradient draws per k."""

    ks: tuple[int, ...]
    n: int


@claim(
    "wei2020.dropout-k-noise-scales-as-1-over-k",
    "wei2020",
    "Dropout_k (k dropout samples averaged per minibatch) has the gradient-noise covariance of "
    "dropout divided by k; xi~_drop = (two dropout gradients' difference)/sqrt 2 has exactly "
    "dropout's covariance, so Dropout_k + sqrt(1-1/k) xi~_drop restores it (Sec. 3, 3.1).",
    settings={"smoke": DropoutKSettings((1, 4), 20), "quick": DropoutKSettings((1, 4, 16), 150),
              "full": DropoutKSettings((1, 2, 4, 8, 16, 32), 600)},
    figure=figures.dropout_k,
)
def dropout_k_scaling(ctx: ClaimContext) -> Outcome:
    s, g = ctx.settings, ctx.generator
    X, y, _, _ = mnist1d(64)
    net = seeded_model(lambda: MLP(40, 64, 10, p=0.4, depth=2), g)
    x, t = X[:32], y[:32]
    ctx.progress.set_total(len(s.ks) + 2)
    traces = {}
    for k in s.ks:
        traces[k] = trace_cov(rule_gradients(net, dropout(k), x, t, s.n, g))
        ctx.progress.advance()
    tr1, se1 = traces[1]

    def ratio(name: str, tr: float, se: float, scale: float = 1.0) -> Measurement:
        val = scale * tr / tr1
        err = val * math.sqrt((se / tr) ** 2 + (se1 / tr1) ** 2)
        return Measurement(name, val, expected=1.0, stderr=err, tolerance_z=5)

    ms = [ratio(f"k={k}: k tr Cov(Dropout_k) / tr Cov(Dropout_1)", *traces[k], scale=k)
          for k in s.ks[1:]]
    sq = torch.stack([flatten(xi_drop_tilde(net, x, t, generator=g)) for _ in range(s.n)])
    ms.append(ratio("tr Cov(xi~_drop) / tr Cov(Dropout_1)", *mean_and_stderr((sq**2).sum(1))))
    kk = s.ks[-1]
    trf, sef = trace_cov(rule_gradients(net, dropout_with_noise(kk, "xi_tilde"), x, t, s.n, g))
    ms.append(ratio(f"tr Cov(Dropout_{kk} + sqrt(1-1/k) xi~) / tr Cov(Dropout_1)", trf, sef))
    ctx.progress.advance(2)
    return Outcome(measurements=ms, details={
        "traces": {str(k): list(v) for k, v in traces.items()}, "topped_up": [kk, trf, sef],
        "n": s.n})


_T10 = (
    "Dropout's effect splits into explicit and implicit parts (Sec. 5): no dropout is worse than "
    "Dropout_1; Dropout_k gets worse as k grows; adding sqrt(1-1/k) xi~_drop or xi_approx to "
    "Dropout_k recovers Dropout_1; R_approx alone sits between Dropout_k and Dropout_1; "
    "R_approx + xi_approx without dropout matches Dropout_1 ('matches': within 2 s.e., ours); "
    "replacing H_out by I/C is worse (reported only: not testable with 10 classes). "
)


def _training(ctx: ClaimContext, bed_fn) -> Outcome:
    s = ctx.settings
    bed, rules = bed_fn(s), training_rules(s)
    ctx.progress.set_total(len(rules) * s.seeds)
    results = compare_training(bed_fn, s, ctx.generator, ctx.pieces)
    return training_outcome(bed, results, rules)


@claim("wei2020.training-lstm-pydoc", "wei2020", _T10 + "Test bed: word LSTM on pydoc topics.",
       settings={"smoke": TrainingSettings(8, 8, 8, 1, 2, k=2, embedding=8),
                 "quick": TrainingSettings(200, 100, 64, 6, 1),
                 "full": TrainingSettings(2000, 1000, 64, 40, 10)},
       figure=figures.training)
def training_lstm(ctx: ClaimContext) -> Outcome:
    return _training(ctx, lstm_testbed)


@claim("wei2020.training-mlp-mnist1d", "wei2020", _T10 + "Test bed: MLP on MNIST-1D.",
       settings={"smoke": TrainingSettings(64, 64, 16, 1, 2, k=2),
                 "quick": TrainingSettings(500, 500, 128, 12, 1),
                 "full": TrainingSettings(1000, 1000, 256, 40, 20, loss_jacobian=True)},
       figure=figures.training)
def training_mlp(ctx: ClaimContext) -> Outcome:
    return _training(ctx, mnist1d_testbed)
