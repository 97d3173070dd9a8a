"""The claim framework: verdict rules with uncertainty, measurement kinds, context and runner."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from scipy import stats

from dropreg.experiments import measures
from dropreg.experiments.claims import (
    _REGISTRY,
    Measurement,
    Outcome,
    claim,
    reason_of,
    verdict_of,
)
from dropreg.experiments.context import ClaimContext, RunCache
from dropreg.experiments.runner import run_claim
from dropreg.experiments.store import ClaimResult


def at_least(value, stderr=None, interval=None, n=None):
    return Measurement("m", value, expected=1.0, kind="at_least", stderr=stderr,
                       interval=interval, n=n)


@pytest.mark.parametrize("value, stderr, status", [
    (1.5, 0.2, "pass"),       # band [1.1, 1.9] above 1
    (1.3, 0.2, "undecided"),  # band [0.9, 1.7] straddles 1
    (0.5, 0.2, "fail"),       # band [0.1, 0.9] below 1
    (1.0, 0.0, "pass"),       # on the threshold with no uncertainty
    (0.99, None, "fail"),
    (float("nan"), 0.1, "fail"),
])
def test_one_sided_status_uses_the_band(value, stderr, status):
    assert at_least(value, stderr).status == status
    # at_most is the mirror image
    mirrored = Measurement("m", -value, expected=-1.0, kind="at_most", stderr=stderr)
    assert mirrored.status == status


def test_interval_overrides_stderr_and_close_ignores_it():
    assert at_least(2.0, stderr=10.0, interval=(1.2, 2.5)).status == "pass"
    assert at_least(2.0, interval=(0.8, 2.5)).status == "undecided"
    close = Measurement("c", 1.04, expected=1.0, tolerance=0.05, stderr=1.0)
    assert close.status == "pass"  # the tolerance of "close" is already the allowance


def test_verdict_order_fail_then_undecided_then_pass():
    ok, undecided, bad = at_least(2.0, 0.1), at_least(1.1, 0.1), at_least(0.0, 0.1)
    assert verdict_of([ok]) == "reproduced"
    assert verdict_of([ok, undecided]) == "inconclusive"
    assert verdict_of([ok, undecided, bad]) == "not reproduced"
    assert verdict_of([Measurement("i", 1.0, kind="info")]) == "inconclusive"


def test_samples_to_resolve_follows_the_square_root_law():
    m = at_least(1.1, stderr=0.1, n=4)  # needs 2 * se / 0.1 <= 1: se halves -> 4x samples
    assert m.samples_to_resolve() == 16
    assert at_least(3.0, stderr=0.1, n=4).samples_to_resolve() is None


def test_reason_names_the_failing_and_undecided_measurements():
    o = Outcome([at_least(0.0, 0.1), at_least(1.1, 0.1, n=4)])
    text = reason_of(o)
    assert "m = 0" in text and "predicted >= 1" in text and "about 16 samples" in text
    assert reason_of(Outcome([at_least(2.0)])) is None
    assert reason_of(Outcome([at_least(0.0)], reason="because")) == "because"


def test_bad_uncertainties_raise():
    with pytest.raises(ValueError, match="stderr"):
        at_least(1.0, stderr=-1.0)
    with pytest.raises(ValueError, match="interval"):
        at_least(1.0, interval=(2.0, 1.0))


def test_sign_of_difference_matches_a_hand_computation():
    d = [0.3, 0.1, 0.25, 0.05, 0.2]
    m = measures.sign_of_difference("d", d, predicted="positive")
    assert m.value == pytest.approx(np.mean(d), abs=1e-15)
    assert m.stderr == pytest.approx(np.std(d, ddof=1) / math.sqrt(5), abs=1e-15)
    assert m.status == "pass" and m.n == 5
    assert measures.sign_of_difference("d", d, predicted="negative").status == "fail"
    with pytest.raises(ValueError, match="predicted"):
        measures.sign_of_difference("d", d, predicted="up")
    with pytest.raises(ValueError, match="at least 2"):
        measures.sign_of_difference("d", [1.0], predicted="positive")


def test_slope_interval_matches_the_t_formula():
    g = np.random.default_rng(3)
    x = np.linspace(0, 1, 12)
    y = 0.7 * x + 0.05 * g.standard_normal(12)
    m = measures.slope("s", x, y, predicted="positive")
    X = np.stack([np.ones_like(x), x], 1)
    beta, res, *_ = np.linalg.lstsq(X, y, rcond=None)
    s2 = res[0] / (12 - 2)
    se = math.sqrt(s2 / ((x - x.mean()) ** 2).sum())
    t = stats.t.ppf(0.975, 10)
    assert m.value == pytest.approx(beta[1], rel=1e-12)
    assert m.interval == pytest.approx((beta[1] - t * se, beta[1] + t * se), rel=1e-10)


def test_correlation_interval_covers_at_its_level():
    # coverage of the Fisher-z interval of a Pearson correlation over 400 bivariate normal draws
    g = np.random.default_rng(0)
    rho, n, hits = 0.5, 30, 0
    cov = [[1.0, rho], [rho, 1.0]]
    for _ in range(400):
        xy = g.multivariate_normal([0, 0], cov, size=n)
        m = measures.correlation("r", xy[:, 0], xy[:, 1], predicted="positive",
                                 method="pearson")
        hits += m.interval[0] <= rho <= m.interval[1]
    # 95% nominal; 400 draws: s.d. of the coverage ~0.011, allow 4 s.d.
    assert abs(hits / 400 - 0.95) < 4 * math.sqrt(0.95 * 0.05 / 400)


@dataclass(frozen=True)
class _S:
    n: int


def _build(settings, generator):
    return torch.randn(settings.n, generator=generator)


def test_shared_runs_are_keyed_by_name_settings_and_seed():
    runs = RunCache()
    a = ClaimContext.for_claim("dropreg.a", "quick", 0, _S(2), runs=runs)
    b = ClaimContext.for_claim("dropreg.b", "quick", 0, _S(2), runs=runs)
    x = a.shared("draw", _build)
    assert torch.equal(x, b.shared("draw", _build))  # same stage, other claim: same run
    assert a.shared("draw", _build, settings=_S(3)).shape == (3,)  # other settings: other run
    assert len(runs) == 2
    assert not torch.equal(x, a.shared("other", _build))  # other stage: other stream
    assert [u["cached"] for u in b.shared_runs] == [True]
    with pytest.raises(TypeError, match="hashable"):
        a.shared("bad", _build, settings=[1])
    # claim generators differ per claim and per seed
    assert not torch.equal(torch.randn(3, generator=a.generator),
                           torch.randn(3, generator=b.generator))


@pytest.fixture
def temp_claim():
    made = []

    def make(fn, **kw):
        cid = f"dropreg.test-{len(made)}"
        claim(cid, "dropreg", "test", settings={"smoke": _S(1), "quick": _S(2), "full": _S(3)},
              **kw)(fn)
        made.append(cid)
        return _REGISTRY[cid]

    yield make
    for cid in made:
        _REGISTRY.pop(cid, None)


def test_runner_isolates_global_random_state_and_pins_threads(temp_claim):
    def rude(ctx):
        torch.manual_seed(123)  # a claim that reseeds the global generators ...
        np.random.seed(123)
        random.seed(123)
        x = torch.randn(2, generator=ctx.generator)
        return Outcome([Measurement("x", float(x[0]), kind="info")],
                       details={"n": ctx.settings.n, "threads": torch.get_num_threads()})

    c = temp_claim(rude)
    torch.manual_seed(7)
    np.random.seed(7)
    random.seed(7)
    expected = (torch.rand(1), np.random.rand(), random.random())
    torch.manual_seed(7)
    np.random.seed(7)
    random.seed(7)
    before = torch.get_num_threads()
    r = run_claim(c, "smoke", seed=0, threads=1)
    # ... does not change what runs after it
    assert torch.equal(torch.rand(1), expected[0])
    assert np.random.rand() == expected[1] and random.random() == expected[2]
    assert r.details == {"n": 1, "threads": 1}
    assert r.environment["torch_threads"] == 1 and torch.get_num_threads() == before
    assert r.settings == {"type": "_S", "n": 1}
    assert run_claim(c, "smoke", seed=1).measurements[0].value != r.measurements[0].value


def test_runner_draws_figures_from_details_and_records_reasons(temp_claim):
    from dropreg.experiments.claims import Figure

    def drawer(details):
        return [Figure("f", f"value {details['v']}", b"\x89PNG")]

    def failing(ctx):
        return Outcome([at_least(0.0, 0.1)], details={"v": 3})

    r = run_claim(temp_claim(failing, figure=drawer), "quick", seed=0)
    assert r.verdict == "not reproduced" and "predicted >= 1" in r.reason
    assert [f.caption for f in r.figures] == ["value 3"]
    back = ClaimResult.from_dict(r.to_dict())
    assert back.reason == r.reason and back.measurements[0].status == "fail"


def test_unknown_profile_raises(temp_claim):
    c = temp_claim(lambda ctx: Outcome([]))
    with pytest.raises(ValueError, match="profile"):
        run_claim(c, "medium", seed=0)


def test_tolerance_z_adds_standard_errors_and_round_trips():
    m = Measurement("r", 1.02, expected=1.0, tolerance=0.01, tolerance_z=2, stderr=0.004)
    assert m.judged_tolerance == pytest.approx(0.018, rel=1e-14) and m.tolerance_base == 0.01
    assert m.status == "fail"  # |0.02| > 0.018
    back = Measurement.from_dict(m.to_dict())
    assert back == m and back.tolerance_base == 0.01
    assert Measurement("r", 1.0, expected=1.0, tolerance=0.3).tolerance_base == 0.3
    assert m.to_dict()["tolerance"] == pytest.approx(0.018, rel=1e-14)


def test_tolerance_z_survives_dataclasses_replace():
    """The judged tolerance is derived, so a replaced measurement is judged with its own
    standard error (not the old allowance added twice)."""
    import dataclasses

    m = Measurement("r", 1.02, expected=1.0, tolerance=0.01, tolerance_z=2, stderr=0.004)
    same = dataclasses.replace(m, name="r2")
    assert same.judged_tolerance == pytest.approx(0.018, rel=1e-14)
    wider = dataclasses.replace(m, stderr=0.01)
    assert wider.judged_tolerance == pytest.approx(0.03, rel=1e-14) and wider.tolerance == 0.01


@pytest.mark.parametrize("kwargs, needle", [
    ({"tolerance_z": 2}, "tolerance_z needs stderr"),
    ({"tolerance_z": -1, "stderr": 0.1}, "tolerance_z must be a finite number >= 0"),
    ({"tolerance_z": float("inf"), "stderr": 0.1}, "tolerance_z must be"),
    ({"tolerance_z": float("nan"), "stderr": 0.1}, "tolerance_z must be"),
])
def test_tolerance_z_refuses_bad_input(kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        Measurement("r", 1.0, expected=1.0, **kwargs)
