"""Rank code of tests/curvature/test_distributed.py, imported by name in the spawned ranks.

Every rank builds the same float64 model and data, takes its shard of the rows, runs the
curvature tools on a ``DropoutRisk(..., process_group=WORLD)`` and saves what it got; the test
compares the ranks with each other (bitwise) and with one process (1e-12 relative).
"""

from __future__ import annotations

import copy
import os
import sys
import traceback

import torch
from torch import nn

from dropreg.curvature import (
    DropoutRisk,
    HessianOperator,
    dropout_gradient_noise,
    noise_alignment,
    spectral_density,
    stochastic_trace,
    top_eigenpairs,
)

N = 11


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def half_mse(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return 0.5 * ((out - y) ** 2).sum(-1).mean()


def problem() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """A 3-6-4-2 tanh MLP with two dropout sites (P = 62) and N = 11 rows, float64."""
    g = gen(0)
    net = nn.Sequential(nn.Linear(3, 6), nn.Tanh(), nn.Dropout(0.3), nn.Linear(6, 4), nn.Tanh(),
                        nn.Dropout(0.5), nn.Linear(4, 2)).double()
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(0.8 * torch.randn(p.shape, generator=g, dtype=torch.float64))
    X = torch.randn(N, 3, generator=g, dtype=torch.float64)
    y = torch.randn(N, 2, generator=g, dtype=torch.float64)
    return net, X, y


def compute(net: nn.Module, X: torch.Tensor, y: torch.Tensor, group, batch_size: int | None
            ) -> dict:
    """Loss, gradient, products, eigenvalues, traces and density moments of the three states,
    dropout noise and alignment."""
    out: dict = {}
    for state in ("clean", "fixed", "expected"):
        risk = DropoutRisk(net, half_mse, (X, y), dropout=state, num_masks=3, generator=gen(5),
                           batch_size=batch_size, block_rows=4, process_group=group)
        H = HessianOperator(risk)
        V = torch.randn(risk.num_params, 3, generator=gen(6), dtype=torch.float64)
        eig = top_eigenpairs(H, k=1, tol=1e-8, generator=gen(7))
        out[state] = {
            "loss": risk.loss(), "grad": risk.gradient(), "hv": H.matvec(V[:, 0]),
            "hV": H.matmat(V), "eig": eig.eigenvalues, "eig_iters": eig.iterations,
            "hutch++": stochastic_trace(H, 12, "hutch++", generator=gen(8)).estimate,
            "hutchinson": stochastic_trace(H, 3, generator=gen(9)).estimate,
            "slq_m2": spectral_density(H, 1, 5, generator=gen(11)).moment(2),
            "loss_at": risk.loss(0.9 * torch.cat([p.reshape(-1) for p in risk.params.values()])),
        }
    noise = dropout_gradient_noise(net, half_mse, (X, y), 6, generator=gen(12),
                                   batch_size=batch_size, block_rows=4, process_group=group)
    out["noise"] = noise.samples
    out["cos"] = noise_alignment(H, noise, k=1, exact_hessian=False, num_matvecs=6, eigen=eig,
                           max_noise_hvps=3, generator=gen(13)).cosine
    return out


def _error(fn) -> str:
    try:
        fn()
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return "no error"


def errors(net: nn.Module, X: torch.Tensor, y: torch.Tensor, rank: int, group) -> dict:
    """Each bad input, collectively: what this rank raised."""
    out = {}
    torch.manual_seed(100 + rank)  # unseeded probes differ between the ranks (test code only)
    risk = DropoutRisk(net, half_mse, (X, y), process_group=group)
    out["probes"] = _error(lambda: top_eigenpairs(HessianOperator(risk), k=1))
    out["seed"] = _error(lambda: DropoutRisk(net, half_mse, (X, y), dropout="fixed",
                                             generator=gen(rank), process_group=group))
    Xb = X.clone()
    if rank == 0:
        Xb[0, 0] = float("nan")
    out["failure"] = _error(lambda: DropoutRisk(net, half_mse, (Xb, y), process_group=group))
    other = copy.deepcopy(net)
    if rank == 1:
        with torch.no_grad():
            other[0].bias.add_(1.0)
    out["params"] = _error(lambda: DropoutRisk(other, half_mse, (X, y), process_group=group))
    out["type"] = _error(lambda: DropoutRisk(net, half_mse, (X, y), process_group=object()))
    out["all empty"] = _error(lambda: DropoutRisk(net, half_mse, (X[:0], y[:0]),
                                                  process_group=group))
    batches = [(X[i:i + 3], y[i:i + 3]) for i in range(0, len(y), 3)]  # [] on an empty shard
    out["loader loss"] = DropoutRisk(net, half_mse, batches, dropout="expected", num_masks=3,
                                     generator=gen(5), block_rows=4, process_group=group).loss()
    return out


#: Rows per rank: two ranks (uneven), three ranks (uneven, one empty).
SIZES = {2: [7, 4], 3: [5, 0, 6]}


def run(rank: int, world: int, init: str, outdir: str) -> None:
    """The body of one of 3 ranks (``torch.multiprocessing.spawn`` target): the tools over the
    pair of ranks 0, 1 (a sub-group) and over all 3, then the bad inputs.

    What the test reads back: ``rank<r>.pt`` (the results), ``rank<r>.done`` once every rank has
    saved (after a barrier), or ``rank<r>.error`` with the traceback when this rank raised. A rank
    that raised exits at once without tearing down the process group (peers may be waiting in a
    collective, and gloo aborts a process whose group is destroyed under pending work, which
    would hide the Python error behind a SIGABRT)."""
    import torch.distributed as dist

    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    torch.set_num_threads(1)
    try:
        dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
        net, X, y = problem()
        pair = dist.new_group([0, 1])
        res: dict = {}
        for n, group in ((2, pair), (3, dist.group.WORLD)):
            if rank >= n:
                res["not a member"] = _error(lambda g=group: DropoutRisk(
                    net, half_mse, (X, y), process_group=g))
                continue
            lo = sum(SIZES[n][:rank])
            hi = lo + SIZES[n][rank]
            res[n] = compute(net, X[lo:hi], y[lo:hi], group, 4)
            if n == 3:
                res["errors"] = errors(net, X[lo:hi], y[lo:hi], rank, group)
        torch.save(res, os.path.join(outdir, f"rank{rank}.pt"))
        dist.barrier()  # nobody tears down while a peer still talks to it
        del pair, group
        dist.destroy_process_group()
    except BaseException:
        with open(os.path.join(outdir, f"rank{rank}.error"), "w") as f:
            f.write(traceback.format_exc())
        sys.stderr.flush()
        os._exit(1)
    with open(os.path.join(outdir, f"rank{rank}.done"), "w") as f:
        f.write("ok")
