"""Result store (atomic writes), claims' verdict logic, and the report renderers."""

from __future__ import annotations

import json
import os

import pytest

from dropreg._io import atomic_write_text
from dropreg.experiments.claims import Figure, Measurement, Outcome, claim, verdict_of
from dropreg.experiments.report import render_html, render_markdown, write_report
from dropreg.experiments.runner import claim_seed, run_claim, select_claims
from dropreg.experiments.store import ClaimResult, load_results, read_result, write_result

PNG_1PX = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6300010000000500010d0a2db40000000049454e44ae426082")


def make_result(**kw) -> ClaimResult:
    base = dict(id="dropreg.t", paper="dropreg", statement="s", verdict="reproduced",
                measurements=[Measurement("m", 1.0, expected=1.0, tolerance=0.1, stderr=0.01)],
                profile="quick", seed=1, figures=[Figure("f", "caption <b>", PNG_1PX)])
    base.update(kw)
    return ClaimResult(**base)


def test_result_round_trips_through_json(tmp_path):
    r = make_result(notes="n", details={"a": [1, 2]}, environment={"torch": "x"})
    back = read_result(write_result(tmp_path, r))
    assert back == r


def test_failed_write_keeps_the_old_file_whole(tmp_path, monkeypatch):
    path = write_result(tmp_path, make_result(verdict="reproduced"))
    before = path.read_bytes()

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        write_result(tmp_path, make_result(verdict="not reproduced"))
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary left behind


def test_interrupt_during_write_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "x.txt"
    atomic_write_text(target, "old")

    def interrupted_fsync(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupted_fsync)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_text(target, "new" * 1000)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["x.txt"]


def test_corrupt_result_is_reported_not_hidden(tmp_path):
    write_result(tmp_path, make_result())
    (tmp_path / "results" / "dropreg.bad.json").write_text("{not json")
    results, problems = load_results(tmp_path)
    assert [r.id for r in results] == ["dropreg.t"]
    assert len(problems) == 1 and "dropreg.bad.json" in problems[0]
    write_report(tmp_path)
    assert "dropreg.bad.json" in (tmp_path / "report.html").read_text()


@pytest.mark.parametrize("m, ok", [
    (Measurement("a", 1.05, expected=1.0, tolerance=0.1), True),
    (Measurement("a", 1.2, expected=1.0, tolerance=0.1), False),
    (Measurement("a", 0.5, expected=1.0, kind="at_most"), True),
    (Measurement("a", 1.5, expected=1.0, kind="at_most"), False),
    (Measurement("a", 1.5, expected=1.0, kind="at_least"), True),
    (Measurement("a", 0.5, expected=1.0, tolerance=0.4, kind="at_least"), False),
    (Measurement("a", float("nan"), expected=1.0, tolerance=10.0), False),
    (Measurement("a", 3.0, kind="info"), None),
])
def test_measurement_judgement(m, ok):
    assert m.passed is ok


def test_verdict_logic():
    good = Measurement("a", 1.0, expected=1.0)
    bad = Measurement("b", 2.0, expected=1.0)
    info = Measurement("c", 2.0, kind="info")
    assert verdict_of([good, info]) == "reproduced"
    assert verdict_of([good, bad]) == "not reproduced"
    assert verdict_of([info]) == "inconclusive"
    assert verdict_of([]) == "inconclusive"
    assert Outcome([good], inconclusive_reason="too short").verdict == "inconclusive"
    assert Outcome([bad], inconclusive_reason="too short").verdict == "not reproduced"


@pytest.mark.parametrize("kwargs, match", [
    (dict(name="a", value=1.0, kind="close"), "expected"),
    (dict(name="a", value=1.0, expected=1.0, kind="roughly"), "kind"),
    (dict(name="a", value=1.0, expected=1.0, tolerance=-1.0), "tolerance"),
])
def test_bad_measurements_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Measurement(**kwargs)


def test_claim_registration_checks_ids():
    every = dict.fromkeys(("smoke", "quick", "full"))
    claim("nobody2020.x", "nobody2020", "s", settings=every)  # a key of one's own is accepted
    with pytest.raises(ValueError, match="paper"):
        claim("no body.x", "no body", "s", settings=every)
    with pytest.raises(ValueError, match="must start with"):
        claim("pal2020.x", "wei2020", "s", settings=every)
    with pytest.raises(ValueError, match="profiles"):
        claim("mine.x", "mine", "s", settings={"quick": 1})
    with pytest.raises(TypeError, match="hashable"):
        claim("mine.x", "mine", "s", settings={"smoke": [1], "quick": [2], "full": [3]})


def test_run_claim_is_deterministic_per_seed():
    c = select_claims("cavazza2018.dropout-expected-objective")[0]
    a = run_claim(c, "quick", seed=5)
    b = run_claim(c, "quick", seed=5)
    assert a.details == b.details
    assert run_claim(c, "quick", seed=6).details != a.details
    assert claim_seed(0, "a") != claim_seed(0, "b")
    with pytest.raises(ValueError, match="profile"):
        run_claim(c, "medium", seed=0)


def test_renderers_escape_and_include_everything():
    r = make_result(error="Traceback\nValueError: <oops>", verdict="error", measurements=[])
    html = render_html([r, make_result(id="dropreg.u")])
    assert "&lt;oops&gt;" in html and "<oops>" not in html
    assert "caption &lt;b&gt;" in html
    assert html.count("data:image/png;base64,") == 2
    md = render_markdown([r])
    assert "ValueError: <oops>" in md and "figures/dropreg.t__f.png" in md


def test_write_report_writes_figures_beside_markdown(tmp_path):
    write_result(tmp_path, make_result())
    html_path, md_path = write_report(tmp_path)
    assert (tmp_path / "figures" / "dropreg.t__f.png").read_bytes() == PNG_1PX
    assert json.loads((tmp_path / "results" / "dropreg.t.json").read_text())["id"] == "dropreg.t"
    assert html_path.exists() and md_path.exists()
