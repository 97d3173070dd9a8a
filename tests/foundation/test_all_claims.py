"""Every claim: runs in the smoke profile, honours its seed, seeds and caches nothing itself."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import dropreg.experiments as experiments
from dropreg.experiments.claims import registered_claims
from dropreg.experiments.context import RunCache
from dropreg.experiments.runner import run_claim

EXPERIMENTS = Path(experiments.__file__).parent

FORBIDDEN = {
    "torch.manual_seed": re.compile(r"torch\.manual_seed\("),
    "constant seed": re.compile(r"manual_seed\((\s*\d|[^)\n]*[+*]\s*\d)"),
    "numpy global seed": re.compile(r"np\.random\.seed\(|numpy\.random\.seed\("),
    "numpy constant seed": re.compile(r"default_rng\(\s*\d"),
    "python global seed": re.compile(r"\brandom\.seed\("),
    "module-level cache": re.compile(r"lru_cache|functools\.cache\b|@cache\b|^_?[A-Z_]*CACHE\w*\s*="
                                     , re.M),
}


def _paper_files() -> list[Path]:
    files = []
    for name in experiments.paper_modules():
        path = EXPERIMENTS / name
        files += sorted(path.rglob("*.py")) if path.is_dir() else [path.with_suffix(".py")]
    for extra in ("testbeds.py", "_references.py"):
        if (EXPERIMENTS / extra).exists():
            files.append(EXPERIMENTS / extra)
    return files


@pytest.mark.parametrize("path", _paper_files(), ids=lambda p: str(p.relative_to(EXPERIMENTS)))
def test_claim_code_neither_seeds_nor_caches(path):
    text = path.read_text(encoding="utf-8")
    hits = [f"{what}: line {text[:m.start()].count(chr(10)) + 1}"
            for what, rx in FORBIDDEN.items() for m in rx.finditer(text)]
    assert not hits, f"{path.name}: {hits}"


def test_every_claim_declares_every_profile():
    for c in registered_claims():
        assert set(c.settings) == {"smoke", "quick", "full"}, c.id


@pytest.mark.parametrize("claim", registered_claims(), ids=lambda c: c.id)
def test_smoke_profile_runs_and_the_seed_matters(claim):
    runs = RunCache()
    a = run_claim(claim, "smoke", seed=0, runs=runs)
    assert a.verdict != "error", a.error  # also: a shared run it did not declare is an error
    # ... and every stage it declares is used (a stale shares= would over-group a sweep)
    assert {u["name"] for u in a.shared_runs} == set(claim.shares), claim.shares
    assert a.measurements, "a claim must measure something"
    assert a.verdict == "reproduced" or a.reason, "a verdict other than reproduced needs a reason"
    b = run_claim(claim, "smoke", seed=1, runs=runs)
    assert b.verdict != "error", b.error
    values_a = [m.value for m in a.measurements]
    values_b = [m.value for m in b.measurements]
    if claim.deterministic:
        assert values_a == values_b, "a claim marked deterministic changed with the seed"
    else:
        assert values_a != values_b, "--seed 1 changed no measured value"
