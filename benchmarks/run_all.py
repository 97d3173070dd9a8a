"""Run every benchmark script and write the README's performance table.

Each ``benchmarks/bench_<area>.py`` writes ``benchmarks/results/<area>.json`` with a list of
``rows`` (``benchmark``, ``dropreg``, ``baseline``, ``ratio``, ``goal``) and a ``machine`` record.
This script runs them (``--quick`` passes through; ``--no-run`` only collects the stored JSON),
then rewrites the table between the ``<!-- bench:start -->`` and ``<!-- bench:end -->`` markers of
README.md.

Usage::

    python benchmarks/run_all.py            # run all benchmarks, update README.md
    python benchmarks/run_all.py --no-run   # only rebuild the table from stored JSON
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from dropreg._io import update_marked_section

HERE = Path(__file__).resolve().parent
README = HERE.parent / "README.md"


def run_scripts(quick: bool) -> None:
    for script in sorted(HERE.glob("bench_*.py")):
        cmd = [sys.executable, str(script)] + (["--quick"] if quick else [])
        print("running", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True)


def table() -> str:
    lines = ["| area | benchmark | dropreg | baseline | ratio | goal | machine |",
             "|---|---|---|---|---|---|---|"]
    for path in sorted((HERE / "results").glob("*.json")):
        record = json.loads(path.read_text())
        machine = record.get("machine", {})
        where = (f"{machine.get('cpu', '?')}, {machine.get('cores', '?')} cores, "
                 f"torch {machine.get('torch', '?')}")
        if "load" in machine:
            where += f", load {machine['load']}"
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
    if not args.no_run:
        run_scripts(args.quick)
    text = table()
    print(text)
    update_marked_section(README, "bench", text)


if __name__ == "__main__":
    main()
