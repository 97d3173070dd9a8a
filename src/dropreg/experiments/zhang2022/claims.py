"""Claims of Zhang, Zhou, Xu 2022: dropout finds flatter minima; its gradient noise is aligned
with the Hessian; the noise variance grows with curvature; inverse variance-flatness (Feng & Tu
2021); flatter 1-D loss profiles.

The paper's ``p`` is the KEEP probability; here ``p`` is the drop probability (``nn.Dropout``),
so the paper's ``p = 0.8`` is ``p = 0.2`` here. Every verdict that rests on trained nets is pooled
over independent replicates (inits, batch orders, masks) drawn from the claim's generator, with
a standard error or interval (:mod:`dropreg.experiments.measures`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from dropreg.curvature import (
    HessianOperator,
    dropout_gradient_noise,
    filter_normalized_direction,
    interval_flatness,
    last_layer_hessian,
    last_layer_noise_covariance,
    last_layer_terms,
    loss_profile,
    matrix_alignment,
    noise_alignment,
    null_alignment,
    spearman,
    stochastic_trace,
    top_eigenpairs,
    trajectory_pca,
)
from dropreg.experiments import measures
from dropreg.experiments.claims import Measurement, Outcome, claim
from dropreg.experiments.context import ClaimContext
from dropreg.experiments.zhang2022 import figures
from dropreg.experiments.zhang2022.runs import (
    Mnist1dSettings,
    RegressionSettings,
    WindowSettings,
    half_mse,
    integrated_autocorrelation_time,
    sgd_window,
    train_mnist1d_runs,
    train_regression,
)

# ------------------------------------------------------------------------------------------
# settings
# ------------------------------------------------------------------------------------------
SMOKE_REGRESSION = RegressionSettings(replicates=2, steps=600, width=40, lr=0.1,
                                      check_every=10)
QUICK_REGRESSION = RegressionSettings(replicates=3, steps=40000)
FULL_REGRESSION = RegressionSettings(replicates=6, drops=(0.0, 0.1, 0.2), steps=40000)


@dataclass(frozen=True)
class NoiseSettings:
    """Monte Carlo dropout-noise estimate at each converged dropout regression run."""

    regression: RegressionSettings
    draws: int = 1000
    top: int = 20
    #: directions with lambda_k >= relative * lambda_1 are "non-negligible" (ours)
    relative: float = 1e-4


SMOKE_NOISE = NoiseSettings(SMOKE_REGRESSION, draws=200, top=10)
QUICK_NOISE = NoiseSettings(QUICK_REGRESSION, draws=1000)
FULL_NOISE = NoiseSettings(FULL_REGRESSION, draws=4000)


@dataclass(frozen=True)
class SharpnessSettings:
    """Sharpness measurements of shared runs: Lanczos tolerance and Hutch++ budget."""

    runs: RegressionSettings | Mnist1dSettings
    lanczos_tol: float = 1e-3
    trace_matvecs: int = 60
    directions: int = 2


SMOKE_MNIST1D = Mnist1dSettings(replicates=2, n_train=200, width=32, max_epochs=40,
                                target_loss=0.8, batch=20)
QUICK_MNIST1D = Mnist1dSettings()
FULL_MNIST1D = Mnist1dSettings(replicates=6, n_train=4000, width=256, max_epochs=300)


@dataclass(frozen=True)
class LastLayerSettings:
    """Random 3-12-8-1 ReLU nets with an interpolating last layer, all 2^8 masks enumerated."""

    nets: int = 2
    drops: tuple[float, ...] = (0.1, 0.5)


@dataclass(frozen=True)
class VarianceFlatnessSettings:
    """Feng & Tu's protocol on MNIST-1D (plain SGD control, then dropout): ``top`` PCs."""

    window: WindowSettings = field(default_factory=WindowSettings)
    top: int = 20


# ------------------------------------------------------------------------------------------
# shared measurements
# ------------------------------------------------------------------------------------------
def _regression(ctx: ClaimContext, settings: RegressionSettings):
    return ctx.shared("zhang2022.regression", train_regression, settings)


