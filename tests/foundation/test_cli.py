"""The `dropreg` command, run as a user runs it: in a subprocess."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

FAKE_CLAIMS = textwrap.dedent('''
    import time
    from dropreg.experiments.claims import Measurement, Outcome, claim
    ALL = dict.fromkeys(("smoke", "quick", "full"))

    @claim("dropreg.fake-pass", "dropreg", "a claim that holds", settings=ALL)
    def fake_pass(ctx):
        ctx.progress.set_total(2); ctx.progress.advance(); ctx.progress.advance()
        return Outcome([Measurement("x", 1.0, expected=1.0, tolerance=0.0)],
                       details={"blob": "y" * 200000})

    @claim("dropreg.fake-fail", "dropreg", "a claim that does not hold", settings=ALL)
    def fake_fail(ctx):
        return Outcome([Measurement("x", 2.0, expected=1.0, tolerance=0.5)])

    @claim("dropreg.fake-error", "dropreg", "a claim whose code raises", settings=ALL)
    def fake_error(ctx):
        raise RuntimeError("boom inside the claim")

    @claim("dropreg.fake-slow", "dropreg", "a claim that never ends", settings=ALL)
    def fake_slow(ctx):
        time.sleep(600)
''')


def run_cli(*args: str, env: dict | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dropreg", *args], capture_output=True,
                          text=True, env=env, timeout=timeout)


@pytest.fixture
def fake_env(tmp_path: Path) -> dict:
    (tmp_path / "fake_claims_mod.py").write_text(FAKE_CLAIMS)
    env = dict(os.environ)
    env["PYTHONPATH"] = str(tmp_path) + os.pathsep + env.get("PYTHONPATH", "")
    env["DROPREG_CLAIM_MODULES"] = "fake_claims_mod"
    return env


def test_help_is_fast_and_names_the_commands():
    t0 = time.perf_counter()
    proc = run_cli("--help")
    assert proc.returncode == 0
    for word in ("list", "reproduce", "report"):
        assert word in proc.stdout
    # the interpreter start dominates; importing torch would take seconds
    assert time.perf_counter() - t0 < 5
    check = subprocess.run([sys.executable, "-c", "import sys, dropreg.cli; "
                            "dropreg.cli.build_parser(); print('torch' in sys.modules)"],
                           capture_output=True, text=True)
    assert check.stdout.strip() == "False"


def test_list_shows_every_claim_with_paper():
    proc = run_cli("list")
    assert proc.returncode == 0
    assert "cavazza2018.dropout-expected-objective" in proc.stdout
    assert "cavazza2018" in proc.stdout


@pytest.mark.parametrize("args, needle", [
    (("reproduce", "--profile", "huge"), "--profile"),
    (("reproduce", "--only", "no-such-claim-xyz"), "no-such-claim-xyz"),
    (("list", "--only", "no-such-claim-xyz"), "no-such-claim-xyz"),
    (("report", "/definitely/not/here"), "/definitely/not/here"),
    (("frobnicate",), "frobnicate"),
])
def test_usage_errors_are_one_line_and_exit_2(args, needle, tmp_path):
    proc = run_cli(*args)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("dropreg: error:") and needle in lines[0]


def test_unwritable_out_is_a_usage_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    proc = run_cli("reproduce", "--only", "cavazza2018", "--out", str(blocker / "sub"))
    assert proc.returncode == 2
    assert "--out" in proc.stderr and str(blocker / "sub") in proc.stderr


def test_reproduce_real_claim_writes_both_reports(tmp_path):
    out = tmp_path / "out"
    proc = run_cli("reproduce", "--only", "cavazza2018.*", "--out", str(out), "--seed", "3")
    assert proc.returncode == 0, proc.stderr
    stored = json.loads((out / "results" / "cavazza2018.dropout-expected-objective.json")
                        .read_text())
    assert stored["verdict"] == "reproduced" and stored["seed"] == 3
    assert stored["profile"] == "quick"
    for key in ("python", "torch", "numpy", "threads"):
        assert key in stored["environment"]
    html = (out / "report.html").read_text()
    md = (out / "report.md").read_text()
    assert "data:image/png;base64," in html
    assert "cavazza2018.dropout-expected-objective" in md
    pngs = list((out / "figures").glob("*.png"))
    assert pngs and all(p.read_bytes()[:4] == b"\x89PNG" for p in pngs)
    for p in pngs:
        assert f"figures/{p.name}" in md


def test_exit_status_and_error_capture(tmp_path, fake_env):
    out = tmp_path / "out"
    proc = run_cli("reproduce", "--only", "dropreg.fake-pass,dropreg.fake-fail,dropreg.fake-error",
                   "--out", str(out), env=fake_env)
    assert proc.returncode == 1, proc.stderr
    err = json.loads((out / "results" / "dropreg.fake-error.json").read_text())
    assert err["verdict"] == "error" and "boom inside the claim" in err["error"]
    assert json.loads((out / "results" / "dropreg.fake-fail.json").read_text())["verdict"] == (
        "not reproduced")
    # one failing claim does not stop the others
    assert json.loads((out / "results" / "dropreg.fake-pass.json").read_text())["verdict"] == (
        "reproduced")
    only_pass = run_cli("reproduce", "--only", "dropreg.fake-pass", "--out", str(tmp_path / "o2"),
                        env=fake_env)
    assert only_pass.returncode == 0


def test_killed_run_leaves_whole_files_and_resume_skips_them(tmp_path, fake_env):
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "dropreg", "reproduce", "--only",
         "dropreg.fake-pass,dropreg.fake-slow", "--out", str(out)],
        env=fake_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    done = out / "results" / "dropreg.fake-pass.json"
    deadline = time.time() + 120
    while not done.exists() and time.time() < deadline:
        time.sleep(0.1)
    assert done.exists()
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    files = list((out / "results").iterdir())
    assert [f.name for f in files if f.suffix == ".json"] == ["dropreg.fake-pass.json"]
    for f in files:
        if f.suffix == ".json":
            json.loads(f.read_text())  # whole, parseable
    mtime = done.stat().st_mtime_ns

    resumed = run_cli("reproduce", "--only", "dropreg.fake-pass,dropreg.fake-fail", "--out",
                      str(out), "--resume", env=fake_env)
    assert resumed.returncode == 1  # fake-fail ran and is "not reproduced"
    assert done.stat().st_mtime_ns == mtime  # skipped, not rerun
    assert (out / "results" / "dropreg.fake-fail.json").exists()

    other_seed = run_cli("reproduce", "--only", "dropreg.fake-pass", "--out", str(out),
                         "--resume", "--seed", "7", env=fake_env)
    assert other_seed.returncode == 0
    assert done.stat().st_mtime_ns != mtime  # another seed is another result


def test_report_rebuilds_from_store_without_rerunning(tmp_path, fake_env):
    out = tmp_path / "out"
    run_cli("reproduce", "--only", "dropreg.fake-pass,dropreg.fake-error", "--out", str(out),
            env=fake_env)
    (out / "report.html").unlink()
    (out / "report.md").unlink()
    stored = {p: p.stat().st_mtime_ns for p in (out / "results").glob("*.json")}
    proc = run_cli("report", str(out), env=fake_env)
    assert proc.returncode == 0, proc.stderr
    assert (out / "report.html").exists() and (out / "report.md").exists()
    assert {p: p.stat().st_mtime_ns for p in (out / "results").glob("*.json")} == stored
    html = (out / "report.html").read_text()
    assert "boom inside the claim" in html and "reproduced" in html


def test_report_of_empty_folder_is_a_usage_error(tmp_path):
    proc = run_cli("report", str(tmp_path))
    assert proc.returncode == 2 and "no stored results" in proc.stderr


def test_report_writes_claims_matrix_into_readme(tmp_path, fake_env):
    out = tmp_path / "out"
    run_cli("reproduce", "--only", "dropreg.fake-pass", "--out", str(out), env=fake_env)
    readme = tmp_path / "README.md"
    readme.write_text("# x\n<!-- claims:start -->\nold\n<!-- claims:end -->\ntail\n")
    proc = run_cli("report", str(out), "--readme", str(readme), env=fake_env)
    assert proc.returncode == 0, proc.stderr
    text = readme.read_text()
    assert "`dropreg.fake-pass` | reproduced | x = 1" in text and "old" not in text
    assert text.endswith("tail\n")
    readme.write_text("no markers")
    bad = run_cli("report", str(out), "--readme", str(readme), env=fake_env)
    assert bad.returncode == 2 and "claims:start" in bad.stderr


def test_report_writes_each_papers_rows_into_its_page(tmp_path, fake_env):
    out = tmp_path / "out"
    run_cli("reproduce", "--only", "dropreg.fake-pass,dropreg.fake-fail", "--out", str(out),
            env=fake_env)
    pages = tmp_path / "papers"
    pages.mkdir()
    page = pages / "dropreg.md"
    page.write_text("# p\n<!-- claims:start -->\nold\n<!-- claims:end -->\ntail\n")
    other = pages / "someone2020.md"
    other.write_text("untouched")
    proc = run_cli("report", str(out), "--papers", str(pages), env=fake_env)
    assert proc.returncode == 0, proc.stderr
    text = page.read_text()
    assert "| `dropreg.fake-fail` | not reproduced |" in text
    assert "| `dropreg.fake-pass` | reproduced | x = 1 |" in text
    assert "old" not in text and text.endswith("tail\n") and "seed 0" in text
    assert other.read_text() == "untouched"
    page.write_text("no markers")
    bad = run_cli("report", str(out), "--papers", str(pages), env=fake_env)
    assert bad.returncode == 2 and "claims:start" in bad.stderr and "dropreg.md" in bad.stderr
    missing = run_cli("report", str(out), "--papers", str(tmp_path / "nowhere"), env=fake_env)
    assert missing.returncode == 2 and "no such folder" in missing.stderr
