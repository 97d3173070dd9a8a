"""Run claims: selection, seeding, thread pinning, error capture, environment record, resume.

Each claim runs inside :func:`torch.random.fork_rng` (and with numpy's and Python's global
random states saved and restored), so a claim that touched a global generator could not change
what runs after it; its own random numbers come from its
:class:`~dropreg.experiments.context.ClaimContext`. The torch and BLAS thread counts are pinned
for the run and recorded with the result.

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

import contextlib
import dataclasses
import datetime as _dt
import fnmatch
import os
import platform
import random
import time
import traceback
from collections.abc import Iterator
from typing import Any

from dropreg.experiments.claims import (
    Claim,
    Progress,
    reason_of,
    registered_claims,
)
from dropreg.experiments.context import ClaimContext, RunCache, derived_seed
from dropreg.experiments.pieces import PieceOptions
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
    """The seed of one claim's generator: stable across runs and Python processes, distinct per
    claim (:func:`~dropreg.experiments.context.derived_seed`)."""
    return derived_seed(seed, claim_id)


def blas_threads() -> int | None:
    """The BLAS thread count numpy and scipy use (threadpoolctl), None when unknown."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:  # pragma: no cover - scikit-learn depends on it
        return None
    counts = [i.get("num_threads") for i in threadpool_info() if i.get("user_api") == "blas"]
    return max(counts) if counts else None


@contextlib.contextmanager
def pinned_threads(threads: int | None) -> Iterator[None]:
    """Pin torch's intra-op threads and the BLAS threads to ``threads`` (None: leave them)."""
    import torch

    if threads is None:
        yield
        return
    from dropreg._checks import check_int

    check_int("threads", threads, minimum=1)
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        with threadpool_limits(limits=int(threads), user_api="blas"):
            yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def isolated_random_state() -> Iterator[None]:
    """Save and restore torch's, numpy's and Python's global random states around a claim."""
    import numpy
    import torch

    np_state, py_state = numpy.random.get_state(), random.getstate()
    try:
        with torch.random.fork_rng(devices=[]):
            yield
    finally:
        numpy.random.set_state(np_state)
        random.setstate(py_state)


def settings_record(settings: Any) -> dict[str, Any]:
    """A claim's settings as a JSON-ready dict (a dataclass's fields; tuples become lists)."""
    if dataclasses.is_dataclass(settings) and not isinstance(settings, type):
        return {"type": type(settings).__name__, **dataclasses.asdict(settings)}
    return {"value": repr(settings)}


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
        "torch_threads": torch.get_num_threads(),
        "blas_threads": blas_threads(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "machine": platform.machine(),
    }


def run_claim(claim: Claim, profile: str, seed: int, progress: Progress | None = None, *,
              runs: RunCache | None = None, threads: int | None = None,
              pieces: PieceOptions | None = None) -> ClaimResult:
    """Run one claim and return its result; an exception becomes verdict "error" with the
    traceback (``KeyboardInterrupt`` is not caught).

    Args:
        claim: the claim.
        profile: ``"smoke"``, ``"quick"`` or ``"full"``.
        seed: the invocation's seed; the claim's generator is seeded from ``(seed, claim id)``.
        progress: progress sink.
        runs: the shared runs of this invocation (a new, empty one when None).
        threads: pin torch and BLAS threads to this count for the run (None: as they are).
        pieces: where the claim stores its pieces (:meth:`ClaimContext.pieces`), whether they
            are reused, how many processes it may use (None: not stored, one process). Without
            ``resume`` the claim's earlier pieces are removed first.
    """
    settings = claim.settings_for(profile)
    ctx = ClaimContext.for_claim(claim.id, profile, seed, settings, progress=progress,
                                 runs=runs, shares=claim.shares)
    started = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    record = settings_record(settings)
    common = dict(id=claim.id, paper=claim.paper, statement=claim.statement, profile=profile,
                  seed=int(seed), started_at=started, settings=record)
    with pinned_threads(threads), isolated_random_state():
        env = environment()
        if pieces is not None:
            import torch

            if not pieces.resume:
                pieces.clear(seed, claim.id)
            ctx.pieces_dir = pieces.folder(seed, claim.id, profile, record,
                                           torch.get_num_threads())
            ctx.resume_pieces, ctx.piece_jobs = pieces.resume, pieces.jobs
        env["claim_jobs"] = ctx.piece_jobs
        t0 = time.perf_counter()
        try:
            outcome = claim.run(ctx)
            figures = list(outcome.figures)
            if claim.figure is not None:
                figures += list(claim.figure(outcome.details))
        except Exception:  # noqa: BLE001 - any failure of a claim is recorded, the run goes on
            env["pieces_reused"] = ctx.pieces_reused
            return ClaimResult(verdict="error", measurements=[], error=traceback.format_exc(),
                               elapsed_s=time.perf_counter() - t0, environment=env,
                               shared_runs=tuple(ctx.shared_runs), **common)
    env["pieces_reused"] = ctx.pieces_reused
    return ClaimResult(
        verdict=outcome.verdict,
        measurements=list(outcome.measurements),
        figures=figures,
        notes=outcome.notes,
        inconclusive_reason=outcome.inconclusive_reason,
        reason=reason_of(outcome),
        elapsed_s=time.perf_counter() - t0,
        details=outcome.details,
        environment=env,
        shared_runs=tuple(ctx.shared_runs),
        **common,
    )


def stored_result(out_dir: str | os.PathLike, claim: Claim, profile: str,
                  seed: int) -> ClaimResult | None:
    """The stored result of ``claim`` when it was run with this profile, seed and settings and
    did not end in "error" (errors are rerun by ``--resume``); otherwise None."""
    path = result_path(out_dir, claim.id)
    if not path.is_file():
        return None
    try:
        result = read_result(path)
    except ValueError:
        return None
    if result.profile != profile or result.seed != int(seed) or result.verdict == "error":
        return None
    if result.settings != settings_record(claim.settings_for(profile)):
        return None  # the claim's settings changed since: rerun it
    return result

