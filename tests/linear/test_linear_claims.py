"""Every claim of the linear area runs and returns a well-formed outcome.

Cheap claims run in the quick profile; the SGD, last-layer and training-curve claims are called
with the internal ``"test"`` profile (same code, tiny budgets) to keep the suite fast.
"""

from __future__ import annotations

import pytest
import torch

from dropreg.experiments.claims import NullProgress, get_claim, registered_claims
from dropreg.experiments.runner import run_claim

QUICK = ["pal2020.expected-objective-identities", "pal2020.low-rank-equal-block-norms",
         "mianjy2018.dropout-equalized-global-optimum", "mianjy2019.deep-linear-envelope",
         "cavazza2018.dropout-expected-objective"]
TINY = ["pal2020.dropblock-sgd-reaches-closed-form", "pal2020.last-layer-singular-values",
        "pal2020.dropblock-approximation-training-curves"]


def _check(out) -> None:
    assert out.measurements and out.figures
    for fig in out.figures:
        assert fig.png[:4] == b"\x89PNG" and fig.caption
    assert out.verdict in ("reproduced", "not reproduced", "inconclusive")


def test_registered():
    ids = {c.id for c in registered_claims()}
    assert set(QUICK + TINY) <= ids


@pytest.mark.parametrize("cid", QUICK)
def test_quick_claims_reproduce(cid):
    out = run_claim(get_claim(cid), "quick", seed=0)
    _check(out)
    assert out.verdict == "reproduced"


@pytest.mark.parametrize("cid", TINY)
def test_tiny_claims_well_formed(cid):
    out = get_claim(cid).run("test", torch.Generator().manual_seed(0), NullProgress())
    _check(out)
