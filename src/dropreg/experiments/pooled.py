"""Pooled verdicts of a seed sweep: per claim a tally of the seeds' verdicts and one verdict
from the measurements pooled across seeds, with the report that shows them.

A sweep stores each seed in ``OUT/seed-<k>/`` (a full single-seed report of its own). For every
claim, each measurement (matched by name) is pooled across the seeds that have it: the mean, its
standard error, the minimum and the maximum. The standard error is the one across seeds
(``std / sqrt(n)``, ``n - 1`` degrees of freedom); when every seed reports its own, it is the
larger of that and ``sqrt(sum se_i^2) / n`` (our rule: with few seeds the across-seed estimate
can be small by chance, and the seeds' own errors miss variation between seeds). The pooled
measurement keeps the prediction, so the framework's own rules
(:attr:`Measurement.status <dropreg.experiments.claims.Measurement.status>`,
:func:`~dropreg.experiments.claims.verdict_of`) give the pooled verdict: a one-sided prediction
is decided when ``mean +- DECISION_Z s.e.`` lies on one side of its threshold. A measurement
whose prediction differs between seeds is reported but not pooled into the verdict; a
tolerance stated in standard errors (``Measurement.tolerance_z``) is the same prediction in
every seed and is applied to the pooled standard error. A
measurement identical in every seed is flagged: the seed does not change it (expected of an
exact identity, a warning sign for a random estimate), unless the claim is declared
deterministic.

Example:
    >>> from dropreg.experiments.claims import Measurement
    >>> from dropreg.experiments.store import ClaimResult
    >>> def seed(s, v):
    ...     return ClaimResult(id="x.y", paper="x", statement="", verdict="reproduced",
    ...                        measurements=[Measurement("gap", v, expected=0.5,
    ...                                                  kind="at_most")],
    ...                        profile="quick", seed=s)
    >>> p = pool_claim({0: seed(0, 0.1), 1: seed(1, 0.3), 2: seed(2, 0.2)})
    >>> p.tally_text, p.verdict, round(p.measurements[0].measurement.value, 6)
    ('reproduced 3/3', 'reproduced', 0.2)
"""

from __future__ import annotations

import html
import math
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from dropreg._io import atomic_write_text
from dropreg.experiments.claims import VERDICTS, Measurement, Outcome, reason_of, verdict_of
from dropreg.experiments.store import ClaimResult, load_results

__all__ = ["PooledClaim", "PooledMeasurement", "pool_claim", "pool_measurement", "pool_sweep",
           "write_sweep_report"]


@dataclass(frozen=True)
class PooledMeasurement:
    """One measurement pooled across seeds.

    ``measurement`` holds the mean (``value``), its standard error across seeds (``stderr``,
    None for one seed) and the number of seeds (``n``), with the seeds' common prediction (kind
    ``"info"`` when the prediction differs between seeds: ``mixed_prediction``).
    ``seed_not_used``: at least two seeds and every value identical.
    """

    measurement: Measurement
    minimum: float
    maximum: float
    seed_not_used: bool = False
    mixed_prediction: bool = False


