"""Dropout-aware curvature across processes: masks keyed by rows, and 2 and 3 gloo ranks
(spawned, file rendezvous, uneven shards, one empty) against one process in float64."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from dropreg.curvature import (
    DropoutRisk,
    HessianOperator,
    dropout_gradient_noise,
)
from dropreg.sites import BlockMasks, block_masks, dropout_sites

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))  # the spawned ranks import _dist_worker by name
import _dist_worker as W  # noqa: E402

STATES = ("clean", "fixed", "expected")


def _rel(a, b) -> float:
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    return float((a - b).abs().max()) / max(float(b.abs().max()), 1e-300)


# ------------------------------------------------------------------ masks keyed by rows, 1 process
def test_block_masks_do_not_depend_on_where_batches_begin():
    site = dropout_sites(nn.Sequential(nn.Dropout(0.5)))[0]
    whole = BlockMasks(11, 0, 10, (2,), block_rows=3)(site, (10, 4), torch.float64, "cpu", None)
    for start, stop in [(0, 1), (2, 7), (3, 6), (5, 10), (9, 10)]:
        part = BlockMasks(11, start, stop - start, (2,), block_rows=3)(
            site, (stop - start, 4), torch.float64, "cpu", None)
        assert torch.equal(part, whole[start:stop])
    other = BlockMasks(11, 0, 10, (3,), block_rows=3)(site, (10, 4), torch.float64, "cpu", None)
    assert not torch.equal(other, whole)  # mask sets differ
    # a forward pass whose dim 0 is not the rows gets one mask keyed by its first row
    shared = BlockMasks(11, 0, 10, (2,), block_rows=3)(site, (7, 4), torch.float64, "cpu", None)
    assert shared.shape == (7, 4)


def test_block_masks_follow_the_site_law_frequency():
    """Bernoulli(0.3) keep-rate of 20000 mask entries within 5 standard errors."""
    site = dropout_sites(nn.Sequential(nn.Dropout(0.3)))[0]
    m = BlockMasks(5, 0, 1000, (0,), block_rows=64)(site, (1000, 20), torch.float64, "cpu", None)
    kept = float((m > 0).double().mean())
    assert abs(kept - 0.7) <= 5 * (0.7 * 0.3 / m.numel()) ** 0.5
    assert torch.allclose(m[m > 0], torch.full_like(m[m > 0], 1 / 0.7))


@pytest.mark.parametrize("state", ["fixed", "expected"])
def test_masked_risk_does_not_depend_on_the_batches(state):
    net, X, y = W.problem()
    kw = dict(dropout=state, num_masks=3, block_rows=4)
    ref = DropoutRisk(net, W.half_mse, (X, y), generator=W.gen(5), **kw)
    v = torch.randn(ref.num_params, generator=W.gen(6), dtype=torch.float64)
    hv = HessianOperator(ref).matvec(v)
    loader = [(X[:2], y[:2]), (X[2:9], y[2:9]), (X[9:], y[9:])]
    for other in (DropoutRisk(net, W.half_mse, (X, y), batch_size=3, generator=W.gen(5), **kw),
                  DropoutRisk(net, W.half_mse, loader, generator=W.gen(5), **kw),
                  DropoutRisk(net, W.half_mse, (X, y), generator=W.gen(5), stack_masks=False,
                              **kw)):
        assert _rel(other.loss(), ref.loss()) <= 1e-12
        assert _rel(other.gradient(), ref.gradient()) <= 1e-12
        assert _rel(HessianOperator(other).matvec(v), hv) <= 1e-12
    seeded = DropoutRisk(net, W.half_mse, (X, y), generator=W.gen(6), **kw)
    assert _rel(seeded.loss(), ref.loss()) > 1e-6  # the seed matters


def test_noise_masks_are_those_of_the_expected_risk():
    """S noise draws use the masks of the expected state over S masks with the same seed."""
    net, X, y = W.problem()
    noise = dropout_gradient_noise(net, W.half_mse, (X, y), 5, generator=W.gen(3),
                                   batch_size=4, chunk_size=2, block_rows=4)
    risk = DropoutRisk(net, W.half_mse, (X, y), dropout="expected", num_masks=5,
                       generator=W.gen(3), block_rows=4)
    assert _rel(noise.mean_gradient, risk.gradient()) <= 1e-12
    ms = block_masks(net, X, risk.seed, range(5), block_rows=4)
    assert len(ms) == 5 and ms[0].masks["2"].shape == (11, 6)


def test_process_group_without_torch_distributed_is_a_clear_error():
    net, X, y = W.problem()
    with pytest.raises(ValueError, match="torch.distributed is not initialised"):
        DropoutRisk(net, W.half_mse, (X, y), process_group=object())
    with pytest.raises(ValueError, match="block_rows"):
        DropoutRisk(net, W.half_mse, (X, y), block_rows=0)


# ------------------------------------------------------------------------- 2 and 3 gloo ranks
@pytest.fixture(scope="module")
def reference():
    net, X, y = W.problem()
    return W.compute(net, X, y, None, None)


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    """What each of 3 spawned gloo ranks computed (ranks 0, 1 also as a 2-rank sub-group)."""
    import torch.multiprocessing as mp

    tmp = tmp_path_factory.mktemp("ranks")
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    t0 = time.perf_counter()
    try:
        mp.spawn(W.run, args=(3, f"file://{tmp / 'rendezvous'}", str(tmp)), nprocs=3, join=True)
    except mp.ProcessExitedException as exc:
        tracebacks = {p.name: p.read_text() for p in sorted(tmp.glob("rank*.error"))}
        done = sorted(p.name for p in tmp.glob("rank*.done"))
        if tracebacks or len(done) < 3:
            raise AssertionError(f"a rank failed ({exc}); ranks done: {done}; "
                                 f"tracebacks: {tracebacks}") from exc
        # every rank saved, passed the final barrier and tore its group down: the crash came
        # after the work, in the process's exit; the results stand, the crash is reported
        warnings.warn(f"a gloo rank crashed at exit after finishing: {exc}", stacklevel=1)
    print(f"3 spawned ranks: {time.perf_counter() - t0:.1f} s")
    return [torch.load(tmp / f"rank{r}.pt", weights_only=False) for r in range(3)]


def _leaves(res: dict, prefix: str = ""):
    for k, v in res.items():
        if isinstance(v, dict):
            yield from _leaves(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}", v


@pytest.mark.parametrize("world", [2, 3], ids=["2 ranks", "3 ranks, one empty"])
def test_ranks_equal_one_process(ranks, reference, world):
    """Loss, gradient, HVPs, top eigenvalue, Hutch++/Hutchinson traces, SLQ moment in the
    clean, fixed and expected states, dropout noise and alignment: 1e-12 relative to one
    process (which batches the rows differently), the same bits on every rank."""
    ref = dict(_leaves(reference))
    mine = [dict(_leaves(ranks[r][world])) for r in range(world)]
    assert set(mine[0]) == set(ref)
    for r, got in enumerate(mine):
        for key, want in ref.items():
            if key.endswith("eig_iters"):
                continue
            assert _rel(got[key], want) <= 1e-12, (r, key, _rel(got[key], want))
            assert torch.equal(torch.as_tensor(got[key]), torch.as_tensor(mine[0][key])), (r, key)
    for state in ("fixed", "expected"):  # the masks do something: the states differ
        assert _rel(reference[state]["hv"], reference["clean"]["hv"]) > 1e-3


def test_bad_input_is_the_same_clear_error_on_every_rank(ranks):
    assert ranks[2]["not a member"].startswith("ValueError: process_group: this process")
    for r, res in enumerate(ranks):
        err = res["errors"]
        assert err["probes"].startswith("ValueError") and "differ between the ranks" in \
            err["probes"], err["probes"]
        assert err["seed"].startswith("ValueError") and "mask seed" in err["seed"], err["seed"]
        assert err["params"].startswith("ValueError") and "parameters" in err["params"]
        want = "ValueError: data: (X, y) has non-finite" if r == 0 else "RankFailure"
        assert err["failure"].startswith(want), err["failure"]
        assert err["type"].startswith("TypeError") and "ProcessGroup" in err["type"]
        assert err["all empty"].startswith("ValueError: data: every rank's shard is empty")


def test_batch_iterables_over_ranks_with_an_empty_one(ranks, reference):
    for res in ranks:  # rank 1 passed [] (no batch): weighted 0
        assert _rel(res["errors"]["loader loss"], reference["expected"]["loss"]) <= 1e-12


@pytest.mark.slow
def test_example_runs_under_torchrun(tmp_path):
    script = ROOT / "examples" / "distributed_curvature.py"
    env = dict(os.environ, OMP_NUM_THREADS="1", GLOO_SOCKET_IFNAME="lo")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
           "2", str(script)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, env=env,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # the ranks share one stdout: find each rank's report wherever the lines were cut
    lines = re.findall(r"rank \d of 2: .*?\(Hutch\+\+\)", proc.stdout)
    assert len(lines) == 2 and lines[0].split(":", 1)[1] == lines[1].split(":", 1)[1], lines
