"""Sweeps without an engine: seed lists, grouping, units, layout, resume, pooling, the sweep report
and the shared-run declaration."""

from __future__ import annotations

import dataclasses
import math
import statistics
from dataclasses import dataclass

import pytest
import torch

from dropreg.cli import main
from dropreg.experiments.claims import (
    _REGISTRY,
    Measurement,
    Outcome,
    claim,
    get_claim,
    registered_claims,
)
from dropreg.experiments.context import ClaimContext
from dropreg.experiments.pooled import pool_claim, pool_measurement, write_sweep_report
from dropreg.experiments.runner import run_claim
from dropreg.experiments.store import ClaimResult, write_result
from dropreg.experiments.sweep import (
    Unit,
    claim_groups,
    missing_units,
    parse_seeds,
    plan_units,
    seed_folder,
    sweep_folders,
)


@dataclass(frozen=True)
class _S:
    n: int


SETTINGS = {"smoke": _S(1), "quick": _S(2), "full": _S(3)}


@pytest.fixture
def make_claims():
    """Register claims ``unit.<name>`` with the given ``shares``; removed afterwards."""
    made = []

    def make(**shares):
        out = []
        for name, stages in shares.items():
            cid = f"unit.{name}"

            def run(ctx):
                for stage in ctx.shares or ():
                    ctx.shared(stage, lambda s, g: torch.randn(2, generator=g))
                return Outcome([Measurement("x", float(torch.rand(1, generator=ctx.generator)),
                                            kind="info")])

            claim(cid, "unit", "test", settings=SETTINGS, shares=stages)(run)
            made.append(cid)
            out.append(get_claim(cid))
        return out

    yield make
    for cid in made:
        _REGISTRY.pop(cid, None)


# ------------------------------------------------------------------------------ seed lists
@pytest.mark.parametrize("text, seeds", [
    ("5", [5]), ("0-9", list(range(10))), ("0,3,7", [0, 3, 7]), ("0-2,9", [0, 1, 2, 9]),
    (" 4 - 6 , 1", [4, 5, 6, 1]), ("3-3", [3]),
])
def test_parse_seeds_reads_ints_ranges_and_lists(text, seeds):
    assert parse_seeds(text) == seeds


@pytest.mark.parametrize("text, needle", [
    ("", "got ''"), ("a", "'a'"), ("1,,2", "got '1,,2'"), ("3-1", "runs backwards"),
    ("-2", "'-2'"), ("0-2,1", "seed 1 appears twice"), ("1.5", "'1.5'"), ("0-", "'0-'"),
])
def test_parse_seeds_names_the_argument_and_the_allowed_form(text, needle):
    with pytest.raises(ValueError) as info:
        parse_seeds(text)
    msg = str(info.value)
    assert msg.startswith("--seeds:") and needle in msg and "allowed:" in msg


# ------------------------------------------------------------------------------ grouping
def test_groups_join_claims_transitively_and_keep_order(make_claims):
    a, b, c, d, e = make_claims(a=("s1",), b=(), c=("s2",), d=("s2", "s1"), e=("s3",))
    groups = [[x.id.split(".")[1] for x in g] for g in claim_groups([a, b, c, d, e])]
    assert groups == [["a", "c", "d"], ["b"], ["e"]]  # a-d via s1, c-d via s2
    assert [[x.id for x in g] for g in claim_groups([b, e])] == [["unit.b"], ["unit.e"]]
    assert claim_groups([]) == []


def test_every_real_claim_group_shares_a_declared_stage():
    claims = registered_claims()
    for group in claim_groups(claims):
        if len(group) > 1:  # every member shares some stage with another member
            for c in group:
                others = set().union(*(o.shares for o in group if o is not c))
                assert set(c.shares) & others, (c.id, [o.id for o in group])
    sizes = sorted(len(g) for g in claim_groups(claims))
    assert sum(sizes) == len(claims) and sizes[-1] >= 2


def test_units_cover_every_claim_once_per_seed(make_claims):
    claims = make_claims(a=("s",), b=(), c=("s",))
    units = plan_units(claims, "smoke", [3, 1])
    assert units == [Unit(("unit.a", "unit.c"), "smoke", 3), Unit(("unit.b",), "smoke", 3),
                     Unit(("unit.a", "unit.c"), "smoke", 1), Unit(("unit.b",), "smoke", 1)]


