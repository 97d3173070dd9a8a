"""Reports from stored results: ``report.md`` (figures as PNG files beside it) and a
self-contained ``report.html`` (figures embedded).

Both are rebuilt from the files of the store alone (one JSON per claim, and ``run.json``, the
record of the ``dropreg reproduce`` command that wrote them), so ``dropreg report DIR`` never
reruns a claim. A reader who was not there can follow the report: it opens with the dropreg
version, git commit, command line, start time, wall time and environment; each paper section
opens with the full citation and its arXiv link; each claim shows its statement, the prediction
(marked where the threshold is ours because the paper gives none), the measured value with its
uncertainty, the verdict and, for every verdict other than "reproduced", the reason.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import json
import math
import os
import subprocess
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from dropreg._io import atomic_write_bytes, atomic_write_text
from dropreg.experiments.claims import PAPERS, VERDICTS, Measurement
from dropreg.experiments.store import ClaimResult, load_results

FIGURES_DIR = "figures"
RUN_FILE = "run.json"

#: Full citation and arXiv id of each paper key (``None``: no paper).
PAPER_INFO: dict[str, tuple[str, str | None]] = {
    "pal2020": ("Ambar Pal, Connor Lane, René Vidal, Benjamin D. Haeffele. On the Regularization "
                "Properties of Structured Dropout. CVPR 2020, pp. 7671-7679.", "1910.14186"),
    "wei2020": ("Colin Wei, Sham Kakade, Tengyu Ma. The Implicit and Explicit Regularization "
                "Effects of Dropout. ICML 2020, PMLR 119:10181-10192.", "2002.12915"),
    "zhang2022": ("Zhongwang Zhang, Hanxu Zhou, Zhi-Qin John Xu. Dropout in Training Neural "
                  "Networks: Flatness of Solution and Noise Structure. arXiv preprint, 2022.",
                  "2111.01022"),
    "helmbold2017": ("David P. Helmbold, Philip M. Long. Surprising Properties of Dropout in "
                     "Deep Networks. COLT 2017, PMLR 65:1123-1146.", "1602.04484"),
    "cavazza2018": ("Jacopo Cavazza, Pietro Morerio, Benjamin Haeffele, Connor Lane, Vittorio "
                    "Murino, René Vidal. Dropout as a Low-Rank Regularizer for Matrix "
                    "Factorization. AISTATS 2018.", "1710.05092"),
    "mianjy2018": ("Poorya Mianjy, Raman Arora, René Vidal. On the Implicit Bias of Dropout. "
                   "ICML 2018, PMLR 80:3540-3548.", "1806.09777"),
    "mianjy2019": ("Poorya Mianjy, Raman Arora. On Dropout and Nuclear Norm Regularization. "
                   "ICML 2019.", "1905.11887"),
    "arora2021": ("Raman Arora, Peter Bartlett, Poorya Mianjy, Nathan Srebro. Dropout: Explicit "
                  "Forms and Capacity Control. ICML 2021, PMLR 139:351-361.", "2003.03397"),
    "dropreg": ("dropreg itself: properties of this library's own implementations.", None),
}


def arxiv_url(arxiv_id: str) -> str:
    """The arXiv abstract page of an id.

    Example:
        >>> arxiv_url("1602.04484")
        'https://arxiv.org/abs/1602.04484'
    """
    return f"https://arxiv.org/abs/{arxiv_id}"


def paper_citation(paper: str) -> tuple[str, str | None]:
    """``(citation, arXiv URL or None)`` of a paper key; a key of the user's own claims is cited
    as itself."""
    cite, arxiv = PAPER_INFO.get(paper, (PAPERS.get(paper, f"Claims of your own: {paper}."),
                                         None))
    return cite, arxiv_url(arxiv) if arxiv else None


def git_commit(path: str | os.PathLike | None = None) -> str | None:
    """The git commit of the checkout that holds ``path`` (default: the dropreg package), with
    ``-dirty`` when it has uncommitted changes; ``None`` outside a checkout (an installed wheel)
    or without git."""
    folder = Path(path) if path is not None else Path(__file__).resolve().parents[1]
    if not any((p / ".git").exists() for p in (folder, *folder.parents)):
        return None
    try:
        head = subprocess.run(["git", "-C", str(folder), "rev-parse", "HEAD"],
                              capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(folder), "status", "--porcelain",
                                "--untracked-files=no"], capture_output=True, text=True,
                               timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def run_record(command: str, started_at: str, wall_s: float,
               environment: dict | None = None) -> dict:
    """The record of one ``dropreg reproduce`` command, stored as ``run.json`` beside the
    results: dropreg version, git commit, command line, start time (UTC), wall time, environment.

    Example:
        >>> rec = run_record("dropreg reproduce", "2026-01-01T00:00:00+00:00", 12.5)
        >>> sorted(rec)
        ['command', 'dropreg', 'environment', 'git_commit', 'started_at', 'wall_s']
    """
    import dropreg

    return {"dropreg": dropreg.__version__, "git_commit": git_commit(), "command": command,
            "started_at": started_at, "wall_s": float(wall_s),
            "environment": dict(environment or {})}


def write_run_record(out_dir: str | os.PathLike, record: dict) -> Path:
    """Store ``record`` as ``out_dir/run.json`` (atomically)."""
    path = Path(out_dir) / RUN_FILE
    atomic_write_text(path, json.dumps(record, indent=1))
    return path


def read_run_record(out_dir: str | os.PathLike) -> dict | None:
    """The stored run record, or ``None`` when there is none or it cannot be read."""
    try:
        record = json.loads((Path(out_dir) / RUN_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def utc_now() -> str:
    """The current time, UTC, ISO 8601 to the second."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
