"""The process and ray executors against serial, bit for bit, and Ray's retry of a dead worker.

The claims are test-only ones from a module the workers import (a run shared by two of them, BLAS
products) and fast smoke-profile real claims (pal2020's shared regression problem, cavazza2018).
Ray runs on one local cluster per module (``num_cpus=2``, no dashboard, bound to 127.0.0.1), shut
down afterwards.
"""

from __future__ import annotations

import sys
import textwrap

import pytest

from dropreg.experiments.claims import _REGISTRY
from dropreg.experiments.executors import ProcessExecutor, RayExecutor, SerialExecutor
from dropreg.experiments.sweep import Unit

CLAIMS_MODULE = "sweeptest_claims"
CLAIMS = textwrap.dedent('''
    import os
    from pathlib import Path

    import torch

    from dropreg.experiments.claims import Measurement, Outcome, claim

    ALL = dict.fromkeys(("smoke", "quick", "full"))
    MARKERS = Path({markers!r})


    def _stage(settings, g):
        return torch.randn(96, 96, generator=g, dtype=torch.float64)


    def _measure(ctx, k):
        A = ctx.shared("sweeptest.stage", _stage)
        x = torch.randn(96, k, generator=ctx.generator, dtype=torch.float64)
        y = torch.linalg.solve(A @ A.T + torch.eye(96, dtype=torch.float64), A @ x)
        z = torch.randn(300, 40, generator=ctx.generator) @ torch.randn(40, 30,
                                                                    generator=ctx.generator)
        return Outcome([Measurement("solve", float(y.sum()), kind="info"),
                        Measurement("float32 product", float(z.square().sum()), kind="info"),
                        Measurement("stage", float(A[0, 0]), kind="info")],
                       details={{"y": y[:, 0].tolist()}})


    @claim("sweeptest.a", "sweeptest", "a", settings=ALL, shares=("sweeptest.stage",))
    def a(ctx):
        return _measure(ctx, 3)


    @claim("sweeptest.b", "sweeptest", "b", settings=ALL, shares=("sweeptest.stage",))
    def b(ctx):
        return _measure(ctx, 5)


    @claim("sweeptest.dies-once", "sweeptest", "kills its worker once per seed", settings=ALL)
    def dies_once(ctx):
        marker = MARKERS / f"died-{{ctx.seed}}"
        if not marker.exists():
            marker.write_text(str(os.getpid()))
            os._exit(3)  # the worker process dies, as an out-of-memory kill would
        return Outcome([Measurement("survived", 1.0, expected=1.0)],
                       details={{"died_in": int(marker.read_text()), "ran_in": os.getpid()}})
''')
TEST_IDS = ("sweeptest.a", "sweeptest.b")
REAL_IDS = ("pal2020.dropblock-sgd-reaches-closed-form",
            "pal2020.dropblock-approximation-training-curves",
            "cavazza2018.dropout-expected-objective")
UNITS = [Unit(ids, "smoke", seed) for seed in (0, 1)
         for ids in (TEST_IDS, REAL_IDS[:2], REAL_IDS[2:])]


@pytest.fixture(scope="module")
def claims_module(tmp_path_factory):
    """The test claims as an importable module, named in DROPREG_CLAIM_MODULES (which the
    executors hand to their workers with the driver's sys.path)."""
    folder = tmp_path_factory.mktemp("claims")
    markers = tmp_path_factory.mktemp("markers")
    (folder / f"{CLAIMS_MODULE}.py").write_text(CLAIMS.format(markers=str(markers)))
    mp = pytest.MonkeyPatch()
    mp.syspath_prepend(str(folder))
    mp.setenv("DROPREG_CLAIM_MODULES", CLAIMS_MODULE)
    yield markers
    mp.undo()
    for cid in [c for c in _REGISTRY if c.startswith("sweeptest.")]:
        _REGISTRY.pop(cid)
    sys.modules.pop(CLAIMS_MODULE, None)


def _comparable(result) -> dict:
    """Everything a result holds except when and how long it ran and where."""
    d = result.to_dict()
    for key in ("elapsed_s", "started_at", "environment"):
        d.pop(key)
    d["measurements"] = [m for m in d["measurements"] if m["unit"] != "s"]  # wall times
    d["shared_runs"] = [{k: v for k, v in u.items() if k != "elapsed_s"}
                        for u in d["shared_runs"]]
    d["details"] = _drop_seconds(d["details"])
    return d


def _drop_seconds(x):
    if isinstance(x, dict):
        return {k: _drop_seconds(v) for k, v in x.items() if k != "seconds"}
    if isinstance(x, list):
        return [_drop_seconds(v) for v in x]
    return x


def _run(executor, units=UNITS) -> dict:
    out = {}
    try:
        for unit, result in executor.run(units):
            assert result.seed == unit.seed and result.id in unit.claim_ids
            out[(unit.seed, result.id)] = result
    finally:
        executor.close()
    return out


@pytest.fixture(scope="module")
def serial(claims_module) -> dict:
    return _run(SerialExecutor(threads=1))


def _assert_same(got: dict, serial: dict, executor: str) -> None:
    assert sorted(got) == sorted(serial)
    for key, r in got.items():
        assert r.verdict != "error", r.error
        assert _comparable(r) == _comparable(serial[key]), key
        assert r.environment["executor"] == executor
        assert r.environment["torch_threads"] == r.environment["threads_per_job"] == 1
        assert r.environment["blas_threads"] in (1, None)


def test_serial_reference_shares_the_stage_inside_a_group(serial):
    a, b = serial[(0, "sweeptest.a")], serial[(0, "sweeptest.b")]
    assert [u["cached"] for u in a.shared_runs + b.shared_runs] == [False, True]
    assert a.measurements[2].value == b.measurements[2].value  # the same shared run
    assert a.measurements[2].value != serial[(1, "sweeptest.a")].measurements[2].value


def test_process_executor_matches_serial_bitwise(serial):
    _assert_same(_run(ProcessExecutor(jobs=2, threads=1)), serial, "process")


@pytest.fixture(scope="module")
def ray_cluster(claims_module):
    ray = pytest.importorskip("ray", reason="the ray executor needs the extra dropreg[ray]")
    from dropreg.experiments.executors import start_local_ray

    start_local_ray(num_cpus=2)
    yield ray
    ray.shutdown()


def test_local_ray_head_listens_on_the_loopback_only(ray_cluster):
    nodes = [k for k in ray_cluster.cluster_resources() if k.startswith("node:")
             and k != "node:__internal_head__"]
    assert nodes == ["node:127.0.0.1"]


def test_ray_executor_matches_serial_bitwise(serial, ray_cluster):
    ex = RayExecutor(jobs=2, threads=1)
    _assert_same(_run(ex), serial, "ray")
    assert ray_cluster.is_initialized()  # a cluster it joined is left running


def test_ray_retries_a_unit_whose_worker_died(claims_module, ray_cluster):
    units = [Unit(("sweeptest.dies-once",), "smoke", s) for s in (0, 1)]
    got = _run(RayExecutor(jobs=2, threads=1), units)
    for s in (0, 1):
        r = got[(s, "sweeptest.dies-once")]
        assert r.verdict == "reproduced"
        assert r.details["died_in"] != r.details["ran_in"]  # rerun in a new worker
        assert (claims_module / f"died-{s}").exists()