# ------------------------------------------------------------------------------ declaration
def test_a_claim_cannot_use_a_shared_run_it_did_not_declare(make_claims):
    (c,) = make_claims(sneaky=("unit.declared",))

    def sneaky(ctx):
        ctx.shared("unit.undeclared", lambda s, g: 1)
        return Outcome([Measurement("x", 1.0, expected=1.0)])

    _REGISTRY[c.id] = dataclasses.replace(c, run=sneaky)
    r = run_claim(get_claim(c.id), "smoke", 0)
    assert r.verdict == "error" and "unit.undeclared" in r.error and "shares=" in r.error
    ctx = ClaimContext.for_claim("x.y", "smoke", 0, None)  # library use: no declaration
    assert ctx.shared("anything", lambda s, g: 2) == 2
    with pytest.raises(TypeError, match="shares"):
        claim("unit.bad", "unit", "t", settings=SETTINGS, shares="a-string")


# ------------------------------------------------------------------------------ layout, resume
def _result(cid: str, seed: int, value: float, verdict: str = "reproduced",
            settings: _S = SETTINGS["smoke"], **kw) -> ClaimResult:
    m = [Measurement("gap", value, expected=0.5, kind="at_most")]
    return ClaimResult(id=cid, paper=cid.split(".")[0], statement="s", verdict=verdict,
                       measurements=m if verdict != "error" else [], profile="smoke",
                       seed=seed, settings={"type": "_S", "n": settings.n}, **kw)


def test_layout_single_seed_is_flat_several_seeds_get_folders(tmp_path):
    assert seed_folder(tmp_path, 4, several=False) == tmp_path
    assert seed_folder(tmp_path, 4, several=True) == tmp_path / "seed-4"
    for s in (10, 2):
        write_result(seed_folder(tmp_path, s, True), _result("unit.a", s, 0.1))
    (tmp_path / "seed-x").mkdir()
    (tmp_path / "seed-7").mkdir()  # no results: not a seed folder of the sweep
    assert list(sweep_folders(tmp_path)) == [2, 10]
    assert sweep_folders(tmp_path / "missing") == {}


def test_resume_keeps_stored_results_and_reruns_only_the_rest(make_claims, tmp_path):
    a, b, c = make_claims(a=("s",), b=(), c=("s",))
    units = plan_units([a, b, c], "smoke", [0, 1])
    write_result(seed_folder(tmp_path, 0, True), _result("unit.a", 0, 0.1))
    write_result(seed_folder(tmp_path, 0, True), _result("unit.b", 0, 0.1))
    write_result(seed_folder(tmp_path, 1, True), _result("unit.c", 1, 0.1, verdict="error"))
    write_result(seed_folder(tmp_path, 1, True), _result("unit.b", 1, 0.1,
                                                         settings=SETTINGS["quick"]))
    left = missing_units(units, tmp_path, several=True)
    assert left == [Unit(("unit.c",), "smoke", 0),  # a is stored; c still to run
                    Unit(("unit.a", "unit.c"), "smoke", 1),  # an error is rerun
                    Unit(("unit.b",), "smoke", 1)]  # stored with other settings: rerun
    assert missing_units(units[:1], tmp_path, several=False) == units[:1]  # other layout


# ------------------------------------------------------------------------------ pooling
def test_pooled_measurement_is_mean_stderr_min_max_across_seeds():
    values = [0.31, 0.12, 0.55, 0.2]
    p = pool_measurement([Measurement("d", v, expected=0.0, kind="at_least") for v in values])
    m = p.measurement
    assert m.value == pytest.approx(statistics.fmean(values), rel=1e-15)
    assert m.stderr == pytest.approx(statistics.stdev(values) / math.sqrt(4), rel=1e-14)
    assert (p.minimum, p.maximum, m.n) == (0.12, 0.55, 4)
    assert m.status == "pass"  # mean - 2 s.e. = 0.295 - 0.187 > 0
    near = pool_measurement([Measurement("d", v, expected=0.0, kind="at_least")
                             for v in (0.3, -0.2, 0.1, -0.1)])
    assert near.measurement.status == "undecided"  # the band straddles the threshold
    assert pool_measurement([Measurement("d", 0.1, expected=0.0,
                                         kind="at_least")]).measurement.stderr is None


