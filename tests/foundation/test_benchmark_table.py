"""The stored benchmark results feed the README's performance table (benchmarks/run_all.py)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
RESULTS = sorted((BENCH / "results").glob("*.json"))
KEYS = ("benchmark", "dropreg", "baseline", "ratio", "goal")


def test_every_area_has_stored_results():
    assert {p.stem for p in RESULTS} >= {"layers", "linear", "relu", "curvature", "analytic"}


@pytest.mark.parametrize("path", RESULTS, ids=lambda p: p.stem)
def test_results_have_table_rows_and_machine(path):
    record = json.loads(path.read_text())
    assert record["rows"], f"{path.name} has no table rows"
    for row in record["rows"]:
        assert all(str(row.get(k, "")).strip() for k in KEYS), row
    assert {"cpu", "cores", "torch"} <= set(record["machine"])


def test_run_all_table_is_what_the_readme_shows():
    spec = importlib.util.spec_from_file_location("run_all", BENCH / "run_all.py")
    run_all = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run_all)
    table = run_all.table()
    assert "|  |" not in table  # no empty cell
    readme = (BENCH.parent / "README.md").read_text()
    assert table in readme
