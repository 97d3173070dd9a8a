"""Claims about dropreg's own layers: DropBlock2d drops exactly the requested fraction p."""

from __future__ import annotations

from dataclasses import dataclass

from dropreg.experiments.claims import Measurement, Outcome, claim
from dropreg.experiments.context import ClaimContext
from dropreg.experiments.dropreg_layers import figures
from dropreg.experiments.dropreg_layers.runs import (
    ANCHOR_SETTINGS,
    PEER_RULES,
    measure_dropreg_drop_fraction,
    peer_expected_drop_fraction,
)

#: (H, block_size, p, gamma_scale) of the two timm ResNet DropBlock settings (exact, no sampling).
TIMM_RESNET: tuple[tuple[int, int, float, float], ...] = ((14, 5, 0.1, 0.25), (7, 3, 0.1, 1.0))


@dataclass(frozen=True)
class DropFractionSettings:
    """Sampled positions per setting of :data:`ANCHOR_SETTINGS`."""

    elements: int


@claim(
    "dropreg.dropblock2d-drops-exactly-p",
    "dropreg",
    "dropreg's DropBlock2d drops exactly the requested fraction p in expectation on every map "
    "size (seed rate solved for edges and overlaps, fixed per-position 1/E[z] rescaling), where "
    "the torchvision, timm and dropblock seeding rules drop less or more than p. The sampled "
    "fraction must lie within 5 s.e. of p (our tolerance).",
    settings={"smoke": DropFractionSettings(200_000),
              "quick": DropFractionSettings(40_000_000),
              "full": DropFractionSettings(400_000_000)},
    figure=figures.drop_fraction,
)
def dropblock2d_drops_exactly_p(ctx: ClaimContext) -> Outcome:
    from dropreg.masks import SlidingBlocks2d

    ctx.progress.set_total(len(ANCHOR_SETTINGS))
    rows, ms = [], []
    for H, bs, p in ANCHOR_SETTINGS:
        r = measure_dropreg_drop_fraction(H, bs, p, ctx.settings.elements, ctx.generator)
        peers = {rule: peer_expected_drop_fraction(rule, H, H, bs, p) for rule in PEER_RULES}
        rows.append({"H": H, "W": H, "block_size": bs, "p": p, **r, **peers})
        ms.append(Measurement(f"realised drop fraction, {H}x{H} map, block {bs}, p={p}",
                              r["realised"], expected=p, tolerance_z=5,
                              stderr=r["stderr"], n=int(r["maps"]), ours=True))
        ctx.progress.advance()
    resnet = [{"H": H, "block_size": bs, "p": p, "gamma_scale": gs,
               "timm_ratio": peer_expected_drop_fraction("timm", H, H, bs, p, gs) / p,
               "dropreg_ratio": SlidingBlocks2d(p, bs).drop_fraction((H, H)) / p}
              for H, bs, p, gs in TIMM_RESNET]
    worst_exact = max([abs(r["exact"] - r["p"]) / r["p"] for r in rows]
                      + [abs(r["dropreg_ratio"] - 1.0) for r in resnet])
    worst_bias_z = max(abs(r["output_mean"] - 1.0) / r["output_mean_stderr"] for r in rows)
    ms[:0] = [
        Measurement("max relative error of the exact expected drop fraction of the law",
                    worst_exact, expected=0.0, tolerance=1e-12, kind="at_most"),
        Measurement("max |mean output - 1| / s.e. over settings (E[output] = input; 5 is ours)",
                    worst_bias_z, expected=0.0, tolerance=5.0, kind="at_most", ours=True),
    ]
    ms.append(Measurement("dropreg: max relative deviation |realised - p| / p over settings",
                          max(abs(r["realised"] - r["p"]) / r["p"] for r in rows), kind="info"))
    for rule in PEER_RULES:
        ratios = [row[rule] / row["p"] for row in rows]
        ms.append(Measurement(f"{rule} seeding rule: expected/requested p, worst setting",
                              max(ratios, key=lambda v: abs(v - 1.0)), kind="info"))
        ms.append(Measurement(
            f"{rule} seeding rule: settings outside the same 5 s.e. band",
            float(sum(abs(row[rule] - row["p"]) > 5 * row["stderr"] for row in rows)),
            kind="info"))
    return Outcome(
        measurements=ms,
        notes=f"About {ctx.settings.elements:.0e} sampled positions per setting. Peers are "
        "evaluated by the exact expectation of their published seeding rules (seed rate and "
        "seed region), not by running their code; benchmarks/bench_layers.py runs their code. "
        "timm ResNet settings (exact): " + "; ".join(
            f"{r['H']}x{r['H']} bs={r['block_size']} gamma_scale={r['gamma_scale']}: timm "
            f"{r['timm_ratio']:.2f} p, dropreg {r['dropreg_ratio']:.6f} p" for r in resnet),
        details={"rows": rows, "timm_resnet": resnet},
    )