def pool_measurement(ms: Sequence[Measurement], *, deterministic: bool = False
                     ) -> PooledMeasurement:
    """Pool one measurement of several seeds (``ms``: one per seed, same name).

    Example:
        >>> ms = [Measurement("r", v, expected=1.0, tolerance=0.5) for v in (0.8, 1.0, 1.2)]
        >>> p = pool_measurement(ms)
        >>> round(p.measurement.value, 12), round(p.measurement.stderr, 12), p.measurement.n
        (1.0, 0.115470053838, 3)
        >>> pool_measurement([Measurement("exact", 0.0, expected=0.0)] * 2).seed_not_used
        True
    """
    if not ms:
        raise ValueError("pool_measurement needs at least one measurement")
    values = [float(m.value) for m in ms]
    n = len(values)
    finite = [v for v in values if math.isfinite(v)]
    mean = sum(values) / n
    stderr = None
    if n > 1 and len(finite) == n:
        var = sum((v - mean) ** 2 for v in values) / (n - 1)
        stderr = math.sqrt(var / n)
    within = _within_seed_stderr(ms)
    if within is not None and len(finite) == n:
        stderr = within if stderr is None else max(stderr, within)
    first = ms[0]
    z = first.tolerance_z
    if z is not None:  # a tolerance in standard errors: judged at z of the pooled s.e.
        mixed = stderr is None or any(
            (m.kind, m.expected, m.tolerance_z, m.tolerance_base)
            != (first.kind, first.expected, z, first.tolerance_base) for m in ms)
    else:
        mixed = any((m.kind, m.expected, m.tolerance) != (first.kind, first.expected,
                                                           first.tolerance) for m in ms)
    pooled = Measurement(
        first.name, mean, expected=None if mixed else first.expected,
        tolerance=0.0 if mixed else first.tolerance_base,
        kind="info" if mixed else first.kind, stderr=stderr, unit=first.unit, n=n,
        ours=first.ours, tolerance_z=None if mixed else z)
    same = n > 1 and all(v == values[0] for v in values)
    return PooledMeasurement(pooled, min(values), max(values),
                             seed_not_used=same and not deterministic, mixed_prediction=mixed)


def _within_seed_stderr(ms: Sequence[Measurement]) -> float | None:
    """The standard error of the mean of the seeds' estimates from their own standard errors,
    ``sqrt(sum se_i^2) / n``; None unless every seed gives a finite one."""
    ses = [m.stderr for m in ms]
    if any(se is None or not math.isfinite(float(se)) for se in ses):
        return None
    return math.sqrt(sum(float(se) ** 2 for se in ses)) / len(ses)


@dataclass(frozen=True)
class PooledClaim:
    """One claim across the seeds of a sweep: results by seed, pooled measurements, the tally
    of the seeds' verdicts and the pooled verdict with its reason."""

    id: str
    paper: str
    statement: str
    results: Mapping[int, ClaimResult]
    measurements: Sequence[PooledMeasurement]
    verdict: str
    reason: str | None
    tally: Mapping[str, int]
    missing_seeds: Sequence[int] = ()

    @property
    def tally_text(self) -> str:
        """``"reproduced 9/10, inconclusive 1/10"`` (verdicts in the framework's order)."""
        n = len(self.results)
        text = ", ".join(f"{v} {self.tally[v]}/{n}" for v in VERDICTS if self.tally.get(v))
        if self.missing_seeds:
            text += f" ({len(self.missing_seeds)} seeds not run)"
        return text

    @property
    def key_number(self) -> str:
        """The pooled measurement that explains the verdict: the first failing one, else the
        first judged one, else the first reported one."""
        ms = [p.measurement for p in self.measurements]
        pick = (next((m for m in ms if m.status == "fail"), None)
                or next((m for m in ms if m.status != "info"), None)
                or (ms[0] if ms else None))
        if pick is None:
            return self.reason or ""
        return f"{pick.name} = {_mean_text(pick)}"


def _mean_text(m: Measurement) -> str:
    from dropreg.experiments.report import format_number

    se = f" ± {format_number(m.stderr)}" if m.stderr is not None else ""
    unit = f" {m.unit}" if m.unit else ""
    return f"{format_number(m.value)}{se}{unit}"