def _mnist1d_runs(ctx: ClaimContext):
    """The shared MNIST-1D runs of the claim's settings: the first of its two progress steps."""
    ctx.progress.set_total(2)
    out = ctx.shared("zhang2022.mnist1d", train_mnist1d_runs, ctx.settings.runs)
    ctx.progress.advance()
    return out


def _regression_noise(ctx: ClaimContext) -> list[dict]:
    """Dropout noise vs the exact Hessian at every converged dropout regression run (the claim's
    one progress step)."""
    settings = ctx.settings
    ctx.progress.set_total(1)
    data, runs = _regression(ctx, settings.regression)

    def build(s: NoiseSettings, g: torch.Generator) -> list[dict]:
        rows = []
        for run in (r for r in runs if r.p > 0):
            H = HessianOperator(run.net, half_mse, data).to_dense()
            lam, V = torch.linalg.eigh(H)
            lam, V = lam.flip(0), V.flip(1)
            noise = dropout_gradient_noise(run.net, half_mse, data, s.draws, generator=g,
                                           chunk_size=250)
            al = noise_alignment(H, noise, k=s.top)
            pv = ((V.T @ noise.samples) ** 2).sum(1) / noise.dof
            keep = lam >= s.relative * lam[0]
            rows.append({"replicate": run.replicate, "p": run.p, "cos": al.cosine,
                         "cos_stderr": al.cosine_stderr, "null": al.null_cosine,
                         "spearman_top": al.spearman,
                         "spearman_top5": spearman(lam[:5], pv[:5]),
                         "eigenvalues": lam[keep].tolist(), "variances": pv[keep].tolist(),
                         "slope": _loglog_slope(lam[keep], pv[keep])})
        return rows

    rows = ctx.shared("zhang2022.regression-noise", build, settings)
    ctx.progress.advance()
    return rows


def _loglog_slope(x: torch.Tensor, y: torch.Tensor) -> float:
    lx, ly = x.double().log(), y.double().log()
    xc = lx - lx.mean()
    return float((xc * (ly - ly.mean())).sum() / (xc ** 2).sum())


def _sharpness(op: HessianOperator, s: SharpnessSettings, g: torch.Generator) -> dict:
    top = top_eigenpairs(op, 1, s.lanczos_tol, generator=g)
    tr = stochastic_trace(op, s.trace_matvecs, "hutch++", generator=g)
    return {"lambda_max": float(top.eigenvalues[0]), "trace": tr.estimate,
            "trace_se": tr.stderr, "loss": op.loss()}


def _paired_log_ratios(rows: list[dict], key: str) -> list[float]:
    """log(value(dropout) / value(plain)) per replicate (rows alternate plain, dropout)."""
    by = {(r["replicate"], r["p"] > 0): r for r in rows}
    reps = sorted({r["replicate"] for r in rows})
    return [math.log(by[(i, True)][key] / by[(i, False)][key]) for i in reps]


