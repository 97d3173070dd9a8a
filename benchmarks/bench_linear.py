"""Benchmark of dropreg.linear against the strongest alternatives, in one run.

1. SGD with sampled DropBlock masks (what training does) until its expected objective is within
   a relative 1e-3 of the optimum, against ``solve_dropblock`` (the closed form): time ratio.
2. ``solve_dropblock`` on a 2000 x 1000 M against a plain ``numpy.linalg.svd`` of the same M
   (goal: at most 1.5x).
3. ``prox_squared_ksupport`` on a 10^6-vector against ``numpy.sort`` of it (goal: at most 3x).

Timings are medians of repeats, single-threaded (``torch.set_num_threads(1)``,
``OMP_NUM_THREADS=1`` advised) on a shared machine: read the ratios.

Usage::

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/bench_linear.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from dropreg.data import synthetic_regression
from dropreg.experiments.runner import cpu_model
from dropreg.linear import prox_squared_ksupport, solve_dropblock, train_masked_sgd
from dropreg.masks import Blocks


def _median_time(fn, repeats: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(repeats):
        tic = time.perf_counter()
        fn()
        times.append(time.perf_counter() - tic)
    return statistics.median(times), times


def bench_sgd(quick: bool, repeats: int) -> dict:
    g = torch.Generator().manual_seed(0)
    n, d, D, r, k, p = (2000, 6, 4, 8, 2, 0.3) if quick else (4000, 20, 10, 16, 4, 0.5)
    ds = synthetic_regression(n, 0, d_in=d, d_out=D, rank=min(d, D), noise=0.5, whiten=True,
                              generator=g)
    X, Y = ds.X_train, ds.y_train
    M = Y.T @ X / n
    c0 = float((Y**2).sum()) / n - float((M**2).sum())
    t_closed, _ = _median_time(lambda: solve_dropblock(M, r, p, k), repeats)
    sol = solve_dropblock(M, r, p, k)
    E_star = sol.value + c0
    steps = 3_000 if quick else 60_000
    lr = 0.1 if quick else 0.05
    runs = []
    for rep in range(max(1, repeats // 2)):
        run = train_masked_sgd(X, Y, r, Blocks(p, k), steps=steps, lr=lr, batch_size=256,
                               eval_every=100, generator=torch.Generator().manual_seed(rep))
        gaps = [(o - E_star) / E_star for o in run.objective]
        # first recorded step after which the gap stays below 1e-3
        hit = None
        for i in range(len(gaps)):
            if all(gv < 1e-3 for gv in gaps[i:]):
                hit = i
                break
        runs.append(dict(time_to_gap=None if hit is None else run.times[hit],
                         steps_to_gap=None if hit is None else run.steps[hit],
                         final_gap=gaps[-1]))
    reached = [x["time_to_gap"] for x in runs if x["time_to_gap"] is not None]
    t_sgd = statistics.median(reached) if reached else float("nan")
    return dict(problem=dict(n=n, d=d, D=D, width=r, block_size=k, p=p, steps=steps, lr=lr,
                             batch_size=256),
                solve_dropblock_s=t_closed, sgd_time_to_gap_s=t_sgd,
                sgd_runs=runs, ratio_sgd_over_closed_form=t_sgd / t_closed,
                certificate_attained=sol.certificate.attained)


def bench_solve(quick: bool, repeats: int) -> dict:
    g = torch.Generator().manual_seed(1)
    D, d = 2000, 1000
    L = torch.randn(D, 20, generator=g, dtype=torch.float64) @ torch.randn(
        20, d, generator=g, dtype=torch.float64) / 20
    M = L + 0.01 * torch.randn(D, d, generator=g, dtype=torch.float64)
    Mn = M.numpy()
    t_np, _ = _median_time(lambda: np.linalg.svd(Mn, full_matrices=False), repeats)
    t_torch, _ = _median_time(lambda: torch.linalg.svd(M, full_matrices=False), repeats)
    rows = []
    for r, k, p in [(64, 1, 0.5), (64, 4, 0.5), (32, 2, 0.5)]:
        t, _ = _median_time(lambda r=r, k=k, p=p: solve_dropblock(M, r, p, k), repeats)
        sol = solve_dropblock(M, r, p, k)
        rows.append(dict(width=r, block_size=k, p=p, seconds=t, ratio_vs_numpy_svd=t / t_np,
                         rank=sol.rank, method=sol.certificate.method,
                         attained=sol.certificate.attained))
    return dict(shape=[D, d], numpy_svd_s=t_np, torch_svd_s=t_torch, solve=rows)


def bench_prox(quick: bool, repeats: int) -> dict:
    g = torch.Generator().manual_seed(2)
    w = torch.randn(1_000_000, generator=g, dtype=torch.float64)
    wn = w.numpy()
    t_sort, _ = _median_time(lambda: np.sort(wn), repeats)
    rows = []
    for k in (10, 1000, 100_000):
        t, _ = _median_time(lambda k=k: prox_squared_ksupport(w, k, 0.5), repeats)
        rows.append(dict(k=k, seconds=t, ratio_vs_numpy_sort=t / t_sort))
    w32 = w.float()
    t32, _ = _median_time(lambda: prox_squared_ksupport(w32, 1000, 0.5), repeats)
    t_sort32, _ = _median_time(lambda: np.sort(w32.numpy()), repeats)
    rows.append(dict(k=1000, dtype="float32", seconds=t32,
                     ratio_vs_numpy_sort=t32 / t_sort32))
    return dict(n=1_000_000, numpy_sort_s=t_sort, numpy_sort_float32_s=t_sort32, prox=rows)


def summary_rows(res: dict) -> list[dict]:
    """The README table rows of a result (read by ``benchmarks/run_all.py``)."""
    rows = []
    prox = res["prox"]
    for entry in prox["prox"]:
        if entry["k"] != 1000:
            continue
        dtype = entry.get("dtype", "float64")
        base = prox["numpy_sort_float32_s" if dtype == "float32" else "numpy_sort_s"]
        rows.append({
            "benchmark": f"prox of squared k-support norm, d = {prox['n']:.0e}, k = 1000, {dtype}",
            "dropreg": f"{entry['seconds'] * 1e3:.0f} ms",
            "baseline": f"numpy.sort {base * 1e3:.0f} ms",
            "ratio": f"{entry['ratio_vs_numpy_sort']:.2f}x time", "goal": "<= 3"})
    solve = res["solve"]
    worst = max(solve["solve"], key=lambda e: e["ratio_vs_numpy_svd"])
    rows.append({
        "benchmark": f"solve_dropblock, M {solve['shape'][0]}x{solve['shape'][1]} "
                     f"(worst of {len(solve['solve'])} settings)",
        "dropreg": f"{worst['seconds']:.2f} s",
        "baseline": f"numpy.linalg.svd {solve['numpy_svd_s']:.2f} s",
        "ratio": f"{worst['ratio_vs_numpy_svd']:.2f}x time", "goal": "<= 1.5"})
    sgd = res["sgd"]
    rows.append({
        "benchmark": "SGD with sampled DropBlock masks to relative gap 1e-3 vs closed form",
        "dropreg": f"solve_dropblock {sgd['solve_dropblock_s'] * 1e3:.0f} ms",
        "baseline": f"SGD {sgd['sgd_time_to_gap_s']:.1f} s",
        "ratio": f"{1 / sgd['ratio_sgd_over_closed_form']:.4f}x time", "goal": "-"})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller SGD problem, fewer repeats")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "linear.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    repeats = 3 if args.quick else 9
    res = {
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "torch": torch.__version__,
                    "numpy": np.__version__, "python": platform.python_version(),
                    "torch_threads": torch.get_num_threads(),
                    "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")},
        "quick": args.quick, "repeats": repeats,
        "prox": bench_prox(args.quick, repeats),
        "solve": bench_solve(args.quick, repeats),
        "sgd": bench_sgd(args.quick, repeats),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    res["rows"] = summary_rows(res)
    Path(args.out).write_text(json.dumps(res, indent=2))
    print(f"machine: {res['machine']['cpu']}, {res['machine']['cores']} cores, torch "
          f"{res['machine']['torch']}, 1 thread; medians of {repeats}")
    print(f"{'task':58s} {'dropreg':>10s} {'baseline':>10s} {'ratio':>7s} {'goal':>6s}")
    pr = res["prox"]
    for row in pr["prox"]:
        base = pr["numpy_sort_float32_s"] if row.get("dtype") == "float32" else pr["numpy_sort_s"]
        name = f"prox sq. k-support, d=1e6, k={row['k']} {row.get('dtype', 'float64')}"
        print(f"{name + ' vs numpy.sort':58s} {row['seconds']:10.4f} {base:10.4f} "
              f"{row['ratio_vs_numpy_sort']:7.2f} {'<=3':>6s}")
    sv = res["solve"]
    for row in sv["solve"]:
        name = (f"solve_dropblock 2000x1000 r={row['width']} k={row['block_size']} "
                f"({row['method']}) vs numpy svd")
        print(f"{name:58s} {row['seconds']:10.4f} {sv['numpy_svd_s']:10.4f} "
              f"{row['ratio_vs_numpy_svd']:7.2f} {'<=1.5':>6s}")
    sg = res["sgd"]
    print(f"{'SGD (DropBlock masks) to rel. gap 1e-3 vs solve_dropblock':58s} "
          f"{sg['sgd_time_to_gap_s']:10.4f} {sg['solve_dropblock_s']:10.4f} "
          f"{sg['ratio_sgd_over_closed_form']:7.0f} {'':>6s}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
