"""Exact expected drop fractions of the peers' DropBlock seeding rules, and sampled drop
fractions of dropreg's ``drop_block2d`` (pure functions of their arguments and a generator).

Settings: square maps with odd and even block sizes (those of ``benchmarks/bench_layers.py``) and
the two timm ResNet DropBlock settings. The peers' seeding rules are evaluated exactly (expected
drop fraction ``1 - mean_ij (1 - gamma)^{n_ij}`` of their seed rate and seed region), so they
carry no sampling error; dropreg is measured by sampling its real layer.
"""

from __future__ import annotations

import math

import torch

#: (H = W, block_size, p): the settings compared with torchvision, timm and dropblock.
ANCHOR_SETTINGS: tuple[tuple[int, int, float], ...] = (
    (56, 7, 0.1), (56, 7, 0.3), (28, 7, 0.1), (14, 7, 0.1), (14, 7, 0.3),
    (8, 3, 0.1), (7, 3, 0.1), (7, 7, 0.1), (7, 7, 0.3),
)

PEER_RULES = ("torchvision", "timm", "dropblock")

def window_counts(size: int, k: int, anywhere: bool, shift: int = 0) -> torch.Tensor:
    """Number of seed sites covering each position along one axis.

    Valid-centre seeds (``anywhere=False``): sites ``0..size-k``, a seed at ``s`` covers
    ``s..s+k-1``. Seeds anywhere (timm >= 1.0.23, dropblock): sites ``0..size-1``, expanded by
    ``max_pool`` with padding ``k // 2``, so position ``i`` is covered by the seeds
    ``i - k//2 + shift .. i - k//2 + shift + k - 1`` that lie on the map (``shift = 1`` for an
    even ``k`` in timm, which crops the first row of the pooled map; dropblock crops the last).
    """
    i = torch.arange(size)
    if anywhere:
        lo = (i - k // 2 + shift).clamp(min=0)
        hi = (i - k // 2 + shift + k - 1).clamp(max=size - 1)
    else:
        lo = (i - k + 1).clamp(min=0)
        hi = i.clamp(max=size - k)
    return (hi - lo + 1).clamp(min=0)


def peer_seed_rule(rule: str, H: int, W: int, block_size: int, p: float,
                   gamma_scale: float = 1.0) -> tuple[float, torch.Tensor]:
    """Seed rate and per-position seed counts ``(gamma, n (H, W))`` of a peer's DropBlock.

    Rules: ``"torchvision"`` (and mmdet, the paper):
    ``k = min(bs, H, W)``, ``gamma = p H W / (k^2 (H - k + 1)(W - k + 1))``, valid-centre seeds;
    ``"timm"`` (>= 1.0.23, and the default ``fast=True`` path before):
    ``kh, kw = min(bs, H), min(bs, W)``,
    ``gamma = gamma_scale p H W / (kh kw) / ((H - kh + 1)(W - kw + 1))``, seeds anywhere;
    ``"dropblock"`` (miguelvr 0.3.0): ``gamma = p / bs^2``, seeds anywhere.
    ``gamma`` is returned unclipped (a value above 1 makes ``torch.bernoulli`` fail in the peer);
    use ``min(gamma, 1)`` for the drop fraction.
    """
    if rule == "torchvision":
        k = min(block_size, H, W)
        gamma = p * H * W / (k * k * (H - k + 1) * (W - k + 1))
        n = window_counts(H, k, False)[:, None] * window_counts(W, k, False)[None, :]
    elif rule == "timm":
        kh, kw = min(block_size, H), min(block_size, W)
        gamma = gamma_scale * p * H * W / (kh * kw) / ((H - kh + 1) * (W - kw + 1))
        n = (window_counts(H, kh, True, 1 - kh % 2)[:, None]
             * window_counts(W, kw, True, 1 - kw % 2)[None, :])
    elif rule == "dropblock":
        gamma = p / block_size**2
        n = window_counts(H, block_size, True)[:, None] * window_counts(W, block_size, True)[
            None, :]
    else:
        raise ValueError(f"rule must be one of {PEER_RULES}, got {rule!r}")
    return gamma, n


def peer_expected_drop_fraction(rule: str, H: int, W: int, block_size: int, p: float,
                                gamma_scale: float = 1.0) -> float:
    """Exact expected drop fraction of a peer's seeding rule, ``1 - mean (1 - gamma)^n``.

    Example:
        >>> round(peer_expected_drop_fraction("timm", 7, 7, 7, 0.1), 3)  # asks for 0.1
        0.93
        >>> round(peer_expected_drop_fraction("torchvision", 56, 56, 7, 0.1), 4)
        0.0946
    """
    gamma, n = peer_seed_rule(rule, H, W, block_size, p, gamma_scale)
    gamma = min(gamma, 1.0)
    if gamma >= 1.0:
        return float((n > 0).to(torch.float64).mean())
    return float((-torch.expm1(n.to(torch.float64) * math.log1p(-gamma))).mean())


def measure_dropreg_drop_fraction(H: int, block_size: int, p: float, elements: int,
                                  generator: torch.Generator) -> dict[str, float]:
    """Sample dropreg's ``drop_block2d`` on all-ones ``(N, 16, H, H)`` float32 inputs.

    At least ``elements`` positions are sampled, in chunks of about 4e6.

    Returns the realised drop fraction, its standard error (from the spread of the per-map drop
    fractions, which are iid across maps), the mean output (``1`` if unbiased) with its standard
    error, and the exact expected drop fraction of the law.
    """
    from dropreg.masks import SlidingBlocks2d
    from dropreg.nn.functional import drop_block2d

    C = 16
    chunk_n = max(1, 4_000_000 // (C * H * H))
    x = torch.ones(chunk_n, C, H, H)
    total_maps = 0
    sums = torch.zeros(4, dtype=torch.float64)  # sum and sum of squares of drop fraction, output
    while total_maps * H * H < elements:
        y = drop_block2d(x, p, block_size, generator=generator)
        frac = (y == 0).to(torch.float64).mean((2, 3)).reshape(-1)
        out = y.to(torch.float64).mean((2, 3)).reshape(-1)
        sums += torch.stack([frac.sum(), (frac**2).sum(), out.sum(), (out**2).sum()])
        total_maps += frac.numel()
    m = total_maps
    mean_f, mean_o = float(sums[0]) / m, float(sums[2]) / m
    var_f = max(float(sums[1]) / m - mean_f**2, 0.0) * m / (m - 1)
    var_o = max(float(sums[3]) / m - mean_o**2, 0.0) * m / (m - 1)
    return {
        "realised": mean_f,
        "stderr": math.sqrt(var_f / m),
        "output_mean": mean_o,
        "output_mean_stderr": math.sqrt(var_o / m),
        "exact": SlidingBlocks2d(p, block_size).drop_fraction((H, H)),
        "maps": float(m),
    }