# ------------------------------------------------------------------------------------------
# claims
# ------------------------------------------------------------------------------------------
@claim(
    "zhang2022.flatter-minima-1d-regression",
    "zhang2022",
    "Dropout training finds flatter solutions than plain GD (Zhang et al. 2022, Sec. 4, 1-D "
    "regression): compared at the same clean training loss (each run captured when it first "
    "reaches a common target, ours), the largest Hessian eigenvalue and the trace of the "
    "training-loss Hessian are smaller with dropout: mean log ratio over replicates < 0.",
    figure=figures.flatter_minima_1d,
    settings={"smoke": SharpnessSettings(SMOKE_REGRESSION),
              "quick": SharpnessSettings(QUICK_REGRESSION),
              "full": SharpnessSettings(FULL_REGRESSION)},
    shares=("zhang2022.regression",),
)
def flatter_minima_1d(ctx: ClaimContext) -> Outcome:
    s = ctx.settings
    ctx.progress.set_total(2)
    data, runs = _regression(ctx, s.runs)
    ctx.progress.advance()
    drop = [r for r in runs if r.p > 0]
    missing = [(r.replicate, r.p) for r in drop if r.matched is None]
    if missing:
        return Outcome([Measurement("dropout runs without a matched plain run", len(missing),
                                    kind="info")],
                       inconclusive_reason=f"plain GD never reached the final loss of dropout "
                                           f"runs {missing} in {s.runs.steps} steps")
    rows = []
    for r in drop:
        Hd = HessianOperator(r.net, half_mse, data).to_dense()
        Hg = HessianOperator(r.matched, half_mse, data).to_dense()
        rows.append({"replicate": r.replicate, "p": r.p, "loss": r.loss,
                     "lambda_max": float(torch.linalg.eigvalsh(Hd)[-1]),
                     "trace": float(torch.trace(Hd)), "gd_step": r.matched_step,
                     "gd_loss": r.matched_loss, "gd_lambda_max": float(torch.linalg.eigvalsh(
                         Hg)[-1]), "gd_trace": float(torch.trace(Hg))})
    ctx.progress.advance()
    p = max(s.runs.drops)
    pair = [r for r in rows if r["p"] == p]
    logr = {k: [math.log(r[k] / r["gd_" + k]) for r in pair] for k in ("lambda_max", "trace")}
    return Outcome(
        measurements=[
            measures.mean_of(f"mean log(lambda_max(p = {p}) / lambda_max(GD)) at matched loss",
                             logr["lambda_max"], expected=0.0, kind="at_most"),
            measures.mean_of(f"mean log(tr H(p = {p}) / tr H(GD)) at matched loss",
                             logr["trace"], expected=0.0, kind="at_most"),
        ],
        notes=f"Each dropout run after {s.runs.steps} steps against the plain-GD run of the same "
              "init at the first step (checked every "
              f"{s.runs.check_every}) where its clean loss is at most the dropout run's; exact "
              "Hessians (dense, from HVPs).",
        details={"rows": rows, "steps": s.runs.steps},
    )


@claim(
    "zhang2022.noise-hessian-alignment",
    "zhang2022",
    "At the solutions found by dropout, the covariance of the dropout gradient noise aligns "
    "with the Hessian (Zhang et al. 2022, Sec. 5): cos(H, Sigma) > 0.7 (ours) in every run, far "
    "above the value for a matrix with Sigma's spectrum and random eigenvectors (< 0.1, ours).",
    figure=figures.noise_hessian_alignment,
    settings={"smoke": SMOKE_NOISE, "quick": QUICK_NOISE, "full": FULL_NOISE},
    shares=("zhang2022.regression", "zhang2022.regression-noise"),
)
def noise_hessian_alignment(ctx: ClaimContext) -> Outcome:
    rows = _regression_noise(ctx)
    worst = min(rows, key=lambda r: r["cos"])
    return Outcome(
        measurements=[
            Measurement("min over runs of cos(H, Sigma)", worst["cos"], expected=0.7,
                        kind="at_least", stderr=worst["cos_stderr"], ours=True),
            Measurement("max over runs of the null cosine", max(r["null"] for r in rows),
                        expected=0.1, kind="at_most", ours=True),
        ],
        details={"runs": [{k: r[k] for k in ("replicate", "p", "cos", "cos_stderr", "null")}
                          for r in rows], "draws": ctx.settings.draws},
    )


