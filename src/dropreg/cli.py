"""The ``dropreg`` command: ``list``, ``reproduce`` and ``report``.

Heavy modules (torch, matplotlib, the experiments) load only inside the command that needs them,
so ``dropreg --help`` answers at once.
"""

from __future__ import annotations

import argparse
import os
import re
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
    seeds = p_rep.add_mutually_exclusive_group()
    seeds.add_argument("--seed", type=int, default=0, help="base seed (default 0)")
    seeds.add_argument("--seeds", metavar="SEEDS",
                       help="a sweep: 0-9, 0,3,7 or both mixed (0-4,9); several seeds go to "
                       "OUT/seed-<k>/ and OUT/report.* pools them")
    p_rep.add_argument("--executor", choices=("serial", "process", "ray"), default="serial",
                       help="serial: one claim group after another here (default); process: "
                       "--jobs spawned processes; ray: Ray Core tasks (extra dropreg[ray])")
    p_rep.add_argument("--jobs", type=int, default=None, metavar="N",
                       help="process/ray: units run at once (default: cores / threads per job)")
    p_rep.add_argument("--claim-jobs", type=int, default=1, metavar="N",
                       help="serial: processes for the independent pieces inside one claim "
                       "(the seeds of the wei2020 training comparisons; default 1)")
    p_rep.add_argument("--threads-per-job", "--threads", dest="threads", type=int,
                       default=None, metavar="K",
                       help="pin torch and BLAS threads to K in every job (default: serial "
                       "keeps torch's current count, process and ray use 1); recorded with "
                       "each result")
    p_rep.add_argument("--address", metavar="auto|HOST:PORT",
                       help="ray: join this Ray cluster instead of starting a local one")
    p_rep.add_argument("--gpus-per-job", type=float, default=0.0, metavar="G",
                       help="ray: GPUs each job asks for (default 0)")
    p_rep.add_argument("--resume", action="store_true",
                       help="skip claims already stored with the same profile, seed and "
                       "settings (claims that ended in 'error' are rerun) and reuse the pieces "
                       "an interrupted claim stored")

    p_report = sub.add_parser("report", help="rebuild the report from stored results")
    p_report.add_argument("dir", metavar="DIR", help="a folder written by `dropreg reproduce`")
    p_report.add_argument("--readme", metavar="FILE",
                          help="also write the claims matrix between the <!-- claims:start --> "
                          "and <!-- claims:end --> markers of FILE")
    p_report.add_argument("--papers", metavar="DIR",
                          help="also write each paper's rows between the same markers of "
                          "DIR/<paper>.md (pages without them, or missing, are an error)")
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


def _check_sweep_args(args: argparse.Namespace) -> tuple[list[int] | None, str | None]:
    """The seeds of the command, or a usage message naming the bad argument."""
    from dropreg.experiments.sweep import parse_seeds

    if args.threads is not None and args.threads < 1:
        return None, f"--threads-per-job must be an int >= 1, got {args.threads}"
    if args.jobs is not None and args.jobs < 1:
        return None, f"--jobs must be an int >= 1, got {args.jobs}"
    if args.claim_jobs < 1:
        return None, f"--claim-jobs must be an int >= 1, got {args.claim_jobs}"
    if not args.gpus_per_job >= 0:
        return None, f"--gpus-per-job must be a number >= 0, got {args.gpus_per_job}"
    if args.address is not None and not (
            args.address == "auto" or re.fullmatch(r"[^\s:]+:\d{1,5}", args.address)):
        return None, f"--address must be auto or HOST:PORT, got {args.address!r}"
    if args.seeds is None:
        return [args.seed], None
    try:
        return parse_seeds(args.seeds), None
    except ValueError as e:
        return None, str(e)


