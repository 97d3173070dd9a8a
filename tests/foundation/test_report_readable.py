"""The report reads without us: header, citations with arXiv links, prediction wording, reasons,
times with shared runs, and no internal note names."""

from __future__ import annotations

import html
import json
import re
import subprocess
import sys

import pytest

from dropreg.experiments.claims import Measurement
from dropreg.experiments.report import (
    PAPER_INFO,
    describe_expectation,
    git_commit,
    header_items,
    read_run_record,
    render_html,
    render_markdown,
    run_record,
    verdict_reason,
    write_report,
    write_run_record,
)
from dropreg.experiments.store import ClaimResult, write_result

RUN = {"dropreg": "9.9.9", "git_commit": "0123abc", "command": "dropreg reproduce --seed 4",
       "started_at": "2026-12-01T21:00:00+00:00", "wall_s": 125.0,
       "environment": {"python": "3.11.7", "torch": "2.13.0", "numpy": "2.4", "torch_threads": 2,
                       "blas_threads": 2, "platform": "Linux"}}


def result(**kw) -> ClaimResult:
    base = dict(id="pal2020.x", paper="pal2020", statement="a statement", verdict="reproduced",
                measurements=[Measurement("m", 1.0, expected=1.0, tolerance=0.1, stderr=0.01)],
                profile="quick", seed=4, elapsed_s=0.2)
    base.update(kw)
    return ClaimResult(**base)


def test_header_names_version_commit_command_start_wall_time_and_environment():
    for text in (render_markdown([result()], run=RUN), render_html([result()], run=RUN)):
        for needle in ("9.9.9", "0123abc", "dropreg reproduce --seed 4", "2026-12-01T21:00:00",
                       "125 s", "torch 2.13.0", "2 torch threads", "2 BLAS threads"):
            assert needle in text, needle


def test_without_run_record_the_header_says_what_is_unknown():
    labels = dict(header_items([result()], None))
    assert "run.json" in labels["run record"]


def test_every_paper_section_opens_with_citation_and_arxiv_link():
    papers = ["pal2020", "wei2020", "zhang2022", "helmbold2017", "cavazza2018", "mianjy2018",
              "mianjy2019"]
    results = [result(id=f"{p}.c", paper=p) for p in papers]
    page = render_html(results, run=RUN)
    md = render_markdown(results, run=RUN)
    for p in papers:
        cite, arxiv = PAPER_INFO[p]
        assert arxiv and re.fullmatch(r"\d{4}\.\d{4,5}", arxiv)
        section = page.split(f'id="paper-{p}"', 1)[1].split("<h3", 1)[0]
        assert f'href="https://arxiv.org/abs/{arxiv}"' in section
        assert cite.split(".")[0] in section  # the authors
        assert f"https://arxiv.org/abs/{arxiv}" in md.split(f"## {p}\n", 1)[1].split("###")[0]


def test_user_paper_key_gets_its_own_section():
    page = render_html([result(id="mylab.a", paper="mylab")], run=RUN)
    assert 'id="paper-mylab"' in page and "mylab" in page


@pytest.mark.parametrize("m, text", [
    (Measurement("r", 5.4e-16, expected=0.0, tolerance=1e-12, kind="at_most"), "≤ 1.000e-12"),
    (Measurement("r", 5.4e-16, expected=0.0, tolerance=1e-12), "0 within 1.000e-12"),
    (Measurement("g", 1e-4, expected=1e-3, kind="at_most"), "≤ 0.001"),
    (Measurement("c", 0.95, expected=0.9, kind="at_least"), "≥ 0.9"),
    (Measurement("x", 2.0, kind="info"), "(reported, not judged)"),
])
def test_prediction_wording_reads_right(m, text):
    assert describe_expectation(m) == text


def test_reason_line_for_every_verdict_but_reproduced():
    failing = result(verdict="not reproduced",
                     measurements=[Measurement("slope", 2.5, expected=1.0, tolerance=0.1)])
    inconclusive = result(verdict="inconclusive", inconclusive_reason="one seed only")
    error = result(verdict="error", measurements=[], error="Traceback\nRuntimeError: boom")
    assert verdict_reason(result()) is None
    assert "slope = 2.5" in verdict_reason(failing) and "1 ± 0.1" in verdict_reason(failing)
    assert verdict_reason(inconclusive) == "one seed only"
    assert "RuntimeError: boom" in verdict_reason(error)
    page = render_html([failing, inconclusive, error], run=RUN)
    assert page.count('class="reason"') == 3


def test_report_shows_no_internal_note_names():
    pattern = re.compile(r"\bdigest\b|anchors\.md|\bA-T\d|\bB-T\d|\bRQ\d|\bT\d{1,2}\b")
    from dropreg.experiments.claims import registered_claims

    for c in registered_claims():
        assert not pattern.search(c.statement), c.id


def test_run_record_round_trips_and_feeds_the_report(tmp_path):
    write_result(tmp_path, result())
    rec = run_record("dropreg reproduce --only x", "2026-12-01T21:00:00+00:00", 3.5,
                     {"python": "3.11", "torch": "2.13.0"})
    write_run_record(tmp_path, rec)
    assert read_run_record(tmp_path) == json.loads(json.dumps(rec))
    write_report(tmp_path)
    assert "dropreg reproduce --only x" in (tmp_path / "report.md").read_text()


def test_git_commit_of_a_checkout_and_outside_one(tmp_path):
    assert git_commit(tmp_path) is None
    repo = tmp_path / "repo"
    repo.mkdir()
    cmds = [["init", "-q"], ["-c", "user.email=a@b", "-c", "user.name=a", "commit", "-q",
                             "--allow-empty", "-m", "x"]]
    for c in cmds:
        subprocess.run(["git", "-C", str(repo), *c], check=True, capture_output=True)
    head = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True,
                          text=True).stdout.strip()
    assert git_commit(repo) == head


def test_cli_records_the_exact_command(tmp_path):
    out = tmp_path / "o"
    proc = subprocess.run([sys.executable, "-m", "dropreg", "reproduce", "--only",
                           "cavazza2018.*", "--out", str(out), "--seed", "2"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    rec = read_run_record(out)
    assert rec["command"] == f"dropreg reproduce --only 'cavazza2018.*' --out {out} --seed 2"
    assert rec["wall_s"] > 0 and rec["started_at"].endswith("+00:00")
    assert rec["git_commit"]  # the tests run from a checkout
    assert html.escape(rec["command"]) in (out / "report.html").read_text()


def test_our_thresholds_and_shared_runs_are_shown():
    r = result(measurements=[Measurement("cos", 0.95, expected=0.9, kind="at_least", ours=True)],
               shared_runs=[{"name": "zhang2022 regression nets", "elapsed_s": 40.0}],
               elapsed_s=0.2)
    for page in (render_markdown([r], run=RUN), render_html([r], run=RUN)):
        assert "we chose this threshold" in page
        assert "0.2 s own + shared runs it used: zhang2022 regression nets 40.0 s" in page
        assert "together 40.2 s" in page
