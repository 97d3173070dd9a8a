"""Figures of the Zhang, Zhou, Xu 2022 claims, drawn from stored ``details`` only."""

from __future__ import annotations

import math
from typing import Any

from dropreg.experiments._common import pyplot
from dropreg.experiments.claims import Figure


def _paired_bars(rows: list[dict], keys: tuple[tuple[str, str], ...], title: str,
                 unit: str) -> Any:
    plt = pyplot()
    fig, axes = plt.subplots(1, len(keys), figsize=(5 * len(keys), 4))
    axes = [axes] if len(keys) == 1 else list(axes)
    reps = sorted({r["replicate"] for r in rows})
    drops = sorted({r["p"] for r in rows})
    by = {(r["replicate"], r["p"]): r for r in rows}
    width = 0.8 / len(drops)
    for ax, (key, label) in zip(axes, keys):
        for j, p in enumerate(drops):
            ax.bar([i + j * width for i in range(len(reps))], [by[(i, p)][key] for i in reps],
                   width, label=f"measured, dropout p = {p}" if p else "measured, no dropout")
        ax.scatter([i + width for i in range(len(reps))], [by[(i, 0.0)][key] for i in reps],
                   marker="_", s=300, color="k", zorder=3, label="prediction: dropout below")
        ax.set_xticks(range(len(reps)), [f"replicate {i}" for i in reps])
        ax.set_ylabel(f"{label} of the training-loss Hessian\n({unit})")
        ax.set_ylim(top=ax.get_ylim()[1] * 1.3)
        ax.legend(fontsize=7)
    axes[0].set_title(title)
    fig.tight_layout()
    return fig


def _mean_log_ratio(rows: list[dict], key: str) -> float:
    by = {(r["replicate"], r["p"] > 0): r for r in rows}
    reps = sorted({r["replicate"] for r in rows})
    return sum(math.log(by[(i, True)][key] / by[(i, False)][key]) for i in reps) / len(reps)


def flatter_minima_1d(details: dict[str, Any]) -> list[Figure]:
    """lambda_max and trace of each dropout run and of plain GD at the same clean loss."""
    rows = details["rows"]
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    xs = range(len(rows))
    for ax, key, label in ((axes[0], "lambda_max", "largest eigenvalue"),
                           (axes[1], "trace", "trace")):
        ax.bar([x - 0.2 for x in xs], [r["gd_" + key] for r in rows], 0.4,
               label="measured, plain GD at the same clean loss")
        ax.bar([x + 0.2 for x in xs], [r[key] for r in rows], 0.4, label="measured, dropout")
        ax.scatter([x + 0.2 for x in xs], [r["gd_" + key] for r in rows], marker="_", s=300,
                   color="k", zorder=3, label="prediction: dropout below")
        ax.set_xticks(list(xs), [f"replicate {r['replicate']}\np = {r['p']}" for r in rows])
        ax.set_ylabel(f"{label} of the training-loss Hessian\n(loss units / param^2)")
        ax.set_ylim(top=ax.get_ylim()[1] * 1.3)
        ax.legend(fontsize=7)
    axes[0].set_title("1-D regression, width-200 ReLU net, n = 12")
    fig.tight_layout()
    lam = math.exp(sum(math.log(r["lambda_max"] / r["gd_lambda_max"]) for r in rows) / len(rows))
    tr = math.exp(sum(math.log(r["trace"] / r["gd_trace"]) for r in rows) / len(rows))
    return [Figure.from_matplotlib(
        "sharpness",
        f"Exact Hessians of the clean training loss: each dropout run after {details['steps']} "
        "full-batch steps, and the plain-GD run of the same init when its clean loss first fell "
        "to the dropout run's. The paper predicts smaller lambda_max and trace with dropout. "
        f"Measured geometric-mean ratio dropout/GD: lambda_max {lam:.2f}, trace {tr:.2f}.",
        fig)]


