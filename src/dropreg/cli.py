"""The ``dropreg`` command: ``list``, ``reproduce`` and ``report``.

Heavy modules (torch, matplotlib, the experiments) load only inside the command that needs them,
so ``dropreg --help`` answers at once.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
FAILING_VERDICTS = ("not reproduced", "error")


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``dropreg: error: ...`` and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"dropreg: error: {message} (see `{self.prog} --help`)\n")


def _usage_error(message: str) -> int:
    print(f"dropreg: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def build_parser() -> argparse.ArgumentParser:
    """The ``dropreg`` argument parser: sub-commands ``list``, ``reproduce`` and ``report``.

    Example:
        >>> build_parser().parse_args(["list"]).command
        'list'
    """
    from dropreg import __version__

    parser = _Parser(
        prog="dropreg",
        description="Dropout theory that runs: check the claims of the papers behind dropreg "
        "and write a report with figures.",
    )
    parser.add_argument("--version", action="version", version=f"dropreg {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    p_list = sub.add_parser("list", help="list every registered claim: id, paper, statement")
    p_list.add_argument("--only", metavar="PATTERN", help="glob or substring of claim ids")
    p_list.add_argument("--settings", action="store_true",
                        help="also print every claim's settings in each profile")

    p_rep = sub.add_parser("reproduce", help="run the claims and write report.html and report.md")
    p_rep.add_argument("--only", metavar="PATTERN",
                       help="glob (pal2020.*) or substring of claim ids; commas join several")
    p_rep.add_argument("--profile", choices=("smoke", "quick", "full"), default="quick",
                       help="quick: minutes on 2 CPU cores (default); full: larger settings; "
                       "smoke: every claim in seconds (what the tests run)")
    p_rep.add_argument("--out", metavar="DIR", default="results",
                       help="where results and the report go (default: ./results)")
    p_rep.add_argument("--seed", type=int, default=0, help="base seed (default 0)")
    p_rep.add_argument("--threads", type=int, default=None, metavar="N",
                       help="pin torch and BLAS threads to N for every claim (default: torch's "
                       "current count); recorded with each result")
    p_rep.add_argument("--resume", action="store_true",
                       help="skip claims already stored with the same profile and seed "
                       "(claims that ended in 'error' are rerun)")

    p_report = sub.add_parser("report", help="rebuild the report from stored results")
    p_report.add_argument("dir", metavar="DIR", help="a folder written by `dropreg reproduce`")
    p_report.add_argument("--readme", metavar="FILE",
                          help="also write the claims matrix between the <!-- claims:start --> "
                          "and <!-- claims:end --> markers of FILE")
    return parser


def _check_writable(folder: Path) -> str | None:
    """None when ``folder`` can be created and written, else the reason it cannot."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".dropreg-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        return e.strerror or str(e)
    return None


def _cmd_list(args: argparse.Namespace) -> int:
    from dropreg.experiments.runner import select_claims

    try:
        claims = select_claims(args.only)
    except ValueError as e:
        return _usage_error(str(e))
    width = max(len(c.id) for c in claims)
    for c in claims:
        print(f"{c.id:<{width}}  {c.paper:<12}  {c.statement}")
        if args.settings:
            for profile in c.settings or {}:
                print(f"    {profile:<6} {c.settings[profile]!r}")
    print(f"\n{len(claims)} claims")
    return EXIT_OK


class _RichTask:
    """Adapts a rich progress task to the claims' :class:`Progress` protocol."""

    def __init__(self, progress, task_id) -> None:  # noqa: ANN001 - rich types
        self._progress, self._task = progress, task_id

    def set_total(self, total: float) -> None:
        self._progress.update(self._task, total=total)

    def advance(self, amount: float = 1.0) -> None:
        self._progress.advance(self._task, amount)

    def note(self, text: str) -> None:
        from rich.markup import escape

        self._progress.update(self._task, info=escape(text))


