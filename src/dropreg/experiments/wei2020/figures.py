"""Figures of the Wei, Kakade, Ma 2020 claims, drawn from stored ``details`` only."""

from __future__ import annotations

import statistics
from typing import Any

from dropreg.experiments._common import pyplot
from dropreg.experiments.claims import Figure


def _fmt(rows: list[dict], key: str) -> str:
    return ", ".join(f"{r[key]:.3g}" for r in rows)


def coefficient(details: dict[str, Any]) -> list[Figure]:
    """Multiplier gap / R_approx per q, and R_approx against the gap per example."""
    rows = details["rows"]
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    ax = axes[0]
    labels = {"dropout-trained": "nets trained with Dropout_1 at q",
              "confident": "one net trained without dropout (confident)"}
    for tag in sorted({r["regime"] for r in rows} - set(labels)):
        labels[tag] = f"a net trained longer with dropout ({tag.split()[-2]} epochs)"
    for tag in labels:
        sel = [r for r in rows if r["regime"] == tag]
        marker = {"dropout-trained": "o", "confident": "s"}.get(tag, "^")
        if sel:
            ax.errorbar([r["q"] for r in sel], [r["mult"] for r in sel],
                        yerr=[2 * r["mult_se"] for r in sel], marker=marker, capsize=3,
                        label=f"measured, {labels[tag]}")
    ax.axhline(1.0, color="k", lw=1, ls="--", label="prediction: q/(2(1-q)) fits (1)")
    ax.axhline(2.0, color="C3", lw=1, ls=":", label="alternative: q/(1-q) fits (2)")
    ax.set_xlabel("drop probability q (dimensionless)")
    ax.set_ylabel("mean MC dropout gap / mean R_approx\n(dimensionless)")
    ax.set_ylim(0, max(2.5, max(r["mult"] for r in rows) * 1.1))
    ax.legend(fontsize=7)
    ax.set_title("Which coefficient fits the true dropout gap")
    ax = axes[1]
    dt = [r for r in rows if r["regime"] == "dropout-trained"]
    cf = [r for r in rows if r["regime"] == "confident"]
    pick = min(dt, key=lambda r: abs(r["q"] - 0.1))
    lo = min(min(pick["R_per"]), min(pick["gap_per"]))
    hi = max(max(pick["R_per"]), max(pick["gap_per"]))
    ax.plot([lo, hi], [lo, hi], "k--", lw=1, label="prediction: R_approx = gap")
    ax.scatter(pick["gap_per"], pick["R_per"], s=10,
               label=f"measured (q={pick['q']}, corr {pick['corr']:.2f})")
    ax.set_xlabel("Monte-Carlo dropout gap per example (nats)")
    ax.set_ylabel("R_approx per example (nats)")
    ax.legend(fontsize=8)
    ax.set_title("Per training example")
    fig.tight_layout()
    return [Figure.from_matplotlib(
        "coefficient",
        "MLP 40-50-50-10 (tanh) on MNIST-1D, training examples. Left: mean Monte-Carlo dropout "
        "gap divided by mean R_approx (exact Gauss-Newton with the derivation's q/(2(1-q)); bars "
        "2 s.e.). The derivation predicts 1; q/(1-q) would correspond to 2. "
        f"Measured on nets trained with dropout at q = {_fmt(dt, 'q')}: {_fmt(dt, 'mult')}; "
        f"on a confidently trained net without dropout: {_fmt(cf, 'mult')}. Right: "
        "per-example R_approx against the gap.", fig)]


def noise_covariance(details: dict[str, Any]) -> list[Figure]:
    """Trace ratio and cosine of Cov(xi_approx) against Cov(xi_drop), per example and q."""
    rows = details["rows"]
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for i in sorted({r["example"] for r in rows}):
        sel = [r for r in rows if r["example"] == i]
        axes[0].errorbar([r["q"] for r in sel], [r["trace_ratio"] for r in sel],
                         yerr=[2 * r["trace_ratio_se"] for r in sel], marker="o", capsize=3,
                         label=f"measured, example {i}")
        axes[1].plot([r["q"] for r in sel], [r["cosine"] for r in sel], marker="o",
                     label=f"measured, example {i}")
    axes[0].axhline(1.0, color="k", ls="--", lw=1, label="prediction: equal covariance")
    axes[0].axhspan(0.85, 1.15, color="0.9", label="our tolerance at q = 0.05")
    axes[1].axhline(1.0, color="k", ls="--", lw=1, label="prediction: same direction")
    for ax in axes:
        ax.set_xlabel("drop probability q (dimensionless)")
        ax.legend(fontsize=7)
    axes[0].set_ylabel("tr Cov(xi_approx) / tr Cov(xi_drop)\n(dimensionless)")
    axes[1].set_ylabel("cosine of Cov(xi_approx) and Cov(xi_drop)\n(Frobenius, dimensionless)")
    fig.tight_layout()
    return [Figure.from_matplotlib(
        "noise-covariance",
        "Per training example of a tanh MLP 40-50-50-10 on MNIST-1D, dropout on both hidden "
        "layers, gradient w.r.t. all weights. The paper predicts xi_approx has the covariance "
        "of dropout's gradient noise (trace ratio 1, cosine 1) to first order in the noise. "
        f"Measured trace ratios: {_fmt(rows, 'trace_ratio')}; cosines: {_fmt(rows, 'cosine')}.",
        fig)] + _width_arm(details.get("widths") or [])


