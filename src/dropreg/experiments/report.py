"""Reports from stored results: ``report.md`` (figures as PNG files beside it) and a
self-contained ``report.html`` (figures embedded).

Both are rebuilt from the JSON files of the store alone, so ``dropreg report DIR`` never reruns a
claim.
"""

from __future__ import annotations

import base64
import html
import math
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from dropreg._io import atomic_write_bytes, atomic_write_text
from dropreg.experiments.claims import PAPERS, VERDICTS, Measurement
from dropreg.experiments.store import ClaimResult, load_results

FIGURES_DIR = "figures"
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
    """The prediction a measurement is judged against, in words.

    Example:
        >>> describe_expectation(Measurement("gap", 1e-4, expected=1e-3, kind="at_most"))
        '≤ 0.001'
    """
    if m.kind == "info" or m.expected is None:
        return "(reported)"
    e, t = format_number(m.expected), format_number(m.tolerance)
    if m.kind == "close":
        return f"{e} ± {t}" if m.tolerance else e
    sign = "≤" if m.kind == "at_most" else "≥"
    return f"{sign} {e}" + (f" (tol {t})" if m.tolerance else "")


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


def _environment_line(results: Sequence[ClaimResult]) -> str:
    envs = {tuple(sorted((k, str(v)) for k, v in r.environment.items())) for r in results}
    if not envs:
        return ""
    env = dict(next(iter(envs)))
    line = (f"Python {env.get('python', '?')}, torch {env.get('torch', '?')}, numpy "
            f"{env.get('numpy', '?')}, {env.get('threads', '?')} torch threads, "
            f"{env.get('platform', '?')}")
    if len(envs) > 1:
        line += f" (results come from {len(envs)} different environments; see each JSON)"
    return line


def render_markdown(results: Sequence[ClaimResult], problems: Sequence[str] = ()) -> str:
    """The Markdown report (figures referenced as ``figures/<claim>__<name>.png``)."""
    lines = ["# dropreg reproduction report", ""]
    lines.append(f"{_summary_line(results)}.")
    env = _environment_line(results)
    if env:
        lines += ["", f"Environment: {env}."]
    profiles = sorted({f"{r.profile} (seed {r.seed})" for r in results})
    if profiles:
        lines += ["", f"Profile: {', '.join(profiles)}."]
    for p in problems:
        lines += ["", f"**Unreadable result file:** {p}"]
    lines += ["", "| claim | paper | verdict | key number | time (s) |", "|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| [{r.id}](#{r.id.replace('.', '')}) | {r.paper} | **{r.verdict}** | "
                     f"{md_cell(key_number(r))} | {r.elapsed_s:.1f} |")
    for paper, group in _group_by_paper(results).items():
        lines += ["", f"## {paper}", "", f"*{PAPERS.get(paper, paper)}*"]
        for r in group:
            lines += ["", f"### {r.id}", "", f"> {r.statement}", "", f"**Verdict: {r.verdict}**"
                      f" ({r.elapsed_s:.1f} s, profile {r.profile}, seed {r.seed})"]
            why = r.reason or r.inconclusive_reason
            if why and r.verdict != "reproduced":
                lines += ["", f"{r.verdict.capitalize()} because: {why}"]
            if r.measurements:
                lines += ["", "| measurement | measured | predicted | agrees |",
                          "|---|---|---|---|"]
                for m in r.measurements:
                    se = f" ± {format_number(m.stderr)}" if m.stderr is not None else ""
                    ok = {True: "yes", False: "**no**", None: ""}[m.passed]
                    lines.append(f"| {md_cell(m.name)} | {format_number(m.value)}{se} {m.unit} | "
                                 f"{describe_expectation(m)} | {ok} |")
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
.badge{display:inline-block;color:#fff;border-radius:1em;padding:.05em .7em;font-size:.85em;
white-space:nowrap}
blockquote{margin:.6em 0;padding:.2em 1em;border-left:4px solid #d0d7de;color:#424a53}
figure{margin:1em 0;text-align:center}
figure img{max-width:100%;height:auto;border:1px solid #eaeef2}
figcaption{font-size:.9em;color:#424a53;text-align:left;margin-top:.4em}
pre{background:#f6f8fa;padding:.8em;overflow-x:auto;font-size:.85em}
.meta{color:#57606a;font-size:.9em}
.no{color:#cf222e;font-weight:600}
"""


def _badge(verdict: str) -> str:
    color = _BADGE.get(verdict, "#6e7781")
    return f'<span class="badge" style="background:{color}">{html.escape(verdict)}</span>'


def render_html(results: Sequence[ClaimResult], problems: Sequence[str] = ()) -> str:
    """The self-contained HTML report (figures embedded as data URIs)."""
    e = html.escape
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           "<title>dropreg reproduction report</title>", f"<style>{_CSS}</style></head><body>",
           "<h1>dropreg reproduction report</h1>",
           f"<p>{e(_summary_line(results))}.</p>"]
    env = _environment_line(results)
    if env:
        out.append(f'<p class="meta">Environment: {e(env)}.</p>')
    for p in problems:
        out.append(f'<p class="no">Unreadable result file: {e(p)}</p>')
    out.append("<table><tr><th>claim</th><th>paper</th><th>verdict</th><th>key number</th>"
               "<th>time (s)</th></tr>")
    for r in results:
        out.append(f'<tr><td><a href="#{e(r.id)}"><code>{e(r.id)}</code></a></td>'
                   f"<td>{e(r.paper)}</td><td>{_badge(r.verdict)}</td>"
                   f"<td>{e(key_number(r))}</td><td>{r.elapsed_s:.1f}</td></tr>")
    out.append("</table>")
    for paper, group in _group_by_paper(results).items():
        out.append(f"<h2>{e(paper)}</h2><p><em>{e(PAPERS.get(paper, paper))}</em></p>")
        for r in group:
            out.append(f'<h3 id="{e(r.id)}">{e(r.id)} {_badge(r.verdict)}</h3>')
            out.append(f"<blockquote>{e(r.statement)}</blockquote>")
            out.append(f'<p class="meta">{r.elapsed_s:.1f} s, profile {e(r.profile)}, '
                       f"seed {r.seed}</p>")
            why = r.reason or r.inconclusive_reason
            if why and r.verdict != "reproduced":
                out.append(f"<p>{e(r.verdict.capitalize())} because: {e(why)}</p>")
            if r.measurements:
                out.append("<table><tr><th>measurement</th><th>measured</th><th>predicted</th>"
                           "<th>agrees</th></tr>")
                for m in r.measurements:
                    se = f" ± {format_number(m.stderr)}" if m.stderr is not None else ""
                    ok = {True: "yes", False: '<span class="no">no</span>', None: ""}[m.passed]
                    out.append(f"<tr><td>{e(m.name)}</td><td>{e(format_number(m.value) + se)} "
                               f"{e(m.unit)}</td><td>{e(describe_expectation(m))}</td>"
                               f"<td>{ok}</td></tr>")
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
    md_path, html_path = out_dir / "report.md", out_dir / "report.html"
    atomic_write_text(md_path, render_markdown(results, problems))
    atomic_write_text(html_path, render_html(results, problems))
    return html_path, md_path