@claim(
    "zhang2022.variance-grows-with-curvature",
    "zhang2022",
    "The variance of the dropout noise is larger along sharper directions (Zhang et al. 2022, "
    "Sec. 5): the log-log slope of v_k^T Sigma v_k against lambda_k over the non-negligible "
    "Hessian directions (lambda_k >= 1e-4 lambda_1, ours) is positive, pooled over replicates.",
    settings={"smoke": SMOKE_NOISE, "quick": QUICK_NOISE, "full": FULL_NOISE},
    figure=figures.variance_grows_with_curvature,
    shares=("zhang2022.regression", "zhang2022.regression-noise"),
)
def variance_grows_with_curvature(ctx: ClaimContext) -> Outcome:
    rows = _regression_noise(ctx)
    slope = measures.mean_of("mean over runs of the log-log slope of v_k^T Sigma v_k on "
                             "lambda_k", [r["slope"] for r in rows], expected=0.0,
                             kind="at_least")
    n_dirs = [len(r["eigenvalues"]) for r in rows]
    return Outcome(
        measurements=[
            slope,
            Measurement("non-negligible directions per run (min)", min(n_dirs), kind="info"),
            Measurement(f"mean Spearman(lambda_k, v_k^T Sigma v_k), top {ctx.settings.top}",
                        sum(r["spearman_top"] for r in rows) / len(rows), kind="info"),
            Measurement("mean Spearman, top 5 directions",
                        sum(r["spearman_top5"] for r in rows) / len(rows), kind="info"),
        ],
        notes="Ranks beyond the top ~5 directions fall in a near-degenerate cluster of "
              "eigenvalues whose eigenvectors are arbitrary, so the rank correlations are "
              "reported, not judged; the slope uses every non-negligible direction.",
        details={"runs": rows, "draws": ctx.settings.draws},
    )


#: The control must show Feng & Tu's inverse relation at least this strongly (mean Spearman over
#: replicates, whole band below it; our bar): their relation is a near power law, and a control
#: at -0.1 says the window cannot resolve it, not that plain SGD lacks it.
CONTROL_BAR: float = -0.5


def _window_relation(w, data, layer: str, k: int) -> dict:
    """Feng & Tu's measurement on one window: PCA of the layer's snapshots with the drift
    component (PC1, the direction the window still travels along) excluded, interval flatness
    of the full training loss along PCs 2..k+1, autocorrelation times of their projections."""
    S = w.snapshots
    mean, V, var = trajectory_pca(S, k + 1)
    t = torch.arange(S.shape[0], dtype=torch.float64)
    pc1 = (S - mean) @ V[:, 0]
    trend = float(torch.corrcoef(torch.stack([t, pc1]))[0, 1] ** 2)
    V, var = V[:, 1:], var[1:]
    op = HessianOperator(w.net, nn.functional.cross_entropy, data, params=[layer])
    F = torch.tensor([interval_flatness(op, V[:, i], center=mean).width for i in range(k)],
                     dtype=torch.float64)
    proj = (S - mean) @ V
    taus = [integrated_autocorrelation_time(proj[:, i]) for i in range(k)]
    return {"replicate": w.replicate, "p": w.p, "zero_error_epoch": w.zero_error_epoch,
            "variances": var.tolist(), "flatness": F.tolist(), "spearman": spearman(var, F),
            "tau_max": max(taus), "n_eff_min": S.shape[0] / max(taus),
            "pc1_trend_r2": trend, "pc1_share": float(((S - mean) ** 2).sum() ** -1 *
                                                       pc1.pow(2).sum())}


