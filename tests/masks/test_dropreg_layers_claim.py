"""The dropreg.dropblock2d-drops-exactly-p claim: well-formed outcome on a test-sized run."""

from __future__ import annotations

import torch

from dropreg.experiments import dropreg_layers
from dropreg.experiments.claims import get_claim
from dropreg.experiments.runner import run_claim


def test_claim_outcome_is_well_formed() -> None:
    c = get_claim("dropreg.dropblock2d-drops-exactly-p")
    assert c.paper == "dropreg"
    res = run_claim(c, "smoke", seed=0)
    assert res.verdict == "reproduced", res.reason
    assert len(res.figures) == 1 and res.figures[0].png[:4] == b"\x89PNG"
    names = [m.name for m in res.measurements]
    assert len(names) == len(set(names))
    assert len(res.details["rows"]) == len(dropreg_layers.ANCHOR_SETTINGS)


def test_peer_rules_match_anchor_table_and_brute_force() -> None:
    # anchors.md §1.5 Monte-Carlo (4000 trials): tv 0.255 and timm_any 0.298 at 56/7/0.3
    assert abs(dropreg_layers.peer_expected_drop_fraction("torchvision", 56, 56, 7, 0.3)
               - 0.255) < 0.002
    assert abs(dropreg_layers.peer_expected_drop_fraction("timm", 56, 56, 7, 0.3) - 0.298) < 0.002
    # seed counts against a brute-force max-pool of one-hot seeds
    for rule, H, bs in [("timm", 7, 3), ("timm", 7, 4), ("torchvision", 8, 3),
                        ("dropblock", 6, 5), ("dropblock", 6, 4)]:
        _, n = dropreg_layers.peer_seed_rule(rule, H, H, bs, 0.1)
        anywhere = rule != "torchvision"
        sites = H if anywhere else H - bs + 1
        counts = torch.zeros(H, H)
        for s in range(sites):
            for t in range(sites):
                seed = torch.zeros(1, 1, sites, sites)
                seed[0, 0, s, t] = 1.0
                if anywhere:
                    blk = torch.nn.functional.max_pool2d(seed, bs, 1, bs // 2)[0, 0]
                    off = (bs + 1) % 2 if rule == "timm" else 0  # timm crops the first row
                    blk = blk[off:off + H, off:off + H]
                else:
                    pad = torch.nn.functional.pad(seed, (bs - 1,) * 4)
                    blk = torch.nn.functional.max_pool2d(pad, bs, 1)[0, 0]
                counts += blk
        assert torch.equal(counts.to(torch.int64), n)