def pool_claim(results: Mapping[int, ClaimResult], *, deterministic: bool = False,
               seeds: Sequence[int] | None = None) -> PooledClaim:
    """Pool the results of one claim (``results``: by seed; ``seeds``: every seed of the sweep,
    to name the missing ones).

    Seeds that ended in "error" count in the tally but add no measurement. The pooled verdict is
    :func:`~dropreg.experiments.claims.verdict_of` of the pooled measurements, lowered to
    "inconclusive" when any seed reported an inconclusive reason (a failed control), and "error"
    when every seed did.
    """
    if not results:
        raise ValueError("pool_claim needs the result of at least one seed")
    by_seed = dict(sorted(results.items()))
    first = next(iter(by_seed.values()))
    ok = [r for r in by_seed.values() if r.verdict != "error"]
    names: dict[str, list[Measurement]] = {}
    for r in ok:
        for m in r.measurements:
            names.setdefault(m.name, []).append(m)
    pooled = [pool_measurement(ms, deterministic=deterministic) for ms in names.values()]
    tally = Counter(r.verdict for r in by_seed.values())
    if not ok:
        verdict, reason = "error", "the claim raised an error in every seed"
    else:
        controls = [r.seed for r in ok if r.inconclusive_reason]
        outcome = Outcome([p.measurement for p in pooled], inconclusive_reason=(
            f"the claim could not decide in seed(s) {', '.join(map(str, controls))}: "
            f"{ok[[r.seed for r in ok].index(controls[0])].inconclusive_reason}"
            if controls else None))
        verdict, reason = outcome.verdict, reason_of(outcome)
        if verdict_of(outcome.measurements) == "inconclusive" and not controls and not any(
                p.measurement.status != "info" for p in pooled):
            reason = "no pooled measurement is judged (predictions differ between seeds or " \
                     "every measurement is reported only)"
    missing = sorted(set(seeds or ()) - set(by_seed))
    return PooledClaim(first.id, first.paper, first.statement, by_seed, pooled, verdict, reason,
                       dict(tally), missing)


def pool_sweep(folders: Mapping[int, Path], seeds: Sequence[int] | None = None
               ) -> tuple[list[PooledClaim], list[str]]:
    """Pool every claim of the seed folders ``folders`` (seed -> folder), sorted by id, and the
    messages for unreadable result files; ``seeds``: every seed the sweep asked for (default:
    those of ``folders``). A claim is deterministic when it is registered so (claims that
    cannot be loaded here count as not deterministic)."""
    by_claim: dict[str, dict[int, ClaimResult]] = {}
    problems: list[str] = []
    for seed, folder in folders.items():
        results, bad = load_results(folder)
        problems += bad
        for r in results:
            by_claim.setdefault(r.id, {})[seed] = r
    deterministic = _deterministic_ids()
    pooled = [pool_claim(by_claim[cid], deterministic=cid in deterministic,
                         seeds=list(seeds) if seeds is not None else list(folders))
              for cid in sorted(by_claim)]
    return pooled, problems


def _deterministic_ids() -> set[str]:
    from dropreg.experiments import ClaimModuleError
    from dropreg.experiments.claims import registered_claims

    try:
        return {c.id for c in registered_claims() if c.deterministic}
    except ClaimModuleError:
        return set()


def _anchor_md(claim_id: str) -> str:
    return claim_id.replace(".", "")  # the single-seed Markdown report's heading anchors


_LEGEND = ("Pooled across seeds: mean ± standard error across seeds (n seeds), with the minimum "
           "and maximum. The pooled verdict applies the framework's rules to the pooled "
           "measurements; \"same in every seed\" flags a measurement the seed does not change "
           "(expected of an exact identity, a warning sign for a random estimate).")


def _note(p: PooledMeasurement) -> str:
    notes = []
    if p.seed_not_used:
        notes.append("same in every seed: seed not used")
    if p.mixed_prediction:
        notes.append("prediction differs between seeds: judged per seed only")
    return "; ".join(notes)


def _header(run: dict | None, folders: Mapping[int, Path],
            pooled: Sequence[PooledClaim]) -> list[tuple[str, str]]:
    from dropreg.experiments.report import header_items

    results = [r for p in pooled for r in p.results.values()]
    items = [(k, v) for k, v in header_items(results, run) if k != "profile"]
    seeds = list(folders)
    profiles = sorted({r.profile for r in results})
    items.append(("seeds", f"{len(seeds)}: {', '.join(map(str, seeds))}"))
    items.append(("profile", ", ".join(profiles) or "-"))
    return items


