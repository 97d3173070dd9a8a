"""Figures of the dropreg layer claims, drawn from stored ``details`` only."""

from __future__ import annotations

from typing import Any

from dropreg.experiments._common import pyplot
from dropreg.experiments.claims import Figure
from dropreg.experiments.dropreg_layers.runs import PEER_RULES


def drop_fraction(details: dict[str, Any]) -> list[Figure]:
    """Realised / requested drop fraction per setting: dropreg sampled, the peers exact."""
    rows = details["rows"]
    plt = pyplot()
    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(8, 7.5), sharex=True,
                                  gridspec_kw={"height_ratios": [3, 2]})
    xs = list(range(len(rows)))
    labels = [f"{r['H']}x{r['H']}\nbs={r['block_size']}\np={r['p']}" for r in rows]
    styles = {"torchvision": ("C1", "s"), "timm": ("C3", "^"), "dropblock": ("C2", "v")}
    for a, rel in ((ax, False), (ax2, True)):
        def f(v, p, rel=rel):
            return 100 * (v - p) / p if rel else v / p

        a.axhline(0.0 if rel else 1.0, color="0.3", lw=1.2, ls="--",
                  label="prediction: drop fraction = p")
        for rule in PEER_RULES:
            if rel and rule != "torchvision":
                continue
            color, marker = styles[rule]
            a.plot(xs, [f(r[rule], r["p"]) for r in rows], marker=marker, color=color, lw=1,
                   label=f"{rule} seeding rule (exact expectation)")
        scale = 100 if rel else 1
        a.errorbar(xs, [f(r["realised"], r["p"]) for r in rows],
                   yerr=[scale * 5 * r["stderr"] / r["p"] for r in rows], fmt="o", color="C0",
                   ms=6, capsize=3, zorder=5, label="dropreg drop_block2d (measured, 5 s.e. bars)")
    ax.set_yscale("log")
    ax.set_ylabel("realised drop fraction / requested p\n(ratio, log scale)")
    ax.set_title("DropBlock2d: realised vs requested drop fraction")
    ax.legend(fontsize=7, loc="upper left")
    ax2.set_ylabel("(realised - p) / p  (%)")
    ax2.legend(fontsize=7, loc="lower left")
    ax2.set_xticks(xs)
    ax2.set_xticklabels(labels, fontsize=7)
    ax2.set_xlabel("setting (map H x W, block size, requested p)")
    fig.tight_layout()
    worst_mc = max(abs(r["realised"] - r["p"]) / r["p"] for r in rows)
    lo = min(min(r[k] / r["p"] for k in PEER_RULES) for r in rows)
    hi = max(max(r[k] / r["p"] for k in PEER_RULES) for r in rows)
    return [Figure.from_matplotlib(
        "drop-fraction",
        "Realised drop fraction divided by the requested p (top: ratio, log scale; bottom: "
        "relative deviation in %, dropreg and torchvision). Prediction: dropreg's ratio is 1 on "
        f"every setting. Measured: dropreg's sampled ratio deviates from 1 by at most "
        f"{worst_mc:.2%}; the exact ratios of the torchvision, timm (>= 1.0.23 / fast) and "
        f"dropblock seeding rules range from {lo:.2f} to {hi:.2f}.",
        fig,
    )]