def noise_hessian_alignment(details: dict[str, Any]) -> list[Figure]:
    """cos(H, Sigma) and the random-eigenvector null per dropout run."""
    runs = details["runs"]
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    xs = range(len(runs))
    ax.bar([x - 0.2 for x in xs], [r["cos"] for r in runs], 0.4, yerr=[2 * r["cos_stderr"]
                                                                       for r in runs],
           label="measured cos(H, Sigma) (+- 2 s.e.)")
    ax.bar([x + 0.2 for x in xs], [r["null"] for r in runs], 0.4,
           label="measured null (random eigenvectors)")
    ax.axhline(0.7, color="k", ls="--", lw=1, label="prediction: cos > 0.7 (ours)")
    ax.axhline(0.1, color="0.5", ls=":", lw=1, label="prediction: null < 0.1 (ours)")
    ax.set_xticks(list(xs), [f"replicate {r['replicate']}\np = {r['p']}" for r in runs])
    ax.set_ylabel("cosine similarity (dimensionless)")
    ax.set_ylim(0, 1.5)
    ax.set_title("Dropout-noise covariance vs Hessian (1-D regression)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    cos = [r["cos"] for r in runs]
    return [Figure.from_matplotlib(
        "alignment",
        f"Sigma from {details['draws']} per-example mask draws, H exact. The paper predicts "
        f"high alignment, far above the null. Measured cos {min(cos):.3f}-{max(cos):.3f}.",
        fig)]


def variance_grows_with_curvature(details: dict[str, Any]) -> list[Figure]:
    """v_k^T Sigma v_k against lambda_k on log-log axes, every non-negligible direction."""
    runs = details["runs"]
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for i, r in enumerate(runs):
        ax.loglog(r["eigenvalues"], r["variances"], "o", ms=3, alpha=0.6, color=f"C{i}",
                  label=f"measured replicate {r['replicate']}, p = {r['p']} "
                        f"(slope {r['slope']:.2f})")
    lam = runs[0]["eigenvalues"]
    c = runs[0]["variances"][0] / lam[0]
    ax.loglog([min(lam), max(lam)], [c * min(lam), c * max(lam)], "k--", lw=1,
              label="prediction: increasing (slope-1 guide)")
    ax.set_xlabel("Hessian eigenvalue lambda_k (loss units / param^2)")
    ax.set_ylabel("projected noise variance v_k^T Sigma v_k (grad units^2)")
    ax.set_title("Variance grows with curvature, non-negligible directions")
    ax.legend(fontsize=7)
    fig.tight_layout()
    slopes = ", ".join(f"{r['slope']:.2f}" for r in runs)
    return [Figure.from_matplotlib(
        "variance-vs-eigenvalue",
        "The paper predicts larger noise variance along sharper directions (positive log-log "
        f"slope). Measured slopes per run: {slopes}.", fig)]


def inverse_variance_flatness(details: dict[str, Any]) -> list[Figure]:
    """sigma_i^2 against F_i per window, control and dropout side by side."""
    runs = details.get("runs")
    if not runs:
        return []
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), sharey=True)
    for ax, arm in zip(axes, (False, True)):
        for i, r in enumerate(x for x in runs if (x["p"] > 0) == arm):
            ax.loglog(r["flatness"], r["variances"], "o", ms=4, color=f"C{i}",
                      label=f"measured replicate {r['replicate']} (rho {r['spearman']:+.2f})")
        ax.set_xlabel("interval flatness F_i along PC i (parameter-space length)")
        ax.set_title("dropout" if arm else "control: plain SGD")
        ax.legend(fontsize=7, title="prediction: decreasing", title_fontsize=7)
    axes[0].set_ylabel("variance sigma_i^2 along PC i (param^2)")
    fig.tight_layout()
    return [Figure.from_matplotlib(
        "variance-flatness",
        f"PCA of one hidden layer's weights over {details['window']} SGD steps (every "
        f"{details['every']}) starting {details.get('burn_in', 0)} steps after the training "
        "error reached zero, PC1 (the drift) excluded; "
        "interval flatness of the full training loss (threshold 2 x loss at the window mean). "
        "Feng & Tu predict a negative relation.", fig)]