@claim(
    "zhang2022.inverse-variance-flatness",
    "zhang2022",
    "The inverse variance-flatness relation of Feng & Tu 2021 holds for dropout (Zhang et al. "
    "2022, Sec. 5): along the principal components of one hidden layer's weights over a window "
    "that starts a burn-in after the training error is zero (the drift component PC1 excluded, "
    "Feng & Tu's protocol), "
    "the variance falls with the interval flatness of the training loss, mean Spearman < 0 "
    "over replicates; judged only if plain minibatch SGD (the control) shows the relation in "
    "the same measurement as strongly as Feng & Tu report it: mean Spearman below "
    f"{CONTROL_BAR} (our bar), its whole 2 s.e. band.",
    settings={"smoke": VarianceFlatnessSettings(WindowSettings(
                  replicates=2, n_train=100, width=16, batch=20, max_epochs=80, window=100,
                  every=5, drops=(0.0, 0.1), burn_in=100), top=4),
              "quick": VarianceFlatnessSettings(),
              "full": VarianceFlatnessSettings(WindowSettings(replicates=8))},
    figure=figures.inverse_variance_flatness,
    shares=("zhang2022.sgd-window",),
)
def inverse_variance_flatness(ctx: ClaimContext) -> Outcome:
    s = ctx.settings
    ctx.progress.set_total(2)
    data, wins = ctx.shared("zhang2022.sgd-window", sgd_window, s.window)
    ctx.progress.advance()
    rows = [_window_relation(w, data, s.window.layer, s.top) for w in wins
            if w.zero_error_epoch is not None]
    ctx.progress.advance()
    ctl = [r["spearman"] for r in rows if r["p"] == 0.0]
    drp = [r["spearman"] for r in rows if r["p"] > 0.0]
    if len(ctl) < 2 or len(drp) < 2:
        return Outcome([Measurement("windows reaching zero training error", len(rows),
                                    kind="info"),
                        Measurement("mean final training error", sum(w.train_error for w in wins)
                                    / len(wins), kind="info")],
                       inconclusive_reason="fewer than 2 runs per arm reached zero training "
                                           f"error in {s.window.max_epochs} epochs")
    control = measures.mean_of("control (plain SGD): mean Spearman(sigma_i^2, F_i)", ctl,
                               expected=CONTROL_BAR, kind="at_most", ours=True)
    dropout = measures.mean_of(f"dropout p = {max(s.window.drops)}: mean Spearman(sigma_i^2, "
                               "F_i)", drp, expected=0.0, kind="at_most")
    ok = control.status == "pass"
    stat = [Measurement("min R^2 of PC1 on a linear trend (PC1 is the drift)",
                        min(r["pc1_trend_r2"] for r in rows), kind="info"),
            Measurement("max autocorrelation time of the PC projections (snapshots)",
                        max(r["tau_max"] for r in rows), kind="info"),
            Measurement("min effective samples in a window", min(r["n_eff_min"] for r in rows),
                        kind="info")]
    band = lambda m: f"{m.value:+.2f} [{m.band[0]:+.2f}, {m.band[1]:+.2f}]"  # noqa: E731
    return Outcome(
        measurements=([control, dropout] if ok else
                      [Measurement(control.name, control.value, kind="info",
                                   stderr=control.stderr, n=control.n),
                       Measurement(dropout.name, dropout.value, kind="info",
                                   stderr=dropout.stderr, n=dropout.n)]) + stat,
        inconclusive_reason=None if ok else
        f"the plain-SGD control does not show the relation as strongly as Feng & Tu report "
        f"it ({band(control)}, our bar {CONTROL_BAR}), so this measurement cannot see the effect "
        f"(dropout, not judged: {band(dropout)})",
        reason=None if not ok or dropout.status == "pass" else
        f"Not reproduced because the dropout nets' mean Spearman is {band(dropout)} while the "
        f"plain-SGD control gives {band(control)}.",
        details={"runs": rows, "window": s.window.window, "every": s.window.every,
                 "burn_in": s.window.burn_in},
    )


def _interpolating_net(generator: torch.Generator) -> tuple[nn.Module, torch.Tensor,
                                                            torch.Tensor]:
    net = nn.Sequential(nn.Linear(3, 12), nn.ReLU(), nn.Linear(12, 8), nn.ReLU(),
                        nn.Dropout(0.1), nn.Linear(8, 1)).double()
    with torch.no_grad():
        for layer in (net[0], net[2], net[5]):
            bound = 1.0 / math.sqrt(layer.in_features)
            layer.weight.uniform_(-bound, bound, generator=generator)
            layer.bias.uniform_(-bound, bound, generator=generator)
    X = torch.randn(5, 3, generator=generator, dtype=torch.float64)
    y = torch.randn(5, 1, generator=generator, dtype=torch.float64)
    with torch.no_grad():
        net[0].bias.add_(0.5)
        net[2].bias.add_(1.0)
        net[5].weight.copy_((torch.linalg.pinv(net[:4](X)) @ y).T)
        net[5].bias.zero_()
    return net, X, y


