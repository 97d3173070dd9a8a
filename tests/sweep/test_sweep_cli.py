"""`dropreg reproduce --seeds`, run as a user runs it: the driver killed mid-sweep (Ctrl-C under
the process executor, SIGKILL under serial) leaves only whole files and stops its workers, and
`--resume` runs only the rest."""

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

CLAIMS = textwrap.dedent('''
    import os
    import time
    from pathlib import Path

    import torch

    from dropreg.experiments.claims import Measurement, Outcome, claim

    ALL = dict.fromkeys(("smoke", "quick", "full"))
    HERE = Path(__file__).parent


    @claim("sweepcli.fast", "sweepcli", "returns at once", settings=ALL)
    def fast(ctx):
        x = float(torch.rand(1, generator=ctx.generator))
        return Outcome([Measurement("x", x, expected=0.5, tolerance=0.5)])


    @claim("sweepcli.slow", "sweepcli", "waits while the file BLOCK exists", settings=ALL)
    def slow(ctx):
        (HERE / f"pid-{ctx.seed}-{os.getpid()}").write_text("")
        deadline = time.time() + 120
        while (HERE / "BLOCK").exists() and time.time() < deadline:
            time.sleep(0.05)
        return Outcome([Measurement("x", float(torch.rand(1, generator=ctx.generator)),
                                    expected=0.5, tolerance=0.5)])
''')


@pytest.fixture
def sweep_env(tmp_path: Path) -> tuple[dict, Path]:
    mod = tmp_path / "mod"
    mod.mkdir()
    (mod / "sweepcli_claims.py").write_text(CLAIMS)
    (mod / "BLOCK").write_text("")
    env = dict(os.environ)
    env["PYTHONPATH"] = str(mod) + os.pathsep + env.get("PYTHONPATH", "")
    env["DROPREG_CLAIM_MODULES"] = "sweepcli_claims"
    yield env, mod
    (mod / "BLOCK").unlink(missing_ok=True)  # lets any straggler finish


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped) counts as gone
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def _json_files(out: Path) -> list[Path]:
    return sorted(out.glob("seed-*/results/*"))


@pytest.mark.parametrize("executor, sig", [("process", signal.SIGINT), ("serial", signal.SIGKILL)],
                         ids=["process-sigint", "serial-sigkill"])
def test_killed_sweep_leaves_whole_files_and_resume_runs_the_rest(sweep_env, tmp_path,
                                                                 executor, sig):
    env, mod = sweep_env
    out = tmp_path / "out"
    args = [sys.executable, "-m", "dropreg", "reproduce", "--only", "sweepcli", "--seeds",
            "0-2", "--threads-per-job", "1", "--out", str(out)]
    jobs = ["--executor", executor] + (["--jobs", "2"] if executor == "process" else [])
    log = tmp_path / "driver.log"  # a file: a full pipe would block the driver
    with open(log, "w") as sink:  # PYTHONFAULTHANDLER: a hung driver's stacks on SIGABRT
        # SIGINT at its default in the driver: a test run started in the background of a
        # non-interactive shell inherits SIGINT ignored, and so would the driver
        proc = subprocess.Popen(args + jobs, env=dict(env, PYTHONFAULTHANDLER="1"),
                                stdout=sink, stderr=sink,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    first = out / "seed-0" / "results" / "sweepcli.fast.json"
    deadline = time.time() + 180
    while not (first.exists() and list(mod.glob("pid-*"))) and time.time() < deadline:
        time.sleep(0.1)
    assert first.exists(), log.read_text()
    proc.send_signal(sig)
    try:
        rc = proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGABRT)  # faulthandler writes every thread's stack to the log
        proc.wait(timeout=30)
        pytest.fail("the driver did not exit after the signal; its threads:\n" + log.read_text())
    assert rc == (130 if sig == signal.SIGINT else -signal.SIGKILL), log.read_text()
    files = _json_files(out)
    assert files and all(f.suffix == ".json" for f in files)  # no temporary file left
    for f in files:
        json.loads(f.read_text())  # whole, parseable
    assert not any(f.name == "sweepcli.slow.json" for f in files)  # it was still blocked
    if sig == signal.SIGINT:  # the driver stopped its workers before it exited
        pids = [int(p.name.split("-")[2]) for p in mod.glob("pid-*")]
        deadline = time.time() + 15
        while any(_alive(p) for p in pids) and time.time() < deadline:
            time.sleep(0.1)
        assert not any(_alive(p) for p in pids)
    stored = {f: f.stat().st_mtime_ns for f in files}

    (mod / "BLOCK").unlink()
    resumed = subprocess.run(args + ["--resume"], env=env, capture_output=True, text=True,
                             timeout=180)
    assert resumed.returncode == 0, resumed.stderr
    assert {f: f.stat().st_mtime_ns for f in files} == stored  # kept, not rerun
    assert len(_json_files(out)) == 6  # 2 claims x 3 seeds
    md = (out / "report.md").read_text()
    assert md.count("| reproduced 3/3 | **reproduced** |") == 2 and "3: 0, 1, 2" in md
    for s in range(3):
        assert (out / f"seed-{s}" / "report.html").is_file()