def _cmd_reproduce(args: argparse.Namespace) -> int:
    out = Path(args.out)
    problem = _check_writable(out)
    if problem:
        return _usage_error(f"cannot write to --out {out}: {problem}")
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from dropreg.experiments.context import RunCache
    from dropreg.experiments.report import (
        key_number,
        run_record,
        utc_now,
        write_report,
        write_run_record,
    )
    from dropreg.experiments.runner import environment, run_claim, select_claims, stored_result
    from dropreg.experiments.store import write_result

    try:
        claims = select_claims(args.only)
    except ValueError as e:
        return _usage_error(str(e))
    if args.threads is not None and args.threads < 1:
        return _usage_error(f"--threads must be an int >= 1, got {args.threads}")
    runs = RunCache()  # shared runs of this invocation only

    console = Console(stderr=True)
    if not console.is_terminal:
        console.width = max(console.width, 120)  # logs and CI: do not wrap the summary table
    results = []
    interrupted = False
    started_at, t0 = utc_now(), time.perf_counter()
    columns = (TextColumn("{task.description:<48}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TextColumn("{task.fields[info]}"))
    with Progress(*columns, console=console) as bars:
        for c in claims:
            previous = stored_result(out, c, args.profile, args.seed) if args.resume else None
            if previous is not None:
                task = bars.add_task(escape(c.id), total=1, completed=1,
                                     info="stored (--resume)")
                results.append(previous)
                continue
            task = bars.add_task(escape(c.id), total=None, info="")
            try:
                result = run_claim(c, args.profile, args.seed, _RichTask(bars, task),
                                   runs=runs, threads=args.threads)
            except KeyboardInterrupt:
                interrupted = True
                bars.update(task, info="interrupted")
                break
            write_result(out, result)
            bars.update(task, info=escape(result.verdict),
                        total=bars.tasks[task].total or 1,
                        completed=bars.tasks[task].total or 1)
            results.append(result)

    # Every cell is plain text: measurement names such as "mean of z / E[z]" must not be read
    # as rich markup (which would print "mean of z / E").
    table = Table(title=escape(f"dropreg reproduce ({args.profile}, seed {args.seed})"))
    table.add_column("claim", no_wrap=True)
    table.add_column("verdict", no_wrap=True)
    table.add_column("key number")
    table.add_column("time (s)", justify="right")
    style = {"reproduced": "green", "not reproduced": "red", "inconclusive": "yellow",
             "error": "magenta"}
    for r in results:
        verdict = escape(r.verdict)
        if r.verdict in style:
            verdict = f"[{style[r.verdict]}]{verdict}[/]"
        table.add_row(escape(r.id), verdict, escape(key_number(r)), f"{r.elapsed_s:.1f}")
    console.print(table)
    if results:
        write_run_record(out, run_record(getattr(args, "command_line", "dropreg reproduce"),
                                         started_at, time.perf_counter() - t0,
                                         results[-1].environment or environment()))
        html_path, md_path = write_report(out)
        console.print(escape(f"report: {html_path}  {md_path}  "
                             f"({time.perf_counter() - t0:.0f} s)"))
    if interrupted:
        console.print(escape(f"interrupted: {len(results)} results are stored under {out}; "
                             "run again with --resume to go on"))
        return EXIT_INTERRUPTED
    failing = [r.id for r in results if r.verdict in FAILING_VERDICTS]
    return EXIT_FAILED if failing else EXIT_OK


def _cmd_report(args: argparse.Namespace) -> int:
    folder = Path(args.dir)
    if not folder.is_dir():
        return _usage_error(f"no such folder: {folder}")
    from dropreg.experiments.report import write_report

    try:
        html_path, md_path = write_report(folder)
    except FileNotFoundError as e:
        return _usage_error(str(e))
    print(f"report: {html_path}  {md_path}")
    if args.readme:
        from dropreg._io import update_marked_section
        from dropreg.experiments.report import render_claims_matrix
        from dropreg.experiments.store import load_results

        try:
            update_marked_section(args.readme, "claims", render_claims_matrix(
                load_results(folder)[0]))
        except (OSError, ValueError) as e:
            return _usage_error(f"--readme {args.readme}: {e}")
        print(f"claims matrix: {args.readme}")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``dropreg`` command; returns the exit status.

    Example:
        >>> main(["reproduce", "--profile", "huge"])
        Traceback (most recent call last):
        ...
        SystemExit: 2
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.command_line = shlex.join(["dropreg", *argv])
    command = {"list": _cmd_list, "reproduce": _cmd_reproduce, "report": _cmd_report}
    return command[args.command](args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
