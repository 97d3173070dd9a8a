"""Pieces of one claim: stored one by one, reused by --resume, the same in parallel."""

from __future__ import annotations

import json
import operator

import pytest

from dropreg.cli import main
from dropreg.experiments import load_all
from dropreg.experiments.claims import get_claim
from dropreg.experiments.pieces import PieceOptions, item_key, piece_path, run_pieces
from dropreg.experiments.runner import run_claim

TRAINING = "wei2020.training-mlp-mnist1d"


def test_pieces_are_stored_and_reused(tmp_path):
    calls = []

    def square(x):
        calls.append(x)
        return x * x

    assert run_pieces(square, [1, 2, 3], name="sq", folder=tmp_path) == [1, 4, 9]
    assert json.loads(piece_path(tmp_path, "sq", 1).read_text()) == {"item": "2", "value": 4}
    calls.clear()
    seen = []
    assert run_pieces(square, [1, 2, 3], name="sq", folder=tmp_path, resume=True,
                      on_done=lambda i, reused: seen.append((i, reused))) == [1, 4, 9]
    assert calls == [] and seen == [(0, True), (1, True), (2, True)]
    # another item at the same index is computed again, not read back
    assert run_pieces(square, [1, 5, 3], name="sq", folder=tmp_path, resume=True) == [1, 25, 9]
    assert calls == [5]
    # without resume nothing is read
    calls.clear()
    run_pieces(square, [1, 5, 3], name="sq", folder=tmp_path)
    assert calls == [1, 5, 3]


def test_an_interrupted_run_keeps_its_finished_pieces(tmp_path):
    def fail_at_two(x):
        if x == 2:
            raise KeyboardInterrupt
        return -x

    with pytest.raises(KeyboardInterrupt):
        run_pieces(fail_at_two, [0, 1, 2, 3], name="p", folder=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p-0000.json", "p-0001.json"]
    calls = []
    assert run_pieces(lambda x: calls.append(x) or -x, [0, 1, 2, 3], name="p",
                      folder=tmp_path, resume=True) == [0, -1, -2, -3]
    assert calls == [2, 3]


def test_parallel_pieces_equal_serial_ones(tmp_path):
    items = [(a, b) for a in range(3) for b in range(2)]
    serial = run_pieces(operator.mul, items, name="m")
    assert run_pieces(operator.mul, items, name="m", folder=tmp_path, jobs=2) == serial
    assert len(list(tmp_path.iterdir())) == len(items)


def test_item_keys_do_not_hold_addresses():
    assert item_key((operator.mul, 1)) == "(_operator.mul, 1)"
    assert item_key((3,)) == "(3,)"
    assert "0x" not in item_key((run_claim, {"a": 1}))


@pytest.mark.parametrize("kwargs, word", [
    (dict(name="a b"), "name"), (dict(name="ok", jobs=0), "jobs"),
])
def test_bad_arguments_are_named(kwargs, word):
    with pytest.raises(ValueError, match=word):
        run_pieces(abs, [1], **kwargs)


def test_training_claim_resumes_from_its_pieces_with_the_same_numbers(tmp_path):
    load_all()
    claim = get_claim(TRAINING)
    fresh = run_claim(claim, "smoke", 0, threads=1)
    options = PieceOptions(str(tmp_path), jobs=2)
    parallel = run_claim(claim, "smoke", 0, threads=1, pieces=options)
    assert parallel.environment["claim_jobs"] == 2
    folder = tmp_path / "pieces" / TRAINING
    (run_dir,) = folder.iterdir()
    n = len(list(run_dir.iterdir()))
    assert n == len(fresh.details["results"]) * claim.settings_for("smoke").seeds
    resumed = run_claim(claim, "smoke", 0, threads=1,
                        pieces=PieceOptions(str(tmp_path), resume=True))
    assert resumed.environment["pieces_reused"] == n
    def numbers(result):  # every measured loss; the timings (h) differ from run to run
        return [(m.name, m.value, m.stderr) for m in result.measurements
                if not m.name.startswith("(h)") and m.value == m.value]

    assert len(numbers(fresh)) > 10
    for other in (parallel, resumed):
        assert numbers(other) == numbers(fresh)
        assert other.details["results"]["none"][0]["curve"] == \
            fresh.details["results"]["none"][0]["curve"]
        assert other.verdict == fresh.verdict
    # a run without --resume starts again: earlier pieces are removed first
    again = run_claim(claim, "smoke", 0, threads=1, pieces=PieceOptions(str(tmp_path)))
    assert again.environment["pieces_reused"] == 0


def test_cli_removes_a_claims_pieces_once_its_result_is_stored(tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["reproduce", "--only", TRAINING, "--profile", "smoke", "--out", str(out),
                 "--claim-jobs", "2", "--threads", "1"])
    assert code in (0, 1)
    assert (out / "results" / f"{TRAINING}.json").is_file()
    assert not (out / "pieces").exists()


@pytest.mark.parametrize("argv, word", [
    (["--claim-jobs", "0"], "--claim-jobs"),
    (["--claim-jobs", "2", "--executor", "process"], "--claim-jobs"),
])
def test_cli_refuses_bad_claim_jobs(tmp_path, capsys, argv, word):
    code = main(["reproduce", "--only", TRAINING, "--profile", "smoke",
                 "--out", str(tmp_path), *argv])
    assert code == 2
    assert word in capsys.readouterr().err


def test_report_names_reused_pieces_and_claim_jobs():
    from dropreg.experiments.report import _environment_line, time_line
    from dropreg.experiments.store import ClaimResult

    def result(reused):
        return ClaimResult(id="x.y", paper="x", statement="", verdict="reproduced",
                           measurements=[], profile="full", seed=0, elapsed_s=3.0,
                           environment={"python": "3.11", "claim_jobs": 2,
                                        "pieces_reused": reused, "executor": "serial",
                                        "jobs": 1, "threads_per_job": 1})

    assert "12 pieces stored by an interrupted run" in time_line(result(12))
    assert "pieces" not in time_line(result(0))
    line = _environment_line([result(0), result(12)])
    assert "2 processes per claim" in line and "different environments" not in line


@pytest.mark.parametrize("executor, jobs, phrase", [
    ("serial", None, "executor serial, 1 threads"),
    ("process", 2, "executor process, 2 jobs x 1 threads"),
    ("process", None, "executor process, cores / threads jobs x 1 threads"),
])
def test_environment_line_names_the_executor_without_placeholders(executor, jobs, phrase):
    from dropreg.experiments.report import _environment_line
    from dropreg.experiments.store import ClaimResult

    env = {"python": "3.11", "executor": executor, "threads_per_job": 1}
    if jobs is not None:
        env["jobs"] = jobs
    r = ClaimResult(id="x.y", paper="x", statement="", verdict="reproduced", measurements=[],
                    profile="quick", seed=0, elapsed_s=1.0, environment=env)
    line = _environment_line([r])
    assert phrase in line and "?" not in line.split(";", 1)[1]