def render_sweep_markdown(pooled: Sequence[PooledClaim], folders: Mapping[int, Path],
                          problems: Sequence[str] = (), run: dict | None = None) -> str:
    """The Markdown report of a sweep (links to each seed's ``seed-<k>/report.md``)."""
    from dropreg.experiments.report import (
        _agrees,
        _group_by_paper,
        _predicted,
        format_number,
        md_cell,
        paper_citation,
    )

    counts = Counter(p.verdict for p in pooled)
    lines = ["# dropreg sweep report", "",
             f"{len(pooled)} claims over {len(folders)} seeds, pooled: "
             + ", ".join(f"{counts[v]} {v}" for v in VERDICTS if counts[v]) + ".", ""]
    for label, text in _header(run, folders, pooled):
        lines.append(f"- **{label}:** {md_cell(text)}")
    for prob in problems:
        lines += ["", f"**Unreadable result file:** {prob}"]
    lines += ["", _LEGEND, "", "| claim | seeds | pooled verdict | key number (pooled) |",
              "|---|---|---|---|"]
    for p in pooled:
        lines.append(f"| [{p.id}](#{_anchor_md(p.id)}) | {md_cell(p.tally_text)} | "
                     f"**{p.verdict}** | {md_cell(p.key_number)} |")
    by_paper = _group_by_paper([next(iter(p.results.values())) for p in pooled])
    index = {p.id: p for p in pooled}
    for paper, group in by_paper.items():
        cite, url = paper_citation(paper)
        lines += ["", f"## {paper}", "", cite + (f" [arXiv:{url.rsplit('/', 1)[1]}]({url})"
                                                 if url else "")]
        for r in group:
            p = index[r.id]
            lines += ["", f"### {p.id}", "", f"> {p.statement}", "",
                      f"**Pooled verdict: {p.verdict}** (seeds: {p.tally_text})"]
            if p.reason:
                lines += ["", f"**Why {p.verdict}:** {p.reason}"]
            if p.measurements:
                lines += ["", "| measurement | mean ± s.e. (n) | min | max | predicted | agrees "
                          "| note |", "|---|---|---|---|---|---|---|"]
                for pm in p.measurements:
                    m = pm.measurement
                    ok = "**no**" if m.passed is False else _agrees(m)
                    lines.append(f"| {md_cell(m.name)} | {md_cell(_mean_text(m))} ({m.n}) | "
                                 f"{format_number(pm.minimum)} | {format_number(pm.maximum)} | "
                                 f"{md_cell(_predicted(m))} | {ok} | {md_cell(_note(pm))} |")
            links = [f"[seed {s}]({folders[s].name}/report.md#{_anchor_md(p.id)}) "
                     f"{res.verdict}" for s, res in p.results.items()]
            lines += ["", "Per seed: " + " · ".join(links)]
    return "\n".join(lines) + "\n"