def _cmd_reproduce(args: argparse.Namespace) -> int:
    out = Path(args.out)
    seeds, problem = _check_sweep_args(args)
    if problem:
        return _usage_error(problem)
    problem = _check_writable(out)
    if problem:
        return _usage_error(f"cannot write to --out {out}: {problem}")
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from dropreg.experiments.executors import MissingExtraError, UnitFailed, make_executor
    from dropreg.experiments.pieces import PieceOptions
    from dropreg.experiments.report import run_record, utc_now, write_report, write_run_record
    from dropreg.experiments.runner import environment, select_claims, stored_result
    from dropreg.experiments.store import write_result
    from dropreg.experiments.sweep import missing_units, plan_units, seed_folder

    try:
        claims = select_claims(args.only)
    except ValueError as e:
        return _usage_error(str(e))
    several = len(seeds) > 1
    units = plan_units(claims, args.profile, seeds)
    todo = missing_units(units, out, several) if args.resume else units

    console = Console(stderr=True)
    if not console.is_terminal:
        console.width = max(console.width, 120)  # logs and CI: do not wrap the summary table
    results: dict[tuple[int, str], object] = {}  # (seed, claim id) -> result, stored or new
    if args.resume:
        for s in seeds:
            for c in claims:
                previous = stored_result(seed_folder(out, s, several), c, args.profile, s)
                if previous is not None:
                    results[(s, c.id)] = previous
    interrupted, died = False, None
    started_at, t0 = utc_now(), time.perf_counter()
    columns = (TextColumn("{task.description:<48}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TextColumn("{task.fields[info]}"))
    tasks: dict[tuple[int, str], object] = {}

    def title(seed: int, claim_id: str) -> str:
        return escape(f"seed {seed}: {claim_id}" if several else claim_id)

    def progress_for(unit, claim_id):  # noqa: ANN001, ANN202 - the serial executor's hook
        key = (unit.seed, claim_id)
        tasks[key] = bars.add_task(title(*key), total=None, info="")
        return _RichTask(bars, tasks[key])

    try:
        pieces = PieceOptions(str(out), several=several, resume=args.resume,
                              jobs=args.claim_jobs)
        executor = make_executor(args.executor, jobs=args.jobs, threads=args.threads,
                                 address=args.address, gpus=args.gpus_per_job,
                                 progress_for=progress_for, pieces=pieces)
    except (ValueError, MissingExtraError) as e:
        return _usage_error(str(e))
    with Progress(*columns, console=console) as bars:
        for (s, cid) in results:
            bars.add_task(title(s, cid), total=1, completed=1, info="stored (--resume)")
        overall = None
        if args.executor != "serial":
            overall = bars.add_task(escape(f"{len(todo)} units on {args.executor} "
                                           f"({executor.jobs or 'auto'} jobs)"),
                                    total=len(todo), info="")
        done_units: set = set()
        try:
            for unit, result in executor.run(todo):
                write_result(seed_folder(out, unit.seed, several), result)
                if result.verdict != "error":  # stored whole: its pieces are not needed
                    pieces.clear(unit.seed, result.id)
                key = (unit.seed, result.id)
                results[key] = result
                if key in tasks:
                    total = bars.tasks[tasks[key]].total or 1
                    bars.update(tasks[key], info=escape(result.verdict), total=total,
                                completed=total)
                else:
                    bars.add_task(title(*key), total=1, completed=1,
                                  info=escape(f"{result.verdict} ({result.elapsed_s:.1f} s)"))
                if overall is not None and all((unit.seed, i) in results
                                               for i in unit.claim_ids) \
                        and unit not in done_units:
                    done_units.add(unit)
                    bars.advance(overall)
        except KeyboardInterrupt:
            interrupted = True
            for key, task in tasks.items():
                if key not in results:
                    bars.update(task, info="interrupted")
        except UnitFailed as e:  # a worker died, or a claim cannot load in a worker
            died = str(e)
        finally:
            executor.close()

    wall = time.perf_counter() - t0
    ordered = [results[(s, c.id)] for s in seeds for c in claims if (s, c.id) in results]
    env = dict(ordered[-1].environment) if ordered else environment()
    env.update(executor=args.executor, jobs=getattr(executor, "jobs", None),
               claim_jobs=args.claim_jobs,
               threads_per_job=args.threads if args.threads is not None
               else getattr(executor, "threads", None))
    record = run_record(getattr(args, "command_line", "dropreg reproduce"), started_at, wall,
                        env)
    if several:
        record["seeds"] = seeds
    for s in seeds:
        folder = seed_folder(out, s, several)
        if any((s, c.id) in results for c in claims):
            write_run_record(folder, record)
            html_path, md_path = write_report(folder)
    if several and ordered:
        from dropreg.experiments.pooled import write_sweep_report

        write_run_record(out, record)

        html_path, md_path, pooled = write_sweep_report(out)
        _print_pooled_table(console, pooled, seeds, args.profile)
    elif ordered:
        _print_results_table(console, ordered, args.profile, seeds[0])
    if ordered:
        console.print(escape(f"report: {html_path}  {md_path}  ({wall:.0f} s)"))
    if died:
        console.print(escape(f"stopped: {died}"))
        return EXIT_FAILED
    if interrupted:
        console.print(escape(f"interrupted: {len(ordered)} results are stored under {out}; "
                             "run again with --resume to go on"))
        return EXIT_INTERRUPTED
    failing = [r.id for r in ordered if r.verdict in FAILING_VERDICTS]
    if several and ordered:
        failing += [p.id for p in pooled if p.verdict in FAILING_VERDICTS]
    return EXIT_FAILED if failing else EXIT_OK


_STYLE = {"reproduced": "green", "not reproduced": "red", "inconclusive": "yellow",
          "error": "magenta"}


def _styled(verdict: str) -> str:
    from rich.markup import escape

    text = escape(verdict)
    return f"[{_STYLE[verdict]}]{text}[/]" if verdict in _STYLE else text


def _print_results_table(console, results, profile: str, seed: int) -> None:  # noqa: ANN001
    from rich.markup import escape
    from rich.table import Table

    from dropreg.experiments.report import key_number

    # Every cell is plain text: measurement names such as "mean of z / E[z]" must not be read
    # as rich markup (which would print "mean of z / E").
    table = Table(title=escape(f"dropreg reproduce ({profile}, seed {seed})"))
    table.add_column("claim", no_wrap=True)
    table.add_column("verdict", no_wrap=True)
    table.add_column("key number")
    table.add_column("time (s)", justify="right")
    for r in results:
        table.add_row(escape(r.id), _styled(r.verdict), escape(key_number(r)),
                      f"{r.elapsed_s:.1f}")
    console.print(table)


def _print_pooled_table(console, pooled, seeds, profile: str) -> None:  # noqa: ANN001
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=escape(f"dropreg reproduce ({profile}, {len(seeds)} seeds)"))
    table.add_column("claim", no_wrap=True)
    table.add_column("seeds", no_wrap=True)
    table.add_column("pooled verdict", no_wrap=True)
    table.add_column("key number (pooled)")
    for p in pooled:
        table.add_row(escape(p.id), escape(p.tally_text), _styled(p.verdict),
                      escape(p.key_number))
    console.print(table)

def _cmd_report(args: argparse.Namespace) -> int:
    folder = Path(args.dir)
    if not folder.is_dir():
        return _usage_error(f"no such folder: {folder}")
    from dropreg.experiments.report import write_report
    from dropreg.experiments.sweep import sweep_folders

    seeds = sweep_folders(folder)
    if seeds:  # a sweep: every seed's own report, then the pooled one
        from dropreg.experiments.pooled import write_sweep_report

        if args.readme or args.papers:
            return _usage_error(f"--readme and --papers take a single-seed folder; {folder} is "
                                f"a sweep of {len(seeds)} seeds (pass one of its seed-<k> "
                                "folders)")
        for seed_dir in seeds.values():
            write_report(seed_dir)
        html_path, md_path, _ = write_sweep_report(folder)
        print(f"report: {html_path}  {md_path}  (pooled over {len(seeds)} seeds)")
        return EXIT_OK
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
    if args.papers:
        from dropreg._io import update_marked_section
        from dropreg.experiments.report import render_paper_matrix
        from dropreg.experiments.store import load_results

        results = load_results(folder)[0]
        pages = Path(args.papers)
        if not pages.is_dir():
            return _usage_error(f"--papers {pages}: no such folder")
        written = []
        for paper in sorted({r.paper for r in results}):
            page = pages / f"{paper}.md"
            if not page.is_file():
                continue  # claims about dropreg itself have no paper page
            try:
                update_marked_section(page, "claims", render_paper_matrix(results, paper))
            except (OSError, ValueError) as e:
                return _usage_error(f"--papers {pages}: {e}")
            written.append(page.name)
        print(f"paper pages: {', '.join(written) if written else 'none'} in {pages}")
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