_BADGE = {
    "reproduced": "#1a7f37",
    "not reproduced": "#cf222e",
    "inconclusive": "#9a6700",
    "error": "#6e7781",
}


def md_cell(text: object) -> str:
    """Text safe inside a Markdown table cell (pipes escaped, one line).

    Example:
        >>> print(md_cell("||A||_* = 3"))
        \\|\\|A\\|\\|_* = 3
    """
    return str(text).replace("|", "\\|").replace("\n", " ")


def format_number(x: float | None) -> str:
    """Compact number for tables.

    Example:
        >>> format_number(0.000123456), format_number(12.5), format_number(None)
        ('1.235e-04', '12.5', '')
    """
    if x is None:
        return ""
    x = float(x)
    if math.isnan(x) or math.isinf(x):
        return str(x)
    if x == 0:
        return "0"
    if abs(x) >= 1e5 or abs(x) < 1e-3:
        return f"{x:.3e}"
    return f"{x:.4g}"


def describe_expectation(m: Measurement) -> str:
    """The prediction a measurement is judged against, in words that read right next to the
    measured value: the limit the value must respect, tolerance included.

    Example:
        >>> describe_expectation(Measurement("gap", 1e-4, expected=1e-3, kind="at_most"))
        '≤ 0.001'
        >>> describe_expectation(Measurement("residual", 5e-16, expected=0.0, tolerance=1e-12,
        ...                                  kind="at_most"))
        '≤ 1.000e-12'
        >>> describe_expectation(Measurement("residual", 5e-16, expected=0.0, tolerance=1e-12))
        '0 within 1.000e-12'
        >>> describe_expectation(Measurement("ratio", 0.9, expected=1.0, tolerance=0.15))
        '1 ± 0.15'
        >>> describe_expectation(Measurement("cos", 0.9, expected=0.8, tolerance=0.01,
        ...                                  kind="at_least"))
        '≥ 0.79 (0.8 less tolerance 0.01)'
    """
    if m.kind == "info" or m.expected is None:
        return "(reported, not judged)"
    e, t = float(m.expected), m.judged_tolerance
    if m.kind == "close":
        if not t:
            return f"= {format_number(e)}"
        if e == 0:
            return f"0 within {format_number(t)}"
        return f"{format_number(e)} ± {format_number(t)}"
    sign, limit = ("≤", e + t) if m.kind == "at_most" else ("≥", e - t)
    if not t or e == 0:
        return f"{sign} {format_number(limit)}"
    word = "plus" if m.kind == "at_most" else "less"
    return f"{sign} {format_number(limit)} ({format_number(e)} {word} tolerance {format_number(t)})"


def threshold_is_ours(m: Measurement) -> bool:
    """Whether the measurement's threshold was chosen by dropreg because the paper gives none
    (``Measurement.ours``; older results without the field count as the paper's)."""
    return bool(getattr(m, "ours", False))