def last_layer_noise_structure(details: dict[str, Any]) -> list[Figure]:
    """Cosines of H and the exact Sigma per random net and drop rate."""
    rows = details["rows"]
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    xs = range(len(rows))
    ax.bar([x - 0.27 for x in xs], [r["cos_shared"] for r in rows], 0.27,
           label="measured cos(H, Sigma), shared mask")
    ax.bar(list(xs), [r["cos_per_example"] for r in rows], 0.27,
           label="measured cos(H, Sigma), per-example masks")
    ax.bar([x + 0.27 for x in xs], [r["null_per_example"] for r in rows], 0.27,
           label="measured null (random eigenvectors)")
    ax.axhline(0.6, color="k", ls="--", lw=1, label="prediction: cos > 0.6 (ours)")
    ax.set_xticks(list(xs), [f"net {r['net']}\np = {r['p']}" for r in rows])
    ax.set_ylabel("cosine similarity (dimensionless)")
    ax.set_ylim(0, 1.5)
    ax.set_title("Last-hidden-layer dropout at an interpolating point (exact Sigma)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    worst = max(r["rel_err"] for r in rows)
    return [Figure.from_matplotlib(
        "last-layer",
        "3-12-8-1 ReLU nets, n = 5, last layer solved to interpolate. The closed-form Sigma "
        f"agrees with enumeration of all 2^8 masks to relative error {worst:.1e}.", fig)]


def flatter_minima_mnist1d(details: dict[str, Any]) -> list[Figure]:
    """lambda_max and trace of each MNIST-1D net at the matched training loss."""
    rows = details["rows"]
    fig = _paired_bars(rows, (("lambda_max", "largest eigenvalue"), ("trace", "trace")),
                       f"MLP 40-{details['width']}-{details['width']}-10, MNIST-1D",
                       "nats / param^2")
    epochs = ", ".join(f"{r['epochs']}" for r in rows)
    return [Figure.from_matplotlib(
        "mnist1d-sharpness",
        f"Nets trained on {details['n_train']} MNIST-1D examples until the clean training "
        f"cross-entropy reached {details['target']} (epochs, none/dropout per replicate: "
        f"{epochs}). The paper predicts smaller lambda_max and trace with dropout. Measured "
        f"mean ratio: lambda_max {math.exp(_mean_log_ratio(rows, 'lambda_max')):.2f}, trace "
        f"{math.exp(_mean_log_ratio(rows, 'trace')):.2f}.", fig)]


def loss_profile_mnist1d(details: dict[str, Any]) -> list[Figure]:
    """The averaged 1-D loss profiles of every net."""
    rows, alphas = details["rows"], details["alphas"]
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for r in rows:
        ax.plot(alphas, r["profile"], color="C1" if r["p"] else "C0", alpha=0.8,
                label=(f"measured, dropout p = {r['p']}" if r["p"] else "measured, no dropout")
                if r["replicate"] == 0 else None)
    ax.set_xlabel("alpha (step along filter-normalised direction, units of filter norm)")
    ax.set_ylabel("training cross-entropy R_S(theta* + alpha d) (nats)")
    ax.set_title(f"1-D loss profiles, MLP 40-{details['width']}-{details['width']}-10")
    ax.legend(fontsize=7, title="prediction: dropout curves lower and wider", title_fontsize=7)
    fig.tight_layout()
    return [Figure.from_matplotlib(
        "mnist1d-profiles",
        "Each curve averages filter-normalised random directions (Li et al. 2018) around a net "
        "stopped at the common training loss. The paper predicts the dropout curve lower and "
        f"wider; measured mean rise ratio {math.exp(_mean_log_ratio(rows, 'rise')):.2f}.", fig)]