def test_identical_values_are_flagged_unless_the_claim_is_deterministic():
    same = [Measurement("exact", 1e-16, expected=0.0, tolerance=1e-12)] * 3
    assert pool_measurement(same).seed_not_used
    assert not pool_measurement(same, deterministic=True).seed_not_used
    assert not pool_measurement(same[:1]).seed_not_used  # one seed proves nothing


def test_a_prediction_that_differs_between_seeds_is_reported_not_judged():
    p = pool_measurement([Measurement("v", 1.0, expected=1.0, tolerance=0.1),
                          Measurement("v", 2.0, expected=2.0, tolerance=0.1)])
    assert p.mixed_prediction and p.measurement.status == "info"


def test_a_tolerance_in_standard_errors_is_judged_on_the_pooled_standard_error():
    # each seed: ratio within 5 of its own s.e. of 1 (the tolerances differ, the rule does not)
    seeds = [Measurement("r", v, expected=1.0, stderr=se, tolerance_z=5)
             for v, se in ((0.995, 0.004), (1.003, 0.002), (1.001, 0.003))]
    assert len({m.judged_tolerance for m in seeds}) == 3
    p = pool_measurement(seeds)
    m = p.measurement
    assert not p.mixed_prediction and m.tolerance_z == 5
    across = statistics.stdev([0.995, 1.003, 1.001]) / math.sqrt(3)
    within = math.sqrt(0.004 ** 2 + 0.002 ** 2 + 0.003 ** 2) / 3
    assert m.stderr == pytest.approx(max(across, within), rel=1e-14)
    assert m.judged_tolerance == pytest.approx(5 * m.stderr, rel=1e-14) and m.status == "pass"
    # a pooled mean far from 1 at the pooled precision fails, though each seed alone passed
    off = [Measurement("r", 1.0 + 4.9 * se, expected=1.0, stderr=se, tolerance_z=5)
           for se in (0.01, 0.01, 0.01, 0.01)]
    assert all(m.status == "pass" for m in off)
    assert pool_measurement(off).measurement.status == "fail"  # 4.9 se_i = 9.8 pooled s.e.
    # a fixed base plus z s.e. pools the base unchanged
    based = pool_measurement([Measurement("r", v, expected=1.0, tolerance=0.05, tolerance_z=2,
                                          stderr=0.01) for v in (1.0, 1.02)]).measurement
    assert based.tolerance_base == 0.05
    assert based.judged_tolerance == pytest.approx(0.05 + 2 * based.stderr, rel=1e-14)
    # different z or base between seeds: a prediction that differs, not judged
    assert pool_measurement([Measurement("r", 1.0, expected=1.0, stderr=0.01, tolerance_z=5),
                             Measurement("r", 1.0, expected=1.0, stderr=0.01, tolerance_z=3)]
                            ).mixed_prediction


def test_across_seed_standard_error_is_not_trusted_below_the_seeds_own():
    # two seeds that agree by chance: the across-seed s.e. is tiny, the seeds' own errors are not
    seeds = [Measurement("d", v, expected=0.0, kind="at_least", stderr=0.06) for v in
             (0.080, 0.081)]
    m = pool_measurement(seeds).measurement
    assert m.stderr == pytest.approx(math.sqrt(2) * 0.06 / 2, rel=1e-14)
    assert m.status == "undecided"  # 0.0805 - 2 x 0.042 < 0 < 0.0805


def test_pooled_verdict_tally_errors_and_missing_seeds():
    results = {0: _result("unit.a", 0, 0.1), 1: _result("unit.a", 1, 0.9, "not reproduced"),
               2: _result("unit.a", 2, 0.3), 3: _result("unit.a", 3, 0, verdict="error")}
    p = pool_claim(results, seeds=[0, 1, 2, 3, 4])
    assert p.tally_text == "reproduced 2/4, not reproduced 1/4, error 1/4 (1 seeds not run)"
    assert p.missing_seeds == [4] and p.measurements[0].measurement.n == 3
    # mean 0.433 +- 0.240: the band crosses 0.5, so the pooled gap is undecided
    assert p.verdict == "inconclusive" and "undecided" in p.reason
    good = pool_claim({s: _result("unit.a", s, v) for s, v in enumerate((0.1, 0.12, 0.11))})
    assert good.verdict == "reproduced" and good.reason is None and "0.11" in good.key_number
    bad = pool_claim({s: _result("unit.a", s, v) for s, v in enumerate((0.9, 0.8, 0.85))})
    assert bad.verdict == "not reproduced"
    dead = pool_claim({0: _result("unit.a", 0, 0, verdict="error")})
    assert dead.verdict == "error"
    control = pool_claim({0: _result("unit.a", 0, 0.1),
                          1: _result("unit.a", 1, 0.1, inconclusive_reason="control failed")})
    assert control.verdict == "inconclusive" and "control failed" in control.reason