def verdict_reason(result: ClaimResult) -> str | None:
    """Why a verdict is not "reproduced" (``None`` when it is): the claim's own reason where it
    gives one, else the measurement that failed, the inconclusive reason, or the error."""
    if result.verdict == "reproduced":
        return None
    own = getattr(result, "reason", None)
    if own:
        return str(own)
    if result.verdict == "error":
        last = result.error.strip().splitlines()[-1] if result.error and result.error.strip() \
            else "the claim raised an error"
        return f"the claim's code raised: {last[:200]}"
    failing = [m for m in result.measurements if m.passed is False]
    if result.verdict == "not reproduced" and failing:
        return "; ".join(f"{m.name} = {format_number(m.value)}{' ' + m.unit if m.unit else ''}, "
                         f"predicted {describe_expectation(m)}" for m in failing[:3])
    if result.inconclusive_reason:
        return result.inconclusive_reason
    if not any(m.passed is not None for m in result.measurements):
        return "nothing was judged: every measurement is reported only"
    return f"verdict {result.verdict}"


def time_line(result: ClaimResult) -> str:
    """The claim's own time plus the shared runs it used (a claim reusing trained nets would
    otherwise show only the seconds of its own measurement).

    Example:
        >>> from dropreg.experiments.store import ClaimResult
        >>> r = ClaimResult(id="x.y", paper="x", statement="", verdict="reproduced",
        ...                 measurements=[], profile="quick", seed=0, elapsed_s=0.2)
        >>> time_line(r)
        '0.2 s'
    """
    own = f"{result.elapsed_s:.1f} s"
    reused = int((result.environment or {}).get("pieces_reused") or 0)
    if reused:  # --resume: the pieces an interrupted run stored took their time then
        own += f" (+ {reused} pieces stored by an interrupted run, reused)"
    shared = list(getattr(result, "shared_runs", None) or [])
    if not shared:
        return own
    parts = ", ".join(f"{s.get('name', '?')} {float(s.get('elapsed_s', 0.0)):.1f} s"
                      for s in shared)
    total = result.elapsed_s + sum(float(s.get("elapsed_s", 0.0)) for s in shared)
    return f"{own} own + shared runs it used: {parts} (together {total:.1f} s)"


def key_number(result: ClaimResult) -> str:
    """The number that explains a verdict, as 'name = value': the first failing measurement of
    a "not reproduced" claim, else the first judged one, else the first reported one (or the
    reason an inconclusive claim gives), else the last line of an error."""
    def show(m: Measurement) -> str:
        unit = f" {m.unit}" if m.unit else ""
        return f"{m.name} = {format_number(m.value)}{unit}"

    failing = [m for m in result.measurements if m.passed is False]
    judged = [m for m in result.measurements if m.passed is not None]
    if failing:
        return show(failing[0])
    if judged:
        return show(judged[0])
    if result.measurements:
        return show(result.measurements[0])
    if result.inconclusive_reason:
        return result.inconclusive_reason
    if result.error:
        last = result.error.strip().splitlines()[-1] if result.error.strip() else "error"
        return last[:120]
    return ""


def render_claims_matrix(results: Sequence[ClaimResult]) -> str:
    """The README's claims matrix: paper, claim, verdict and key number of each result."""
    lines = ["| paper | claim | verdict | key number |", "|---|---|---|---|"]
    for paper, group in _group_by_paper(results).items():
        for r in group:
            lines.append(f"| {paper} | `{r.id}` | {r.verdict} | {md_cell(key_number(r))} |")
    env = _environment_line(results)
    profiles = ", ".join(sorted({f"{r.profile} profile, seed {r.seed}" for r in results}))
    lines += ["", f"From `dropreg reproduce` ({profiles}) on: {env}."]
    return "\n".join(lines)


def render_paper_matrix(results: Sequence[ClaimResult], paper: str) -> str:
    """One paper's rows of the claims matrix (claim, verdict, key number), with the run's line:
    what ``dropreg report DIR --papers docs/papers`` writes into that paper's docs page.

    Raises:
        ValueError: no result of ``paper`` in ``results``.
    """
    group = [r for r in results if r.paper == paper]
    if not group:
        raise ValueError(f"no results of paper {paper!r}")
    lines = ["| claim | verdict | key number |", "|---|---|---|"]
    lines += [f"| `{r.id}` | {r.verdict} | {md_cell(key_number(r))} |"
              for r in sorted(group, key=lambda r: r.id)]
    profiles = ", ".join(sorted({f"{r.profile} profile, seed {r.seed}" for r in group}))
    lines += ["", f"From `dropreg reproduce` ({profiles}) on: {_environment_line(group)}. The "
              "report of that run has every measurement and the reason of each verdict."]
    return "\n".join(lines)