def _enumerated_covariance(net, X, y, p: float) -> torch.Tensor:
    """Exact dropout-noise covariance at the last hidden layer by enumerating all 2^8 masks."""
    import itertools

    from dropreg.curvature import dropout_gradients
    from dropreg.sites import DropoutMasks

    masks, probs = [], []
    for bits in itertools.product((0.0, 1.0), repeat=8):
        z = torch.tensor(bits, dtype=torch.float64)
        masks.append(DropoutMasks({"4": (z / (1 - p))[None]}, per_example=False))
        probs.append((1 - p) ** float(z.sum()) * p ** float(8 - z.sum()))
    net[4].p = p
    G = dropout_gradients(net, half_mse, (X, y), masks, chunk_size=256)
    w = torch.tensor(probs, dtype=torch.float64)
    mean = G @ w
    return (G * w) @ G.T - torch.outer(mean, mean)


@claim(
    "zhang2022.last-layer-noise-structure",
    "zhang2022",
    "For dropout at the last hidden layer and squared loss at an interpolating point, the "
    "Hessian is (1/n) sum_i J_i J_i^T and the dropout-noise covariance has a closed form built "
    "from the same Jacobians (Zhang et al. 2022, Sec. 5); the two are highly aligned "
    "(cos > 0.6, ours).",
    settings={"smoke": LastLayerSettings(nets=1, drops=(0.5,)), "quick": LastLayerSettings(),
              "full": LastLayerSettings(nets=4)},
    figure=figures.last_layer_noise_structure,
)
def last_layer_noise_structure(ctx: ClaimContext) -> Outcome:
    s = ctx.settings
    ctx.progress.set_total(s.nets * len(s.drops))
    rows = []
    for i in range(s.nets):
        net, X, y = _interpolating_net(ctx.generator)
        a, J, A = last_layer_terms(net, X, head="5")
        H = last_layer_hessian(J)
        for p in s.drops:
            S_enum = _enumerated_covariance(net, X, y, p)
            S_form = last_layer_noise_covariance(a, J, A, p, per_example=False)
            S_pe = last_layer_noise_covariance(a, J, A, p, per_example=True)
            rows.append({"net": i, "p": p,
                         "rel_err": float((S_form - S_enum).norm() / S_enum.norm()),
                         "cos_shared": matrix_alignment(H, S_form),
                         "cos_per_example": matrix_alignment(H, S_pe),
                         "null_per_example": null_alignment(H, S_pe)})
            ctx.progress.advance()
    return Outcome(
        measurements=[
            Measurement("max relative error, closed-form Sigma vs enumeration",
                        max(r["rel_err"] for r in rows), expected=0.0, tolerance=1e-10,
                        kind="at_most"),
            Measurement("min cos(H, Sigma)", min(min(r["cos_shared"], r["cos_per_example"])
                                                 for r in rows), expected=0.6,
                        kind="at_least", ours=True),
            Measurement("max null cosine", max(r["null_per_example"] for r in rows),
                        expected=0.1, kind="at_most", ours=True),
        ],
        details={"rows": rows},
    )


