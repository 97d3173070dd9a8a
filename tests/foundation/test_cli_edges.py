"""CLI edges: --version, broken claim modules, rich markup in measurements, user paper keys."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import dropreg


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dropreg", *args], capture_output=True,
                          text=True, env=env, timeout=300)


def env_with_module(tmp_path: Path, name: str, source: str) -> dict:
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
    env = dict(os.environ)
    env["PYTHONPATH"] = str(tmp_path) + os.pathsep + env.get("PYTHONPATH", "")
    env["DROPREG_CLAIM_MODULES"] = name
    env["COLUMNS"] = "200"
    return env


def test_version():
    proc = run_cli("--version")
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"dropreg {dropreg.__version__}"


@pytest.mark.parametrize("source, needle", [
    (None, "ModuleNotFoundError"),
    ("def broken(:\n", "SyntaxError"),
    ("raise RuntimeError('no GPU here\\nsecond line')\n", "RuntimeError: no GPU here"),
])
@pytest.mark.parametrize("command", [("list",), ("reproduce", "--only", "x")])
def test_bad_claim_module_is_a_one_line_usage_error(tmp_path, source, needle, command):
    if source is None:
        env = dict(os.environ, DROPREG_CLAIM_MODULES="nonexistent.mod")
        name = "nonexistent.mod"
    else:
        name = "bad_claims_mod"
        env = env_with_module(tmp_path, name, source)
    proc = run_cli(*command, "--out", str(tmp_path / "o"), env=env) if command[0] == "reproduce" \
        else run_cli(*command, env=env)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("dropreg: error: DROPREG_CLAIM_MODULES")
    assert repr(name) in lines[0] and needle in lines[0]


MARKUP_CLAIM = '''
from dropreg.experiments.claims import Measurement, Outcome, claim
ALL = dict.fromkeys(("smoke", "quick", "full"))

@claim("dropreg.markup-test", "dropreg", "a [bold]statement[/bold] with brackets",
       settings=ALL)
def markup(ctx):
    ctx.progress.note("note with [red]markup[/red]")
    return Outcome([Measurement("mean of z / E[z]", 1.0, expected=1.0, tolerance=0.1)])
'''


def test_summary_table_prints_measurement_text_verbatim(tmp_path):
    env = env_with_module(tmp_path, "markup_claims_mod", MARKUP_CLAIM)
    proc = run_cli("reproduce", "--only", "dropreg.markup-test", "--out", str(tmp_path / "o"),
                   env=env)
    assert proc.returncode == 0, proc.stderr
    assert "mean of z / E[z]" in proc.stderr


OWN_PAPER = '''
from dropreg.experiments.claims import Measurement, Outcome, claim
ALL = dict.fromkeys(("smoke", "quick", "full"))

@claim("mylab.mean-is-one", "mylab", "our own claim under our own paper key",
       settings=ALL)
def mine(ctx):
    return Outcome([Measurement("one", 1.0, expected=1.0, tolerance=0.0)])
'''


def test_user_claims_may_name_their_own_paper_key(tmp_path):
    env = env_with_module(tmp_path, "own_paper_mod", OWN_PAPER)
    listed = run_cli("list", env=env)
    assert listed.returncode == 0, listed.stderr
    line = next(ln for ln in listed.stdout.splitlines() if ln.startswith("mylab.mean-is-one"))
    assert "mylab" in line.split()[1]
    out = tmp_path / "o"
    proc = run_cli("reproduce", "--only", "mylab.*", "--out", str(out), env=env)
    assert proc.returncode == 0, proc.stderr
    html = (out / "report.html").read_text()
    assert 'id="paper-mylab"' in html and "mylab.mean-is-one" in html
    assert "## mylab" in (out / "report.md").read_text()


def test_a_bad_paper_key_is_still_refused():
    from dropreg.experiments.claims import claim

    with pytest.raises(ValueError, match="paper must be a key"):
        claim("1x.y", "1x", "bad key", settings=dict.fromkeys(("smoke", "quick", "full")))