def _width_arm(wide: list[dict[str, Any]]) -> list[Figure]:
    """The exact small-q limit of the trace ratio per example against the hidden width."""
    if not wide:
        return []
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    widths = sorted({r["hidden"] for r in wide})
    for i in sorted({r["example"] for r in wide}):
        sel = sorted((r for r in wide if r["example"] == i), key=lambda r: r["hidden"])
        ax.plot([r["hidden"] for r in sel], [r["limit_ratio"] for r in sel], color="0.6",
                lw=0.8, marker=".")
    means = [sum(r["limit_ratio"] for r in wide if r["hidden"] == w)
             / sum(r["hidden"] == w for r in wide) for w in widths]
    ax.plot(widths, means, "o-", color="C0", lw=2, label="measured: mean over examples")
    ax.axhline(1.0, color="k", ls="--", lw=1, label="prediction: approaches 1 with width")
    ax.set_xscale("log")
    ax.set_xlabel("hidden width (units per layer)")
    ax.set_ylabel("exact q -> 0 limit of\ntr Cov(xi_approx) / tr Cov(xi_drop) (dimensionless)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return [Figure.from_matplotlib(
        "noise-covariance-width",
        "The same training inputs (grey: one per example) on tanh MLPs of each width trained "
        "as in the left figure; the limit is computed from one-unit deletions, not sampled. "
        f"Measured means: {', '.join(f'{m:.3f}' for m in means)} at widths "
        f"{', '.join(map(str, widths))}.", fig)]


def dropout_k(details: dict[str, Any]) -> list[Figure]:
    """tr Cov(Dropout_k) against k, with the 1/k prediction and the topped-up point."""
    traces = {int(k): v for k, v in details["traces"].items()}
    ks = sorted(traces)
    kk, trf, sef = details["topped_up"]
    tr1 = traces[1][0]
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4))
    ax.errorbar(ks, [traces[k][0] for k in ks], yerr=[2 * traces[k][1] for k in ks], marker="o",
                capsize=3, label="measured tr Cov(Dropout_k gradient)")
    ax.plot(ks, [tr1 / k for k in ks], "k--", lw=1.5, zorder=4,
            label="prediction: tr Cov(Dropout_1) / k")
    ax.plot([kk], [tr1], "kx", ms=9, mew=2, zorder=4,
            label=f"prediction for Dropout_{kk} + sqrt(1-1/k) xi~: k = 1 level")
    ax.errorbar([kk], [trf], yerr=[2 * sef], marker="s", color="C3", capsize=3,
                label=f"measured Dropout_{kk} + sqrt(1-1/k) xi~")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("dropout samples per step k (count)")
    ax.set_ylabel("trace of gradient covariance (squared loss-gradient units)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return [Figure.from_matplotlib(
        "dropout-k",
        "ReLU MLP 40-64-64-10 (p = 0.4) on a fixed MNIST-1D minibatch of 32; gradient noise "
        f"from {details['n']} draws per k (bars 2 s.e.). The paper predicts tr Cov = "
        "tr Cov(Dropout_1)/k, and the full covariance back with the sqrt(1-1/k) xi~ top-up.",
        fig)]


def training(details: dict[str, Any]) -> list[Figure]:
    """Best test loss per rule (bars 2 s.e. over seeds) and the mean test-loss curves."""
    results, names, seeds = details["results"], details["names"], details["seeds"]
    metric, d1 = details["metric"], "Dropout_1"
    best = {n: [r["best"] for r in results[n]] for n in names}
    means = [statistics.fmean(best[n]) for n in names]
    errs = [statistics.stdev(best[n]) / len(best[n]) ** 0.5 if seeds > 1 else 0.0
            for n in names]
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    ax = axes[0]
    ax.barh(range(len(names)), means, xerr=[2 * e for e in errs], color="C0", capsize=3,
            label=f"measured (mean of {seeds} seed{'s' * (seeds > 1)}, bars 2 s.e.)")
    ax.axvline(means[names.index(d1)], color="k", ls="--", lw=1,
               label="prediction: (c), (d), (f) match Dropout_1")
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.set_xlabel(f"best {metric}")
    ax.set_xlim(left=max(0.0, min(means) - 3 * max(errs + [0.01])))
    ax.set_ylim(-0.6, len(names) + 1.0)  # headroom: the legend sits above the top bar
    ax.legend(fontsize=7, loc="upper right")
    ax.set_title(details["bed"])
    ax = axes[1]
    for i, n in enumerate(names):
        curves = [r["curve"] for r in results[n]]
        curve = [statistics.fmean(c) for c in zip(*curves)]
        ax.plot(range(len(curve)), curve, label=n, color=f"C{i % 10}",
                ls="-" if i < 10 else "--")
    ax.set_xlabel("epoch (passes over the training set)")
    ax.set_ylabel(metric)
    ax.set_ylim(top=statistics.fmean(r["curve"][0] for r in results[d1]) * 1.05)
    ax.legend(fontsize=7)
    ax.set_title("clean test loss per epoch (mean over seeds)")
    fig.tight_layout()
    return [Figure.from_matplotlib(
        "training",
        f"{details['bed']}, {seeds} seed(s), {details['epochs']} epochs, all methods with the "
        "same data, seed and optimizer. The paper predicts (a) none worse than Dropout_1, (b) "
        "Dropout_k worse as k grows, (c, d) noise top-ups and (f) R_approx + xi_approx back at "
        "Dropout_1, (e) R_approx alone between Dropout_k and Dropout_1, (g) R_id worse than "
        "R_approx (not testable with 10 classes). Measured best test losses: "
        + ", ".join(f"{n} {m:.3f}" for n, m in zip(names, means)) + ".", fig)]
