"""The wei2020 claims run end to end (test-sized "smoke" profile) with well-formed outcomes."""

from __future__ import annotations

import math

import pytest
import torch

from dropreg.experiments.claims import NullProgress, get_claim, registered_claims

WEI = [
    "wei2020.explicit-regularizer-matches-dropout-gap",
    "wei2020.xi-approx-matches-dropout-noise",
    "wei2020.dropout-k-noise-scales-as-1-over-k",
    "wei2020.training-mlp-mnist1d",
    "wei2020.training-lstm-pydoc",
]


def test_claims_registered():
    ids = {c.id for c in registered_claims()}
    assert set(WEI) <= ids


@pytest.mark.slow
@pytest.mark.parametrize("cid", WEI)
def test_claim_smoke(cid):
    out = get_claim(cid).run("smoke", torch.Generator().manual_seed(0), NullProgress())
    assert out.measurements and out.figures
    assert out.verdict in ("reproduced", "not reproduced", "inconclusive")
    for m in out.measurements:
        assert isinstance(m.name, str) and math.isfinite(float(m.value)) or m.kind == "info"
    for f in out.figures:
        assert f.png[:4] == b"\x89PNG" and f.caption