def _figure_file(result: ClaimResult, name: str) -> str:
    return f"{result.id}__{name}.png"


def _group_by_paper(results: Sequence[ClaimResult]) -> dict[str, list[ClaimResult]]:
    groups: dict[str, list[ClaimResult]] = {}
    order = list(PAPERS)
    for r in sorted(results, key=lambda r: (order.index(r.paper) if r.paper in order else 99,
                                            r.id)):
        groups.setdefault(r.paper, []).append(r)
    return groups


def _summary_line(results: Sequence[ClaimResult]) -> str:
    counts = Counter(r.verdict for r in results)
    noun = "claim" if len(results) == 1 else "claims"
    return f"{len(results)} {noun}: " + ", ".join(f"{counts[v]} {v}" for v in VERDICTS if counts[v])


#: Environment entries that describe one claim's run, not the machine: not compared across
#: claims (``pieces_reused`` shows in the claim's time line).
PER_CLAIM_KEYS = frozenset({"pieces_reused"})


def _environment_line(results: Sequence[ClaimResult], run: dict | None = None) -> str:
    envs = {tuple(sorted((k, str(v)) for k, v in r.environment.items()
                         if k not in PER_CLAIM_KEYS)) for r in results}
    if run and run.get("environment"):
        env = {k: str(v) for k, v in run["environment"].items()}
    elif envs:
        env = dict(next(iter(envs)))
    else:
        return ""
    threads = env.get("torch_threads", env.get("threads", "?"))
    line = (f"Python {env.get('python', '?')}, torch {env.get('torch', '?')}, numpy "
            f"{env.get('numpy', '?')}, {threads} torch threads")
    if "blas_threads" in env:
        line += f", {env['blas_threads']} BLAS threads"
    if env.get("cpu"):
        line += f", {env['cpu']} ({env.get('cpu_count', '?')} cores)"
    line += f", {env.get('platform', '?')}"
    if env.get("executor") and env["executor"] != "None":
        per_job = env.get("threads_per_job", "None")
        per_job = "unpinned" if per_job == "None" else per_job
        if env["executor"] == "serial":  # one claim group after another, in this process
            line += f"; executor serial, {per_job} threads"
        else:
            jobs = env.get("jobs", "None")
            jobs = "cores / threads" if jobs == "None" else jobs
            line += f"; executor {env['executor']}, {jobs} jobs x {per_job} threads"
    if env.get("claim_jobs") not in (None, "None", "1"):
        line += f", {env['claim_jobs']} processes per claim (--claim-jobs)"
    if len(envs) > 1:
        line += f" (results come from {len(envs)} different environments; see each JSON)"
    return line


def header_items(results: Sequence[ClaimResult], run: dict | None) -> list[tuple[str, str]]:
    """The report's header as ``(label, text)`` pairs: what ran, where, when and how long.

    Example:
        >>> rec = {"dropreg": "0.1.0", "git_commit": "abc123", "command": "dropreg reproduce",
        ...        "started_at": "2026-01-01T00:00:00+00:00", "wall_s": 90.0, "environment": {}}
        >>> [label for label, _ in header_items([], rec)]
        ['dropreg', 'git commit', 'command', 'started', 'wall time', 'environment', 'profile']
    """
    import dropreg

    run = run or {}
    version = run.get("dropreg") or next(
        (str(r.environment["dropreg"]) for r in results if "dropreg" in r.environment), None)
    items = [("dropreg", version or f"{dropreg.__version__} (the version rebuilding the report; "
              "the run was not recorded)")]
    if run:
        items.append(("git commit", run.get("git_commit") or "none (not run from a git checkout)"))
        items.append(("command", (run.get("command") or "?")))
        items.append(("started", f"{run.get('started_at', '?')} (UTC)"))
        wall = float(run.get("wall_s", 0.0))
        items.append(("wall time", f"{wall:.0f} s ({wall / 60:.1f} min) for this command (the "
                      "last that wrote here; with --resume or --only, other results may come "
                      "from earlier commands)"))
    else:
        starts = sorted(r.started_at for r in results if r.started_at)
        items.append(("run record", f"no {RUN_FILE} in this folder: command, commit and total "
                      "time unknown"))
        if starts:
            items.append(("started", f"{starts[0]} (UTC, first claim)"))
    items.append(("environment", _environment_line(results, run) or "unknown"))
    profiles = sorted({f"{r.profile}, seed {r.seed}" for r in results})
    items.append(("profile", "; ".join(profiles) or "-"))
    return items


