"""Every claim of the linear area runs through the runner and returns a well-formed result.

Cheap claims must reproduce in the quick profile; the SGD, last-layer and training-curve claims
run in the smoke profile (same code, tiny budgets) to keep the suite fast.
"""

from __future__ import annotations

import pytest

from dropreg.experiments.claims import get_claim, registered_claims
from dropreg.experiments.runner import run_claim

QUICK = ["pal2020.expected-objective-identities", "pal2020.low-rank-equal-block-norms",
         "mianjy2018.dropout-equalized-global-optimum", "mianjy2019.deep-linear-envelope",
         "cavazza2018.dropout-expected-objective"]
SMOKE = ["pal2020.dropblock-sgd-reaches-closed-form", "pal2020.last-layer-singular-values",
         "pal2020.dropblock-approximation-training-curves"]


def _check(out) -> None:
    assert out.verdict in ("reproduced", "not reproduced", "inconclusive"), out.error
    assert out.measurements and out.figures
    for fig in out.figures:
        assert fig.png[:4] == b"\x89PNG" and fig.caption


def test_registered():
    ids = {c.id for c in registered_claims()}
    assert set(QUICK + SMOKE) <= ids


@pytest.mark.parametrize("cid", QUICK)
def test_quick_claims_reproduce(cid):
    out = run_claim(get_claim(cid), "quick", seed=0)
    _check(out)
    assert out.verdict == "reproduced"


@pytest.mark.parametrize("cid", SMOKE)
def test_smoke_claims_well_formed(cid):
    out = run_claim(get_claim(cid), "smoke", seed=0)
    _check(out)