def render_sweep_html(pooled: Sequence[PooledClaim], folders: Mapping[int, Path],
                      problems: Sequence[str] = (), run: dict | None = None) -> str:
    """The self-contained HTML report of a sweep (links to each seed's ``report.html``)."""
    from dropreg.experiments.report import (
        _CSS,
        _agrees,
        _badge,
        _group_by_paper,
        _predicted,
        format_number,
        paper_citation,
    )

    e = html.escape
    counts = Counter(p.verdict for p in pooled)
    summary = (f"{len(pooled)} claims over {len(folders)} seeds, pooled: "
               + ", ".join(f"{counts[v]} {v}" for v in VERDICTS if counts[v]) + ".")
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           "<title>dropreg sweep report</title>", f"<style>{_CSS}</style></head><body>",
           "<h1>dropreg sweep report</h1>", f"<p>{e(summary)}</p>", '<table class="header">']
    for label, text in _header(run, folders, pooled):
        cell = f"<code>{e(text)}</code>" if label in ("command", "git commit") else e(text)
        out.append(f"<tr><th>{e(label)}</th><td>{cell}</td></tr>")
    out.append("</table>")
    for prob in problems:
        out.append(f'<p class="no">Unreadable result file: {e(prob)}</p>')
    out.append(f'<p class="meta">{e(_LEGEND)}</p>')
    out.append("<table><tr><th>claim</th><th>seeds</th><th>pooled verdict</th>"
               "<th>key number (pooled)</th></tr>")
    for p in pooled:
        out.append(f'<tr><td><a href="#{e(p.id)}"><code>{e(p.id)}</code></a></td>'
                   f"<td>{e(p.tally_text)}</td><td>{_badge(p.verdict)}</td>"
                   f"<td>{e(p.key_number)}</td></tr>")
    out.append("</table>")
    index = {p.id: p for p in pooled}
    for paper, group in _group_by_paper([next(iter(p.results.values())) for p in pooled]).items():
        cite, url = paper_citation(paper)
        link = f' <a href="{e(url)}">arXiv:{e(url.rsplit("/", 1)[1])}</a>' if url else ""
        out.append(f'<h2 id="paper-{e(paper)}">{e(paper)}</h2>'
                   f'<p class="cite">{e(cite)}{link}</p>')
        for r in group:
            p = index[r.id]
            out.append(f'<h3 id="{e(p.id)}">{e(p.id)} {_badge(p.verdict)}</h3>')
            out.append(f"<blockquote>{e(p.statement)}</blockquote>")
            out.append(f'<p class="meta">Seeds: {e(p.tally_text)}</p>')
            if p.reason:
                out.append(f'<p class="reason"><strong>Why {e(p.verdict)}:</strong> '
                           f"{e(p.reason)}</p>")
            if p.measurements:
                out.append("<table><tr><th>measurement</th><th>mean ± s.e. (n)</th><th>min</th>"
                           "<th>max</th><th>predicted</th><th>agrees</th><th>note</th></tr>")
                for pm in p.measurements:
                    m = pm.measurement
                    ok = '<span class="no">no</span>' if m.passed is False else _agrees(m)
                    out.append(f"<tr><td>{e(m.name)}</td><td>{e(_mean_text(m))} ({m.n})</td>"
                               f"<td>{e(format_number(pm.minimum))}</td>"
                               f"<td>{e(format_number(pm.maximum))}</td>"
                               f"<td>{e(_predicted(m))}</td><td>{ok}</td>"
                               f"<td>{e(_note(pm))}</td></tr>")
                out.append("</table>")
            links = [f'<a href="{e(folders[s].name)}/report.html#{e(p.id)}">seed {s}</a> '
                     f"{_badge(res.verdict)}" for s, res in p.results.items()]
            out.append("<p>Per seed: " + " · ".join(links) + "</p>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def write_sweep_report(out_dir: str | os.PathLike) -> tuple[Path, Path, list[PooledClaim]]:
    """Write ``report.html`` and ``report.md`` of the sweep under ``out_dir`` (its seed folders
    ``seed-<k>/`` keep their own reports) and return their paths and the pooled claims.

    Raises:
        FileNotFoundError: ``out_dir`` holds no seed folder with results.
    """
    from dropreg.experiments.report import read_run_record
    from dropreg.experiments.sweep import sweep_folders

    out_dir = Path(out_dir)
    folders = sweep_folders(out_dir)
    if not folders:
        raise FileNotFoundError(f"no seed folders (seed-<k>/results) under {out_dir}")
    run = read_run_record(out_dir)
    asked = run.get("seeds") if run else None
    pooled, problems = pool_sweep(folders, asked if isinstance(asked, list) else None)
    md_path, html_path = out_dir / "report.md", out_dir / "report.html"
    atomic_write_text(md_path, render_sweep_markdown(pooled, folders, problems, run))
    atomic_write_text(html_path, render_sweep_html(pooled, folders, problems, run))
    return html_path, md_path, pooled
