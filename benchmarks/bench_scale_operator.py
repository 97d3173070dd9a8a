"""Benchmark: per-product cost of the distributed Hessian operator at 1 and 2 gloo ranks (CPU).

Model: MLP 256-256-256-10 (ReLU, dropout 0.2 before each hidden-to-hidden and the output layer),
P = 134,154 parameters, float32, cross-entropy over N rows (4096; 1024 with ``--quick``) of
random data, in batches of 512 rows. States: clean, and the expected loss over 4 masks (stacked
along the batch). Hessian-vector products by forward-over-reverse (``method=
"forward-over-reverse"``, no cached graph, so each product is a forward and backward pass over
every batch of the rank).

Two spawned ranks (gloo, file rendezvous on localhost, one torch thread each) alternate, in one
run, the product of one process over all N rows (rank 0 alone, ``process_group=None``, the other
rank idle in a barrier) and the product of the two ranks over N/2 rows each
(``process_group=WORLD``). Reported: the median wall time per product over ``--repeats``
alternations (after one warm-up product each), the time spent inside the all-reduce of the
2-rank product (the communication share: transfer of P floats plus waiting for the slower rank),
and the bare all-reduce of P floats for comparison. Output: a table and
``benchmarks/results/scale_operator.json`` (``rows`` in the format of ``run_all.py``).

No GPU is used (the development machine has none); on a machine with several GPUs the same
script with ``--backend nccl`` runs one rank per GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from dropreg.curvature import DropoutRisk, HessianOperator  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "scale_operator.json"


def machine() -> dict:
    try:
        from dropreg.experiments.runner import cpu_model

        cpu = cpu_model()
    except Exception:  # pragma: no cover - the record only
        cpu = platform.processor() or "?"
    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads_per_rank": 1,
            "torch": torch.__version__, "python": platform.python_version(),
            "load_average_at_start": os.getloadavg()}


def problem(n: int) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    net = nn.Sequential(nn.Linear(256, 256), nn.ReLU(), nn.Dropout(0.2), nn.Linear(256, 256),
                        nn.ReLU(), nn.Dropout(0.2), nn.Linear(256, 10))
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) / p.shape[-1] ** 0.5)
    X = torch.randn(n, 256, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    return net, X, y


def _ce(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return -torch.log_softmax(out, -1).gather(1, y[:, None]).mean()  # has forward-mode AD


def _operator(net, X, y, state: str, group) -> HessianOperator:
    risk = DropoutRisk(net, _ce, (X, y), dropout=state, num_masks=4, batch_size=512,
                       generator=torch.Generator().manual_seed(1), process_group=group)
    return HessianOperator(risk, method="forward-over-reverse", cache_graph=False)


def _rank(rank: int, world: int, init: str, out: str, n: int, repeats: int,
          backend: str) -> None:
    import torch.distributed as dist

    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    torch.set_num_threads(1)
    dist.init_process_group(backend, init_method=init, rank=rank, world_size=world)
    comm = [0.0]
    plain = dist.all_reduce

    def timed(*args, **kwargs):
        t = time.perf_counter()
        r = plain(*args, **kwargs)
        comm[0] += time.perf_counter() - t
        return r

    dist.all_reduce = timed
    net, X, y = problem(n)
    rows = torch.arange(n).tensor_split(world)[rank]
    record: dict = {}
    try:
        for state in ("clean", "expected"):
            one = _operator(net, X, y, state, None) if rank == 0 else None
            dist_op = _operator(net, X[rows], y[rows], state, dist.group.WORLD)
            v = torch.randn(dist_op.num_params, generator=torch.Generator().manual_seed(2))
            t1, t2, c2 = [], [], []
            for _ in range(repeats + 1):
                if rank == 0:
                    t = time.perf_counter()
                    one.matvec(v)
                    t1.append(time.perf_counter() - t)
                dist.barrier()
                comm[0] = 0.0
                t = time.perf_counter()
                dist_op.matvec(v)
                t2.append(time.perf_counter() - t)
                c2.append(comm[0])
                dist.barrier()
            bare = []
            buf = torch.zeros(dist_op.num_params)
            for _ in range(repeats + 1):
                t = time.perf_counter()
                plain(buf)
                bare.append(time.perf_counter() - t)
            record[state] = {"one_process_s": t1[1:], "two_ranks_s": t2[1:],
                             "allreduce_in_product_s": c2[1:], "bare_allreduce_s": bare[1:],
                             "num_params": dist_op.num_params, "rows_per_rank": len(rows)}
        torch.save(record, os.path.join(out, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def run(n: int, repeats: int, backend: str = "gloo") -> dict:
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory() as tmp:
        mp.spawn(_rank, args=(2, f"file://{tmp}/rendezvous", tmp, n, repeats, backend),
                 nprocs=2, join=True)
        ranks = [torch.load(Path(tmp) / f"rank{r}.pt") for r in range(2)]
    med = statistics.median
    out = {}
    for state in ("clean", "expected"):
        r0, r1 = ranks[0][state], ranks[1][state]
        t1 = med(r0["one_process_s"])
        t2 = med([max(a, b) for a, b in zip(r0["two_ranks_s"], r1["two_ranks_s"])])
        comm = med(r0["allreduce_in_product_s"] + r1["allreduce_in_product_s"])
        out[state] = {"num_params": r0["num_params"], "rows": n,
                      "one_process_ms": 1e3 * t1, "two_ranks_ms": 1e3 * t2,
                      "speedup": t1 / t2, "allreduce_ms": 1e3 * comm,
                      "allreduce_share": comm / t2,
                      "bare_allreduce_ms": 1e3 * med(r0["bare_allreduce_s"])}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="N = 1024 rows, 5 repeats")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--backend", default="gloo", choices=["gloo", "nccl"])
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()
    n = 1024 if args.quick else 4096
    repeats = args.repeats or (5 if args.quick else 15)
    info = machine()
    res = run(n, repeats, args.backend)
    info["load_average_at_end"] = os.getloadavg()
    rows = []
    print(f"{'state':9} {'P':>8} {'1 process':>11} {'2 ranks':>9} {'speed-up':>9} "
          f"{'all-reduce':>11} {'share':>6} {'bare':>7}")
    for state, r in res.items():
        print(f"{state:9} {r['num_params']:8d} {r['one_process_ms']:9.1f}ms "
              f"{r['two_ranks_ms']:7.1f}ms {r['speedup']:8.2f}x {r['allreduce_ms']:9.2f}ms "
              f"{100 * r['allreduce_share']:5.1f}% {r['bare_allreduce_ms']:5.2f}ms")
        rows.append({"benchmark": f"HVP, {state} state, P = {r['num_params']:,}, N = {n}: "
                                  f"2 gloo ranks vs 1 process (1 thread each)",
                     "dropreg": f"{r['two_ranks_ms']:.1f} ms",
                     "baseline": f"{r['one_process_ms']:.1f} ms (1 process)",
                     "ratio": f"{r['two_ranks_ms'] / r['one_process_ms']:.2f}",
                     "goal": "< 1 (all-reduce "
                             f"{100 * r['allreduce_share']:.0f}% of the 2-rank product)"})
    record = {"machine": info, "quick": args.quick, "repeats": repeats, "results": res,
              "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=2))
    print(f"load average {info['load_average_at_start']} -> {info['load_average_at_end']}; "
          f"wrote {args.out}")


if __name__ == "__main__":
    main()
