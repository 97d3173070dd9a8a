"""Run claims: selection, seeding, error capture, environment record, resume.

Example:
    >>> from dropreg.experiments.claims import NullProgress, get_claim, registered_claims
    >>> claims = select_claims("cavazza2018.*")
    >>> [c.id for c in claims]
    ['cavazza2018.dropout-expected-objective']
    >>> result = run_claim(claims[0], profile="quick", seed=0, progress=NullProgress())
    >>> result.verdict
    'reproduced'
"""

from __future__ import annotations

import datetime as _dt
import fnmatch
import os
import platform
import time
import traceback
import zlib
from typing import Any

from dropreg.experiments.claims import (
    PROFILES,
    Claim,
    NullProgress,
    Progress,
    registered_claims,
)
from dropreg.experiments.store import ClaimResult, read_result, result_path


def select_claims(pattern: str | None = None) -> list[Claim]:
    """Registered claims whose id matches ``pattern``.

    ``pattern`` is a shell-style glob (``pal2020.*``) or a plain substring of the id or paper
    key; several patterns can be joined with commas. ``None`` selects every claim.

    Raises:
        ValueError: no claim matches (the message lists the paper keys).
    """
    claims = registered_claims()
    if not pattern:
        return claims
    parts = [p.strip() for p in pattern.split(",") if p.strip()]

    def matches(c: Claim, p: str) -> bool:
        if any(ch in p for ch in "*?["):
            return fnmatch.fnmatchcase(c.id, p)
        return p in c.id

    chosen = [c for c in claims if any(matches(c, p) for p in parts)]
    if not chosen:
        papers = sorted({c.paper for c in claims})
        raise ValueError(f"no claim matches {pattern!r} (papers: {', '.join(papers)}; "
                         "see `dropreg list`)")
    return chosen


def claim_seed(seed: int, claim_id: str) -> int:
    """The seed of one claim: stable across runs and Python processes, distinct per claim."""
    return (int(seed) * 1_000_003 + zlib.crc32(claim_id.encode())) % (2**63 - 1)


def cpu_model() -> str:
    """The processor's model name (from ``/proc/cpuinfo`` where there is one)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def environment() -> dict[str, Any]:
    """Versions and thread count recorded with every result."""
    import numpy
    import torch

    import dropreg

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "dropreg": dropreg.__version__,
        "threads": torch.get_num_threads(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "machine": platform.machine(),
    }


def run_claim(claim: Claim, profile: str, seed: int,
              progress: Progress | None = None) -> ClaimResult:
    """Run one claim and return its result; an exception becomes verdict "error" with the
    traceback (``KeyboardInterrupt`` is not caught)."""
    import torch

    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {', '.join(PROFILES)}, got {profile!r}")
    progress = progress or NullProgress()
    generator = torch.Generator().manual_seed(claim_seed(seed, claim.id))
    started = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    t0 = time.perf_counter()
    common = dict(id=claim.id, paper=claim.paper, statement=claim.statement, profile=profile,
                  seed=int(seed), started_at=started, environment=environment())
    try:
        outcome = claim.run(profile, generator, progress)
    except Exception:  # noqa: BLE001 - any failure of a claim is recorded, the run goes on
        return ClaimResult(verdict="error", measurements=[], error=traceback.format_exc(),
                           elapsed_s=time.perf_counter() - t0, **common)
    return ClaimResult(
        verdict=outcome.verdict,
        measurements=list(outcome.measurements),
        figures=list(outcome.figures),
        notes=outcome.notes,
        inconclusive_reason=outcome.inconclusive_reason,
        elapsed_s=time.perf_counter() - t0,
        details=outcome.details,
        **common,
    )


def stored_result(out_dir: str | os.PathLike, claim: Claim, profile: str,
                  seed: int) -> ClaimResult | None:
    """The stored result of ``claim`` when it was run with this profile and seed and did not
    end in "error" (errors are rerun by ``--resume``); otherwise None."""
    path = result_path(out_dir, claim.id)
    if not path.is_file():
        return None
    try:
        result = read_result(path)
    except ValueError:
        return None
    if result.profile != profile or result.seed != int(seed) or result.verdict == "error":
        return None
    return result