def _measured(m: Measurement) -> str:
    se = f" ± {format_number(m.stderr)} (s.e.)" if m.stderr is not None else ""
    if m.interval is not None:
        lo, hi = m.interval
        se = f" (interval {format_number(lo)} to {format_number(hi)})"
    unit = f" {m.unit}" if m.unit else ""
    return f"{format_number(m.value)}{se}{unit}"


def _predicted(m: Measurement) -> str:
    text = describe_expectation(m)
    return text + (" (we chose this threshold; the paper gives none)"
                   if threshold_is_ours(m) else "")


def _agrees(m: Measurement) -> str:
    return {"pass": "yes", "fail": "no", "undecided": "undecided", "info": "-"}[m.status]


def render_markdown(results: Sequence[ClaimResult], problems: Sequence[str] = (),
                    run: dict | None = None) -> str:
    """The Markdown report (figures referenced as ``figures/<claim>__<name>.png``)."""
    lines = ["# dropreg reproduction report", "", f"{_summary_line(results)}.", ""]
    for label, text in header_items(results, run):
        lines.append(f"- **{label}:** {md_cell(text)}")
    for p in problems:
        lines += ["", f"**Unreadable result file:** {p}"]
    lines += ["", "| claim | paper | verdict | key number | time |", "|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| [{r.id}](#{r.id.replace('.', '')}) | {r.paper} | **{r.verdict}** | "
                     f"{md_cell(key_number(r))} | {md_cell(time_line(r))} |")
    for paper, group in _group_by_paper(results).items():
        cite, url = paper_citation(paper)
        lines += ["", f"## {paper}", "", cite + (f" [arXiv:{url.rsplit('/', 1)[1]}]({url})"
                                                 if url else "")]
        for r in group:
            lines += ["", f"### {r.id}", "", f"> {r.statement}", "",
                      f"**Verdict: {r.verdict}**"]
            reason = verdict_reason(r)
            if reason:
                lines += ["", f"**Why {r.verdict}:** {reason}"]
            lines += ["", f"Time: {time_line(r)}; profile {r.profile}, seed {r.seed}."]
            if r.measurements:
                lines += ["", "| measurement | measured | predicted | agrees |",
                          "|---|---|---|---|"]
                for m in r.measurements:
                    ok = "**no**" if m.passed is False else _agrees(m)
                    lines.append(f"| {md_cell(m.name)} | {md_cell(_measured(m))} | "
                                 f"{md_cell(_predicted(m))} | {ok} |")
            if r.notes:
                lines += ["", r.notes]
            for f in r.figures:
                lines += ["", f"![{f.name}]({FIGURES_DIR}/{_figure_file(r, f.name)})", "",
                          f"*{f.caption}*"]
            if r.error:
                lines += ["", "```", r.error.rstrip(), "```"]
    return "\n".join(lines) + "\n"


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1050px;
margin:2em auto;padding:0 1.2em;color:#1f2328;line-height:1.5}
h1{border-bottom:2px solid #d0d7de;padding-bottom:.3em}
h2{margin-top:2.2em;border-bottom:1px solid #d0d7de;padding-bottom:.2em}
h3{margin-top:1.8em;font-family:ui-monospace,Menlo,Consolas,monospace;font-size:1.02em}
table{border-collapse:collapse;margin:.8em 0;width:100%;font-size:.92em}
th,td{border:1px solid #d0d7de;padding:.35em .6em;text-align:left;vertical-align:top}
th{background:#f6f8fa}
table.header{width:auto}table.header th{white-space:nowrap}
td.num{white-space:nowrap}
.badge{display:inline-block;color:#fff;border-radius:1em;padding:.05em .7em;font-size:.85em;
white-space:nowrap}
blockquote{margin:.6em 0;padding:.2em 1em;border-left:4px solid #d0d7de;color:#424a53}
figure{margin:1em 0;text-align:center}
figure img{max-width:100%;height:auto;border:1px solid #eaeef2}
figcaption{font-size:.9em;color:#424a53;text-align:left;margin-top:.4em}
pre{background:#f6f8fa;padding:.8em;overflow-x:auto;font-size:.85em}
code{overflow-wrap:anywhere}
.meta{color:#57606a;font-size:.9em}
.cite{font-size:.95em}
.reason{background:#fff8c5;border-left:4px solid #9a6700;padding:.3em .8em}
.no{color:#cf222e;font-weight:600}
"""


def _badge(verdict: str) -> str:
    color = _BADGE.get(verdict, "#6e7781")
    return f'<span class="badge" style="background:{color}">{html.escape(verdict)}</span>'


def render_html(results: Sequence[ClaimResult], problems: Sequence[str] = (),
                run: dict | None = None) -> str:
    """The self-contained HTML report (figures embedded as data URIs)."""
    e = html.escape
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           "<title>dropreg reproduction report</title>", f"<style>{_CSS}</style></head><body>",
           "<h1>dropreg reproduction report</h1>",
           f"<p>{e(_summary_line(results))}.</p>", '<table class="header">']
    for label, text in header_items(results, run):
        cell = f"<code>{e(text)}</code>" if label in ("command", "git commit") else e(text)
        out.append(f"<tr><th>{e(label)}</th><td>{cell}</td></tr>")
    out.append("</table>")
    for p in problems:
        out.append(f'<p class="no">Unreadable result file: {e(p)}</p>')
    out.append("<table><tr><th>claim</th><th>paper</th><th>verdict</th><th>key number</th>"
               "<th>time</th></tr>")
    for r in results:
        out.append(f'<tr><td><a href="#{e(r.id)}"><code>{e(r.id)}</code></a></td>'
                   f"<td>{e(r.paper)}</td><td>{_badge(r.verdict)}</td>"
                   f'<td>{e(key_number(r))}</td><td class="num">{e(time_line(r))}</td></tr>')
    out.append("</table>")
    for paper, group in _group_by_paper(results).items():
        cite, url = paper_citation(paper)
        link = (f' <a href="{e(url)}">arXiv:{e(url.rsplit("/", 1)[1])}</a>' if url else "")
        out.append(f'<h2 id="paper-{e(paper)}">{e(paper)}</h2>'
                   f'<p class="cite">{e(cite)}{link}</p>')
        for r in group:
            out.append(f'<h3 id="{e(r.id)}">{e(r.id)} {_badge(r.verdict)}</h3>')
            out.append(f"<blockquote>{e(r.statement)}</blockquote>")
            reason = verdict_reason(r)
            if reason:
                out.append(f'<p class="reason"><strong>Why {e(r.verdict)}:</strong> '
                           f"{e(reason)}</p>")
            out.append(f'<p class="meta">Time: {e(time_line(r))}; profile {e(r.profile)}, '
                       f"seed {r.seed}</p>")
            if r.measurements:
                out.append("<table><tr><th>measurement</th><th>measured</th><th>predicted</th>"
                           "<th>agrees</th></tr>")
                for m in r.measurements:
                    ok = '<span class="no">no</span>' if m.passed is False else _agrees(m)
                    out.append(f"<tr><td>{e(m.name)}</td><td>{e(_measured(m))}</td>"
                               f"<td>{e(_predicted(m))}</td><td>{ok}</td></tr>")
                out.append("</table>")
            if r.notes:
                out.append(f"<p>{e(r.notes)}</p>")
            for f in r.figures:
                data = base64.b64encode(f.png).decode("ascii")
                out.append(f'<figure><img alt="{e(f.name)}" src="data:image/png;base64,{data}">'
                           f"<figcaption>{e(f.caption)}</figcaption></figure>")
            if r.error:
                out.append(f"<details open><summary>traceback</summary><pre>{e(r.error)}</pre>"
                           "</details>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def write_report(out_dir: str | os.PathLike) -> tuple[Path, Path]:
    """Rebuild ``report.html`` and ``report.md`` (with ``figures/``) from the stored results.

    Raises:
        FileNotFoundError: ``out_dir`` holds no stored results.
    """
    out_dir = Path(out_dir)
    results, problems = load_results(out_dir)
    if not results and not problems:
        raise FileNotFoundError(f"no stored results under {out_dir / 'results'}")
    for r in results:
        for f in r.figures:
            atomic_write_bytes(out_dir / FIGURES_DIR / _figure_file(r, f.name), f.png)
    run = read_run_record(out_dir)
    md_path, html_path = out_dir / "report.md", out_dir / "report.html"
    atomic_write_text(md_path, render_markdown(results, problems, run))
    atomic_write_text(html_path, render_html(results, problems, run))
    return html_path, md_path