@claim(
    "zhang2022.flatter-minima-mnist1d",
    "zhang2022",
    "An MLP trained with dropout on MNIST-1D is flatter than without (Zhang et al. 2022, "
    "Sec. 4): compared at the same clean training loss (each run stopped when it reaches a "
    "common target, ours), the largest Hessian eigenvalue and the trace of the training-loss "
    "Hessian are smaller with dropout: mean log ratio over replicates < 0.",
    settings={"smoke": SharpnessSettings(SMOKE_MNIST1D, lanczos_tol=1e-2, trace_matvecs=12),
              "quick": SharpnessSettings(QUICK_MNIST1D),
              "full": SharpnessSettings(FULL_MNIST1D)},
    figure=figures.flatter_minima_mnist1d,
    shares=("zhang2022.mnist1d",),
)
def flatter_minima_mnist1d(ctx: ClaimContext) -> Outcome:
    s = ctx.settings
    (X, y, _, _), runs = _mnist1d_runs(ctx)
    rows = [{"replicate": r.replicate, "p": r.p, "epochs": r.epochs, "reached": r.reached,
             **_sharpness(HessianOperator(r.net, nn.functional.cross_entropy, (X, y)), s,
                          ctx.generator)} for r in runs]
    ctx.progress.advance()
    missing = [(r["replicate"], r["p"]) for r in rows if not r["reached"]]
    return Outcome(
        measurements=[
            measures.mean_of("mean log(lambda_max(dropout) / lambda_max(none)) at matched "
                             "loss", _paired_log_ratios(rows, "lambda_max"), expected=0.0,
                             kind="at_most"),
            measures.mean_of("mean log(tr H(dropout) / tr H(none)) at matched loss",
                             _paired_log_ratios(rows, "trace"), expected=0.0, kind="at_most"),
        ],
        inconclusive_reason=f"runs {missing} never reached the target loss "
                            f"{s.runs.target_loss}" if missing else None,
        notes=f"Target clean training cross-entropy {s.runs.target_loss}; lambda_max by Lanczos "
              f"(tol {s.lanczos_tol}), trace by Hutch++ ({s.trace_matvecs} HVPs).",
        details={"rows": rows, "target": s.runs.target_loss, "width": s.runs.width,
                 "n_train": s.runs.n_train},
    )


@claim(
    "zhang2022.loss-profile-mnist1d",
    "zhang2022",
    "1-D loss landscapes along filter-normalised random directions (Zhang et al. 2022, Sec. 4, "
    "on MNIST-1D, nets compared at the same clean training loss): the dropout solution's "
    "training loss rises less (mean log ratio of the rises < 0), and its test accuracy is not "
    "lower by more than 1 point (ours).",
    settings={"smoke": SharpnessSettings(SMOKE_MNIST1D), "quick": SharpnessSettings(QUICK_MNIST1D),
              "full": SharpnessSettings(FULL_MNIST1D, directions=4)},
    figure=figures.loss_profile_mnist1d,
    shares=("zhang2022.mnist1d",),
)
def loss_profile_mnist1d(ctx: ClaimContext) -> Outcome:
    s = ctx.settings
    (X, y, Xt, yt), runs = _mnist1d_runs(ctx)
    alphas = torch.linspace(-1, 1, 41)
    rows = []
    for r in runs:
        op = HessianOperator(r.net, nn.functional.cross_entropy, (X, y))
        prof = torch.stack([loss_profile(op, filter_normalized_direction(
            r.net, generator=ctx.generator), alphas) for _ in range(s.directions)]).mean(0)
        with torch.no_grad():
            acc = float((r.net(Xt).argmax(1) == yt).double().mean())
        rows.append({"replicate": r.replicate, "p": r.p, "profile": prof.tolist(),
                     "rise": float((prof - prof[20]).mean()), "test_acc": acc})
    ctx.progress.advance()
    dacc = [100 * (b["test_acc"] - a["test_acc"]) for a, b in zip(rows[::2], rows[1::2])]
    return Outcome(
        measurements=[
            measures.mean_of("mean log(profile rise(dropout) / rise(none))",
                             _paired_log_ratios(rows, "rise"), expected=0.0, kind="at_most"),
            measures.mean_of("test accuracy, dropout minus none", dacc, expected=0.0,
                             tolerance=1.0, kind="at_least", unit="%", ours=True),
        ],
        notes="Profile rise = mean over alpha in [-1, 1] of R_S(theta* + alpha d) - R_S(theta*), "
              f"averaged over {s.directions} filter-normalised directions.",
        details={"rows": rows, "alphas": alphas.tolist(), "width": s.runs.width},
    )