def test_sweep_report_pools_seeds_and_links_each_seed(tmp_path):
    for s, v in enumerate((0.1, 0.2, 0.15)):
        write_result(seed_folder(tmp_path, s, True), _result("unit.a", s, v))
        write_result(seed_folder(tmp_path, s, True), _result("unit.b", s, 0.7,
                                                             "not reproduced"))
    html_path, md_path, pooled = write_sweep_report(tmp_path)
    md, html = md_path.read_text(), html_path.read_text()
    assert [(p.id, p.verdict) for p in pooled] == [("unit.a", "reproduced"),
                                                  ("unit.b", "not reproduced")]
    assert "reproduced 3/3" in md and "not reproduced 3/3" in md
    assert "0.15 ± 0.02887 (3)" in md  # mean +- s.e. of 0.1, 0.2, 0.15
    assert "same in every seed" in md  # unit.b's 0.7 in every seed
    for s in range(3):
        assert f"(seed-{s}/report.md#unita)" in md
        assert f'href="seed-{s}/report.html#unit.a"' in html
    with pytest.raises(FileNotFoundError, match="seed"):
        write_sweep_report(tmp_path / "seed-0")


def test_report_command_rebuilds_every_seed_and_the_pooled_report(tmp_path, capsys):
    for s in (0, 1):
        write_result(seed_folder(tmp_path, s, True), _result("unit.a", s, 0.1 + s / 10))
    assert main(["report", str(tmp_path)]) == 0
    assert "pooled over 2 seeds" in capsys.readouterr().out
    for s in (0, 1):
        assert (tmp_path / f"seed-{s}" / "report.html").is_file()
    assert "reproduced 2/2" in (tmp_path / "report.md").read_text()
    assert main(["report", str(tmp_path), "--readme", str(tmp_path / "R.md")]) == 2
    assert "--readme and --papers take a single-seed folder" in capsys.readouterr().err


# ------------------------------------------------------------------------------ CLI errors
@pytest.mark.parametrize("args, needle", [
    (["--seeds", "3-1"], "--seeds: range '3-1' runs backwards"),
    (["--seeds", "x"], "--seeds: cannot read 'x'"),
    (["--jobs", "0", "--executor", "process"], "--jobs must be an int >= 1, got 0"),
    (["--threads-per-job", "0"], "--threads-per-job must be an int >= 1, got 0"),
    (["--gpus-per-job", "-1"], "--gpus-per-job must be a number >= 0"),
    (["--address", "nohost"], "--address must be auto or HOST:PORT, got 'nohost'"),
    (["--jobs", "2"], "--jobs 2 needs --executor process or ray"),
    (["--executor", "process", "--address", "auto"], "--address joins a Ray cluster"),
    (["--executor", "process", "--gpus-per-job", "1"], "--gpus-per-job places GPUs with Ray"),
])
def test_bad_sweep_arguments_are_one_line_usage_errors(args, needle, tmp_path, capsys):
    code = main(["reproduce", "--only", "cavazza2018", "--out", str(tmp_path), *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and needle in err[0], err


def test_seed_and_seeds_exclude_each_other(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["reproduce", "--seed", "1", "--seeds", "0-2", "--out", str(tmp_path)])
    assert info.value.code == 2 and "--seeds" in capsys.readouterr().err


def test_ray_executor_without_ray_names_the_extra(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "ray", None)  # import ray -> ImportError
    code = main(["reproduce", "--only", "cavazza2018", "--out", str(tmp_path), "--executor",
                 "ray"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "dropreg[ray]" in err[0]


def test_a_unit_whose_claim_cannot_load_fails_with_a_clear_message():
    from dropreg.experiments.executors import SerialExecutor, UnitFailed

    with pytest.raises(UnitFailed, match="'unit.nowhere' is not registered in the worker"):
        list(SerialExecutor().run([Unit(("unit.nowhere",), "smoke", 0)]))
