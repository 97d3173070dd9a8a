"""Run every benchmark script and write the README's performance table.

Each ``benchmarks/bench_<area>.py`` writes ``benchmarks/results/<area>.json`` with a list of
``rows`` (``benchmark``, ``dropreg``, ``baseline``, ``ratio``, ``goal``) and a ``machine`` record.
This script runs them (``--no-run`` only collects the stored JSON), then rewrites the table
between the ``<!-- bench:start -->`` and ``<!-- bench:end -->`` markers of README.md.

``--quick`` passes ``--quick`` to every script (few repeats, small sizes: a check that every
script runs, minutes instead of an hour), sends their JSON to ``benchmarks/results/quick/``
(ignored by git) and prints the table without rewriting README.md: quick numbers are not the
README's. The peers come from ``make bench`` (the ``bench`` extra of pyproject.toml).

Usage::

    python benchmarks/run_all.py            # run all benchmarks, update README.md
    python benchmarks/run_all.py --quick    # quick run of every script, table printed only
    python benchmarks/run_all.py --no-run   # only rebuild the table from stored JSON
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from dropreg._io import update_marked_section

HERE = Path(__file__).resolve().parent
README = HERE.parent / "README.md"


def run_scripts(quick: bool, results: Path) -> None:
    for script in sorted(HERE.glob("bench_*.py")):
        out = results / (script.stem.removeprefix("bench_") + ".json")
        cmd = [sys.executable, str(script), "--out", str(out)] + (["--quick"] if quick else [])
        print("running", " ".join(cmd), flush=True)
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True)
        print(f"{script.name}: {time.perf_counter() - t0:.0f} s", flush=True)


def table(results: Path = HERE / "results") -> str:
    lines = ["| area | benchmark | dropreg | baseline | ratio | goal | machine |",
             "|---|---|---|---|---|---|---|"]
    for path in sorted(results.glob("*.json")):
        record = json.loads(path.read_text())
        machine = record.get("machine", {})
        where = (f"{machine.get('cpu', '?')}, {machine.get('cores', '?')} cores, "
                 f"torch {machine.get('torch', '?')}")
        load = machine.get("load", record.get("load"))
        if isinstance(load, list | tuple) and load:
            where += f", load {float(load[0]):.1f}"
        elif load:
            where += f", load {load}"
        for row in record.get("rows", []):
            lines.append(f"| {path.stem} | {row.get('benchmark', '')} | {row.get('dropreg', '')} "
                         f"| {row.get('baseline', '')} | {row.get('ratio', '')} "
                         f"| {row.get('goal', '')} | {where} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="pass --quick to every script")
    parser.add_argument("--no-run", action="store_true", help="only rebuild the table")
    args = parser.parse_args()
    results = HERE / "results" / ("quick" if args.quick else "")
    t0 = time.perf_counter()
    if not args.no_run:
        run_scripts(args.quick, results)
    text = table(results)
    print(text)
    print(f"run_all: {time.perf_counter() - t0:.0f} s")
    if not args.quick:
        update_marked_section(README, "bench", text)


if __name__ == "__main__":
    main()
