"""Benchmark of the exact dropout criterion of ReLU nets (dropreg.relu).

Compares, on the same nets and data (float64, one thread):

* ``loop``: a plain Python loop over all dropout patterns, one torch forward pass (vectorised over
  the examples) per pattern; its rate is measured on the first patterns and extrapolated;
* ``batched``: the strongest simple alternative, every pattern of a chunk through one batched
  forward pass (``dropout_output``), no sharing between patterns;
* ``engine (no fold)``: dropreg's tree enumeration over every pattern (prefix sharing, one GEMM per
  layer and chunk), the last hidden layer enumerated too;
* ``engine``: ``dropout_criterion(method="exact")``, the last hidden layer folded in closed form.

Throughput is "patterns x examples per second", patterns counted over ALL dropped nodes
(2^(inputs + hidden units)), so every method is credited with the same work. Then it finds, for
the standard architecture with K = n, the largest net whose exact criterion takes under the time
limit (10 s).

Usage: ``PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/bench_relu.py [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from dropreg.experiments.runner import cpu_model
from dropreg.relu import StandardNet, all_patterns, dropout_criterion, dropout_output
from dropreg.relu.criterion import _data, _exact_engine, _params


def loop_rate(net, X, Y, p, n_patterns: int) -> tuple[float, float]:
    """Plain loop over the first ``n_patterns`` patterns: (patterns x examples / s, partial sum)."""
    lins = [m for m in net if isinstance(m, torch.nn.Linear)]
    widths = [X.shape[1]] + [lin.out_features for lin in lins[:-1]]
    nodes = sum(widths)
    keep = 1 - p
    t0 = time.perf_counter()
    total = 0.0
    for i in range(n_patterns):
        bits = [(i >> k) & 1 for k in range(nodes)]
        pat = torch.tensor(bits, dtype=torch.float64)
        prob = keep ** sum(bits) * p ** (nodes - sum(bits))
        masks = torch.split(pat, widths)
        h = X * masks[0] / keep
        for j, lin in enumerate(lins):
            h = lin(h)
            if j < len(lins) - 1:
                h = torch.relu(h) * masks[j + 1] / keep
        total += prob * float(((h - Y) ** 2).sum(1).mean())
    dt = time.perf_counter() - t0
    return n_patterns * X.shape[0] / dt, total


def batched(net, X, Y, p, chunk: int = 4096) -> float:
    nodes = sum([X.shape[1]] + [m.out_features for m in net if isinstance(m, torch.nn.Linear)][:-1])
    keep = 1 - p
    total = 0.0
    R = all_patterns(nodes)
    for s in range(0, R.shape[0], chunk):
        r = R[s:s + chunk]
        k = r.sum(1)
        prob = keep**k * p ** (nodes - k)
        D = dropout_output(net, X, r, p)
        total += float(prob @ ((D - Y) ** 2).sum(-1).mean(1))
    return total


def engine(net, X, Y, p, fold: bool) -> float:
    layers = _params(net, torch.float64)
    Xc, Yc, pi = _data(layers, X, Y, None)
    return float(pi @ _exact_engine(layers, Xc, Yc, p, 1 << 18, fold_last=fold)[0])


def median_time(fn, repeats: int, *args) -> tuple[float, float]:
    times, val = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        val = fn(*args)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), val


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, 1 s limit")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "relu.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.set_grad_enabled(False)
    g = torch.Generator().manual_seed(0)
    p = 0.5
    repeats = 3
    configs = ([(4, 3, 4, 16), (3, 4, 3, 16)] if args.quick else
               [(4, 3, 4, 32), (6, 3, 6, 32), (4, 4, 4, 32), (3, 5, 3, 16), (8, 2, 8, 64)])
    rows = []
    print(f"{'net (K,d,n)':>12} {'N':>4} {'patterns':>10} {'loop':>10} {'batched':>10} "
          f"{'no fold':>10} {'engine':>10} {'eng/loop':>9} {'nofold/loop':>11} {'eng/batch':>9}")
    for K, d, n, N in configs:
        net = StandardNet(K, d, n, generator=g)
        X = torch.randn(N, K, generator=g, dtype=torch.float64)
        Y = torch.randn(N, 1, generator=g, dtype=torch.float64)
        nodes = K + n * (d - 1)
        P = 1 << nodes
        work = P * N
        r_loop, _ = loop_rate(net, X, Y, p, min(P, 400 if args.quick else 2000))
        t_b, v_b = median_time(batched, repeats, net, X, Y, p)
        t_nf, v_nf = median_time(engine, repeats, net, X, Y, p, False)
        t_e, v_e = median_time(engine, repeats, net, X, Y, p, True)
        v_api = float(dropout_criterion(net, X, Y, p))
        agree = max(abs(v_b - v_e), abs(v_nf - v_e), abs(v_api - v_e)) / abs(v_e)
        row = {
            "K": K, "d": d, "n": n, "N": N, "patterns": P,
            "loop_rate": r_loop, "batched_rate": work / t_b, "nofold_rate": work / t_nf,
            "engine_rate": work / t_e, "engine_seconds": t_e,
            "engine_over_loop": work / t_e / r_loop, "nofold_over_loop": work / t_nf / r_loop,
            "engine_over_batched": t_b / t_e, "max_relative_disagreement": agree,
        }
        rows.append(row)
        print(f"{str((K, d, n)):>12} {N:>4} {P:>10} {r_loop:>10.3g} {work / t_b:>10.3g} "
              f"{work / t_nf:>10.3g} {work / t_e:>10.3g} {row['engine_over_loop']:>9.0f} "
              f"{row['nofold_over_loop']:>11.1f} {row['engine_over_batched']:>9.1f}"
              f"   (agree {agree:.1e})")

    # sparse binary inputs: the input fold deduplicates patterns of zero inputs
    Ks, ds_, ns_, Ns = (12, 2, 8, 16) if args.quick else (16, 3, 4, 32)
    net = StandardNet(Ks, ds_, ns_, generator=g)
    Xs = (torch.rand(Ns, Ks, generator=g) < 0.5).to(torch.float64)
    Ysp = torch.randn(Ns, 1, generator=g, dtype=torch.float64)
    layers = _params(net, torch.float64)
    t_plain, v_plain = median_time(
        lambda: float(_data(layers, Xs, Ysp, None)[2]
                      @ _exact_engine(layers, Xs, Ysp.reshape(-1, 1), p, 1 << 18)[0]), 1)
    t_fold, v_fold = median_time(lambda: float(dropout_criterion(net, Xs, Ysp, p)), repeats)
    sparse = {"K": Ks, "d": ds_, "n": ns_, "N": Ns, "density": 0.5, "plain_seconds": t_plain,
              "folded_seconds": t_fold, "speedup": t_plain / t_fold,
              "relative_disagreement": abs(v_plain - v_fold) / abs(v_plain)}
    print(f"\nSparse binary inputs, StandardNet({Ks}, {ds_}, {ns_}), N = {Ns}: plain tree "
          f"{t_plain:.3f} s, input fold {t_fold:.3f} s ({t_plain / t_fold:.0f}x, agree "
          f"{sparse['relative_disagreement']:.1e})")

    limit = 1.0 if args.quick else 10.0
    N_big = 10
    largest = []
    print(f"\nLargest StandardNet(K = n) with exact criterion under {limit:g} s, N = {N_big}:")
    for d in (2, 3, 4):
        best = None
        w = 12 if d == 2 else 2  # d = 2 enumerates only the K inputs
        while True:
            net = StandardNet(w, d, w, generator=g)
            X = torch.randn(N_big, w, generator=g, dtype=torch.float64)
            Y = torch.randn(N_big, 1, generator=g, dtype=torch.float64)
            try:
                t0 = time.perf_counter()
                dropout_criterion(net, X, Y, p, max_nodes=40)
                dt = time.perf_counter() - t0
            except ValueError:
                break
            if dt > limit:
                print(f"  d={d}: K=n={w} took {dt:.2f} s (over)")
                break
            best = {"d": d, "K": w, "n": w, "N": N_big, "seconds": dt,
                    "dropped_nodes": w * d, "enumerated_nodes": w * (d - 1),
                    "patterns": 2 ** (w * d)}
            w += 1
        if best:
            largest.append(best)
            print(f"  d={d}: K=n={best['K']}: {best['seconds']:.2f} s, 2^{best['dropped_nodes']} "
                  f"patterns ({best['enumerated_nodes']} enumerated nodes)")
    summary = []
    for r in rows:
        summary.append({
            "benchmark": f"exact J_D, StandardNet(K={r['K']}, d={r['d']}, n={r['n']}), "
                         f"N={r['N']}: patterns x examples / s",
            "dropreg": f"{r['engine_rate']:.3g}/s",
            "baseline": f"Python loop over patterns {r['loop_rate']:.3g}/s",
            "ratio": f"{r['engine_over_loop']:.0f}x faster",
            "goal": ">= 100x",
        })
    nofold = statistics.median(r["nofold_over_loop"] for r in rows)
    over_batched = statistics.median(r["engine_over_batched"] for r in rows)
    summary.append({
        "benchmark": "same, last layer enumerated too (no closed-form fold), median over nets",
        "dropreg": "tree enumeration", "baseline": "Python loop over patterns",
        "ratio": f"{nofold:.0f}x faster", "goal": ">= 100x"})
    summary.append({
        "benchmark": "exact J_D vs one batched forward per chunk of patterns, median over nets",
        "dropreg": "dropout_criterion", "baseline": "batched dropout_output",
        "ratio": f"{over_batched:.0f}x faster", "goal": "-"})
    summary.append({
        "benchmark": f"exact J_D on binary inputs (half zeros), StandardNet({Ks}, {ds_}, {ns_}), "
                     f"N={Ns}",
        "dropreg": f"input fold {t_fold:.3g} s", "baseline": f"plain tree {t_plain:.3g} s",
        "ratio": f"{t_plain / t_fold:.0f}x faster", "goal": "-"})
    loop_ref = statistics.median(r["loop_rate"] for r in rows)
    for b in largest:
        loop_s = b["patterns"] * b["N"] / loop_ref
        summary.append({
            "benchmark": f"largest StandardNet(K = n, d = {b['d']}) with exact J_D under "
                         f"{limit:g} s (N = {b['N']})",
            "dropreg": f"K = n = {b['K']}: 2^{b['dropped_nodes']} patterns in "
                       f"{b['seconds']:.1f} s",
            "baseline": f"loop (extrapolated) {loop_s:.2g} s",
            "ratio": f"{loop_s / b['seconds']:.2g}x faster", "goal": f"< {limit:g} s"})
    result = {
        "benchmark": "relu exact dropout criterion",
        "rows": summary,
        "quick": args.quick,
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "torch": torch.__version__,
                    "threads": torch.get_num_threads(), "python": platform.python_version(),
                    "load_average_1_5_15": list(os.getloadavg())},
        "units": "patterns x examples per second (patterns over all dropped nodes)",
        "throughput": rows,
        "sparse_inputs": sparse,
        "time_limit_s": limit,
        "largest_under_limit": largest,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
