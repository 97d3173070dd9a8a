"""Benchmark of dropreg's dropout-family layers against torchvision, timm and plain dropout.

1. Realised drop fraction vs requested p of DropBlock2d on the settings of anchors.md §1.5:
   dropreg's ``drop_block2d``, torchvision's ``drop_block2d`` and timm's ``drop_block_2d``,
   measured by running each library's own code on all-ones inputs.
2. Forward + backward time of DropBlock2d on a (32, 64, 56, 56) float32 tensor, as a ratio to
   ``torch.nn.functional.dropout`` on the same tensor and to the peers.
3. Forward + backward time of DropConnectLinear against ``nn.Linear`` + dropout.
4. Forward + backward time of DropBlock3d on a (8, 32, 16, 28, 28) float32 volume against
   torchvision's ``drop_block3d`` and ``F.dropout`` on the same tensor.
5. Forward + backward time of the ``torch.compile``d DropBlock2d of dropreg, torchvision and
   timm against compiled ``F.dropout`` on the same (32, 64, 56, 56) tensor (goal: dropreg
   <= 1.5x compiled dropout and no slower than any compiled peer).

Sections 4 and 5 time every contender in turn within each repeat (alternated), so a change of
machine load hits all of them alike; the figures are medians over the repeats.

Peers: on a CPU-only machine torchvision cannot be imported against a different torch build, so
the pure-Python module files (``torchvision/ops/drop_block.py``, ``timm/layers/drop.py``) are read
from their wheels (``pip download --no-deps``, or ``--wheel-dir``) and loaded with
``importlib.util.spec_from_file_location``; torchvision's only relative import
(``..utils._log_api_usage_once``, a usage logger) is stubbed with a no-op. Where the packages import
normally (a GPU machine with matching builds), they are imported. If neither works, the peers'
published seeding rules are reimplemented here (``--reimplement`` forces it) and the JSON says so.

Usage::

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/bench_layers.py [--quick]
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import types
import zipfile
from pathlib import Path

import torch
import torch.nn.functional as F

from dropreg.experiments.dropreg_layers import ANCHOR_SETTINGS, peer_expected_drop_fraction
from dropreg.experiments.runner import cpu_model
from dropreg.nn import DropConnectLinear
from dropreg.nn import functional as DF

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results" / "layers.json"


# --------------------------------------------------------------------------- loading peers


#: The peers' versions (their wheels are downloaded with ``pip download --no-deps``).
PEER_VERSIONS: dict[str, str] = {"torchvision": "0.29.1", "timm": "1.0.31"}


def _find_wheel(wheel_dir: Path, name: str) -> Path | None:
    found = sorted(wheel_dir.glob(f"{name}-{PEER_VERSIONS[name]}-*.whl"))
    return found[-1] if found else None


def _download(wheel_dir: Path, name: str) -> Path | None:
    wheel = _find_wheel(wheel_dir, name)
    if wheel is None:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d",
                        str(wheel_dir), f"{name}=={PEER_VERSIONS[name]}"], check=False,
                       timeout=600)
        wheel = _find_wheel(wheel_dir, name)
    return wheel


def _load_file(module_name: str, path: Path) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def load_peers(wheel_dir: Path, reimplement: bool) -> dict[str, dict]:
    """Return {"torchvision": {"fn", "how", "version"}, "timm": {...}}."""
    peers: dict[str, dict] = {}
    if not reimplement:
        for name in ("torchvision", "timm"):
            try:
                if name == "torchvision":
                    mod = importlib.import_module("torchvision.ops")
                    fn = mod.drop_block2d
                    extra = {"fn3d": mod.drop_block3d}
                else:
                    fn = importlib.import_module("timm.layers").drop_block_2d
                    extra = {}
                peers[name] = {"fn": fn, "how": "imported",
                               "version": importlib.import_module(name).__version__, **extra}
            except Exception:  # noqa: BLE001 - any import failure falls back to the wheel
                pass
        wheel_dir.mkdir(parents=True, exist_ok=True)
        extract = Path(tempfile.mkdtemp(prefix="bench_layers_"))
        if "torchvision" not in peers:
            wheel = _download(wheel_dir, "torchvision")
            if wheel is not None:
                with zipfile.ZipFile(wheel) as z:
                    z.extract("torchvision/ops/drop_block.py", extract)
                for pkg in ("torchvision", "torchvision.ops"):
                    stub = types.ModuleType(pkg)
                    stub.__path__ = []
                    sys.modules.setdefault(pkg, stub)
                utils = types.ModuleType("torchvision.utils")
                utils._log_api_usage_once = lambda obj: None
                sys.modules.setdefault("torchvision.utils", utils)
                mod = _load_file("torchvision.ops.drop_block",
                                 extract / "torchvision/ops/drop_block.py")
                peers["torchvision"] = {"fn": mod.drop_block2d, "fn3d": mod.drop_block3d,
                                        "how": f"file from {wheel.name}",
                                        "version": wheel.name.split("-")[1]}
        if "timm" not in peers:
            wheel = _download(wheel_dir, "timm")
            if wheel is not None:
                with zipfile.ZipFile(wheel) as z:
                    z.extract("timm/layers/drop.py", extract)
                mod = _load_file("_timm_layers_drop", extract / "timm/layers/drop.py")
                peers["timm"] = {"fn": mod.drop_block_2d, "how": f"file from {wheel.name}",
                                 "version": wheel.name.split("-")[1]}
    for name, fn in (("torchvision", _tv_reimplemented), ("timm", _timm_reimplemented)):
        if name not in peers:
            peers[name] = {"fn": fn, "how": "reimplemented seeding rule (loading failed)",
                           "version": None}
    peers["torchvision"].setdefault("fn3d", _tv3d_reimplemented)
    return peers


def _tv_reimplemented(x, p, block_size, inplace=False, eps=1e-6, training=True):
    """torchvision's published rule: valid-centre seeds, per channel, global empirical scale."""
    N, C, H, W = x.shape
    k = min(block_size, H, W)
    gamma = p * H * W / (k * k * (H - k + 1) * (W - k + 1))
    noise = torch.empty((N, C, H - k + 1, W - k + 1), dtype=x.dtype).bernoulli_(gamma)
    noise = F.pad(noise, [k // 2] * 4, value=0)
    noise = F.max_pool2d(noise, stride=(1, 1), kernel_size=(k, k), padding=k // 2)
    noise = 1 - noise
    return x * noise * (noise.numel() / (eps + noise.sum()))


def _tv3d_reimplemented(x, p, block_size, inplace=False, eps=1e-6, training=True):
    """torchvision's published 3-d rule: valid-centre seeds per channel, global empirical scale."""
    N, C, D, H, W = x.shape
    k = min(block_size, D, H, W)
    gamma = p * D * H * W / (k**3 * (D - k + 1) * (H - k + 1) * (W - k + 1))
    noise = torch.empty((N, C, D - k + 1, H - k + 1, W - k + 1), dtype=x.dtype).bernoulli_(gamma)
    noise = F.pad(noise, [k // 2] * 6, value=0)
    noise = 1 - F.max_pool3d(noise, stride=(1, 1, 1), kernel_size=(k, k, k), padding=k // 2)
    return x * noise * (noise.numel() / (eps + noise.sum()))


def _timm_reimplemented(x, drop_prob=0.1, block_size=7, couple_channels=True, **_):
    """timm >= 1.0.23 rule (odd blocks): seeds anywhere, global empirical scale."""
    B, C, H, W = x.shape
    kh, kw = min(block_size, H), min(block_size, W)
    gamma = drop_prob * H * W / (kh * kw) / ((H - kh + 1) * (W - kw + 1))
    m = torch.empty((B, 1 if couple_channels else C, H, W), dtype=x.dtype).bernoulli_(gamma)
    keep = 1 - F.max_pool2d(m, (kh, kw), stride=1, padding=(kh // 2, kw // 2))
    return x * keep * (keep.numel() / (keep.sum() + 1e-7))


# --------------------------------------------------------------------------- measurements


def realised_drop(fn, H: int, bs: int, p: float, elements: int) -> tuple[float, float]:
    """Fraction of zeros of ``fn`` on all-ones (N, 16, H, H) inputs, with its standard error.

    The standard error comes from the spread of the per-sample fractions (samples are independent
    in every implementation; channels are not when a mask is shared across them).
    """
    C = 16
    n = max(1, 2_000_000 // (C * H * H))
    x = torch.ones(n, C, H, H)
    s = s2 = 0.0
    m = 0
    while m * H * H < elements:
        frac = (fn(x) == 0).to(torch.float64).mean((1, 2, 3))
        s += float(frac.sum())
        s2 += float((frac**2).sum())
        m += frac.numel()
    mean = s / m
    return mean, math.sqrt(max(s2 / m - mean**2, 0.0) / (m - 1))


def time_alternating(fns: dict, x: torch.Tensor, repeats: int, warmup: int = 2
                     ) -> tuple[dict[str, float], dict[str, float]]:
    """Median seconds of ``fn(x)`` forward plus backward (gradient of ones) for every ``fn``,
    the functions alternated within each round (so that a burst of load on the shared machine
    hits every side alike): ``(thread CPU time, wall time)`` per name. CPU time is the one
    reported: wall times on a loaded machine include other processes' time slices."""
    cpu = {k: [] for k in fns}
    wall = {k: [] for k in fns}
    for i in range(warmup + repeats):
        for name, fn in fns.items():
            t0, w0 = time.thread_time(), time.perf_counter()
            y = fn(x)
            y.backward(torch.ones_like(y))
            dt, dw = time.thread_time() - t0, time.perf_counter() - w0
            x.grad = None
            if i >= warmup:
                cpu[name].append(dt)
                wall[name].append(dw)
    return ({k: statistics.median(v) for k, v in cpu.items()},
            {k: statistics.median(v) for k, v in wall.items()})


def dropblock3d_time(tv3d, repeats: int) -> dict:
    """Section 4: DropBlock3d fwd+bwd against torchvision's drop_block3d and F.dropout."""
    shape, p, bs = (8, 32, 16, 28, 28), 0.1, 5
    x = torch.randn(shape, requires_grad=True)
    fns = {
        "F.dropout": lambda t: F.dropout(t, p, training=True),
        "dropreg drop_block3d": lambda t: DF.drop_block3d(t, p, bs),
        "dropreg drop_block3d share_channels": lambda t: DF.drop_block3d(
            t, p, bs, share_channels=True),
        "torchvision drop_block3d": lambda t: tv3d(t, p, bs),
    }
    times, _ = time_alternating(fns, x, repeats)
    base = times["F.dropout"]
    print(f"\nDropBlock3d fwd+bwd on {shape} float32, p={p}, block={bs}, median of {repeats}")
    for name, t in times.items():
        print(f"  {name:<48} {1e3 * t:8.1f} ms   x{t / base:5.2f} dropout")
    return {"shape": list(shape), "dtype": "float32", "p": p, "block_size": bs,
            "repeats": repeats, "seconds": times,
            "ratio_to_dropout": {k: v / base for k, v in times.items()},
            "dropreg_over_torchvision": times["dropreg drop_block3d"]
            / times["torchvision drop_block3d"]}


def compiled_dropblock2d_time(tv, timm, repeats: int) -> dict:
    """Section 5: ``torch.compile`` (default mode, inductor) of each DropBlock2d and of
    F.dropout, fwd+bwd on the same tensor; compilation happens in the warm-up calls."""
    shape, p, bs = (32, 64, 56, 56), 0.1, 7

    def dropout(t):
        return F.dropout(t, p, training=True)

    def dropreg(t):
        return DF.drop_block2d(t, p, bs)

    def dropreg_shared(t):
        return DF.drop_block2d(t, p, bs, share_channels=True)

    def torchvision(t):
        return tv(t, p, bs)

    def timm_per_channel(t):
        return timm(t, drop_prob=p, block_size=bs, couple_channels=False)

    def timm_coupled(t):
        return timm(t, drop_prob=p, block_size=bs)

    torch._dynamo.reset()
    x = torch.randn(shape, requires_grad=True)
    names = {"F.dropout": dropout, "dropreg drop_block2d": dropreg,
             "dropreg drop_block2d share_channels": dropreg_shared,
             "torchvision drop_block2d": torchvision,
             "timm drop_block_2d couple_channels=False": timm_per_channel,
             "timm drop_block_2d (default couple_channels=True)": timm_coupled}
    fns, compile_s = {}, {}
    for name, f in names.items():
        fns[name] = torch.compile(f)
        t0 = time.perf_counter()
        fns[name](x).backward(torch.ones_like(x))  # compiles forward and backward
        compile_s[name] = time.perf_counter() - t0
        x.grad = None
    times, _ = time_alternating(fns, x, repeats)
    base = times["F.dropout"]
    print(f"\ntorch.compile'd DropBlock2d fwd+bwd on {shape} float32, p={p}, block={bs}, "
          f"median of {repeats}")
    for name, t in times.items():
        print(f"  {name:<48} {1e3 * t:8.1f} ms   x{t / base:5.2f} compiled dropout")
    ours = times["dropreg drop_block2d"]
    per_channel_peer = min(times["torchvision drop_block2d"],
                           times["timm drop_block_2d couple_channels=False"])
    fastest_peer = min(per_channel_peer,
                       times["timm drop_block_2d (default couple_channels=True)"])
    return {"shape": list(shape), "dtype": "float32", "p": p, "block_size": bs,
            "repeats": repeats, "seconds": times, "first_call_seconds": compile_s,
            "ratio_to_dropout": {k: v / base for k, v in times.items()},
            "dropreg_per_channel_over_fastest_per_channel_peer": ours / per_channel_peer,
            "dropreg_shared_over_timm_coupled":
                times["dropreg drop_block2d share_channels"]
                / times["timm drop_block_2d (default couple_channels=True)"],
            "dropreg_per_channel_over_fastest_peer_any_mode": ours / fastest_peer}


def machine(load_before: float) -> dict:
    """The machine, and its load: the 1-minute load average before and after the run."""
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "python": platform.python_version(),
            "load": f"{load_before:.1f}-{os.getloadavg()[0]:.1f}"}


def _timed_label(what: str, t: dict) -> str:
    """README label of a timed section: the layer, its tensor and settings, and the load."""
    return (f"{what} fwd+bwd (" + "x".join(map(str, t["shape"]))
            + f", p {t['p']}, block {t['block_size']}), per-channel masks"
            + (f" (load {t['load']})" if "load" in t else ""))


def _unmet(missed: bool) -> str:
    return " (not met)" if missed else ""


def summary_rows(result: dict) -> list[dict]:
    """The README table rows of a result (read by ``benchmarks/run_all.py``)."""
    rows = []
    frac = result["drop_fraction"]
    worst = max(frac["rows"], key=lambda r: abs(r["dropreg_rel_error"]))
    tv = max(abs(r["torchvision_rel_error"]) for r in frac["rows"])
    tm = max(abs(r["timm_rel_error"]) for r in frac["rows"])
    rows.append({
        "benchmark": f"DropBlock2d realised drop fraction, worst of {len(frac['rows'])} "
                     "settings of anchors.md §1.5 (relative error)",
        "dropreg": f"{worst['dropreg_rel_error']:+.2%}",
        "baseline": f"torchvision {tv:.1%}, timm {tm:.0%}",
        "ratio": "-", "goal": "within 1% of p"})
    t = result["dropblock2d_time"]
    r = t["ratio_to_dropout"]
    shape = "x".join(map(str, t["shape"]))
    rows.append({
        "benchmark": f"DropBlock2d fwd+bwd ({shape}, p {t['p']}, block {t['block_size']}), "
                     "per-channel masks",
        "dropreg": f"{r['dropreg drop_block2d']:.2f}x F.dropout",
        "baseline": f"torchvision {r['torchvision drop_block2d']:.2f}x, timm per-channel "
                    f"{r['timm drop_block_2d couple_channels=False']:.2f}x F.dropout",
        "ratio": f"{t['dropreg_per_channel_over_fastest_per_channel_peer']:.2f}x time",
        "goal": "<= 2x dropout, <= fastest peer"})
    rows.append({
        "benchmark": "DropBlock2d fwd+bwd, one mask shared across channels",
        "dropreg": f"{r['dropreg drop_block2d share_channels']:.2f}x F.dropout",
        "baseline": f"timm default {r['timm drop_block_2d (default couple_channels=True)']:.2f}x",
        "ratio": f"{t['dropreg_shared_over_timm_coupled']:.2f}x time",
        "goal": "<= fastest peer"})
    dc = result["dropconnect_linear_time"]
    rows.append({
        "benchmark": "DropConnectLinear fwd+bwd (" + "x".join(map(str, dc["shape"])) +
                     ", p 0.5), one mask per batch",
        "dropreg": f"{dc['seconds']['DropConnectLinear (mask per batch)'] * 1e3:.1f} ms",
        "baseline": f"nn.Linear + dropout {dc['seconds']['nn.Linear + F.dropout(input)'] * 1e3:.1f}"
                    " ms",
        "ratio": f"{dc['ratio_to_linear_plus_dropout']['DropConnectLinear (mask per batch)']:.2f}"
                 "x time",
        "goal": "<= 2x"})
    if "dropblock3d_time" in result:
        t3 = result["dropblock3d_time"]
        r3 = t3["ratio_to_dropout"]
        rows.append({
            "benchmark": _timed_label("DropBlock3d", t3),
            "dropreg": f"{r3['dropreg drop_block3d']:.2f}x F.dropout",
            "baseline": f"torchvision drop_block3d {r3['torchvision drop_block3d']:.2f}x "
                        "F.dropout",
            "ratio": f"{t3['dropreg_over_torchvision']:.2f}x time",
            "goal": "<= torchvision" + _unmet(t3["dropreg_over_torchvision"] > 1)})
    if "compiled_dropblock2d_time" in result:
        tc = result["compiled_dropblock2d_time"]
        rc = tc["ratio_to_dropout"]
        rows.append({
            "benchmark": _timed_label("torch.compile'd DropBlock2d", tc),
            "dropreg": f"{rc['dropreg drop_block2d']:.2f}x compiled F.dropout",
            "baseline": f"compiled torchvision {rc['torchvision drop_block2d']:.2f}x, timm "
                        f"per-channel {rc['timm drop_block_2d couple_channels=False']:.2f}x",
            "ratio": f"{tc['dropreg_per_channel_over_fastest_per_channel_peer']:.2f}x time",
            "goal": "<= 1.5x compiled dropout, <= fastest compiled peer" + _unmet(
                rc["dropreg drop_block2d"] > 1.5
                or tc["dropreg_per_channel_over_fastest_per_channel_peer"] > 1)})
        rows.append({
            "benchmark": "torch.compile'd DropBlock2d fwd+bwd, one mask shared across channels",
            "dropreg": f"{rc['dropreg drop_block2d share_channels']:.2f}x compiled F.dropout",
            "baseline": "compiled timm default "
                        f"{rc['timm drop_block_2d (default couple_channels=True)']:.2f}x",
            "ratio": f"{tc['dropreg_shared_over_timm_coupled']:.2f}x time",
            "goal": "<= fastest compiled peer"
                    + _unmet(tc["dropreg_shared_over_timm_coupled"] > 1)})
    pe = dc["per_example_N32_seconds"]
    pe_base = pe["nn.Linear + F.dropout(input), N=32"]
    for pe_p, goal in (("0.5", "<= 30x"), ("0.1", "- (exact p: ~7 random words per 64 entries)")):
        t = pe[f"DropConnectLinear per_example p={pe_p}, N=32"]
        rows.append({
            "benchmark": f"DropConnectLinear fwd+bwd (32x1024x1024, p {pe_p}), one mask per "
                         "example",
            "dropreg": f"{t * 1e3:.1f} ms",
            "baseline": f"nn.Linear + dropout {pe_base * 1e3:.1f} ms",
            "ratio": f"{t / pe_base:.1f}x time", "goal": goal})
    return rows


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer samples and repeats")
    ap.add_argument("--repeats", type=int, default=None,
                    help="timing rounds (default 15, 3 with --quick)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--wheel-dir", type=Path, default=Path(tempfile.gettempdir()) / "peer_wheels")
    ap.add_argument("--reimplement", action="store_true",
                    help="use reimplemented peer seeding rules instead of their code")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--sections", default="1,2,3,4,5",
                    help="comma-separated sections to run; 4 and/or 5 alone update the stored "
                         "results of --out (default: all)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    load_before = os.getloadavg()[0]
    peers = load_peers(args.wheel_dir, args.reimplement)
    elements = 1_000_000 if args.quick else 40_000_000
    repeats = args.repeats or (3 if args.quick else 15)

    sections = {int(s) for s in args.sections.split(",")}
    if not sections <= {1, 2, 3, 4, 5} or (sections & {1, 2, 3} and not {1, 2, 3} <= sections):
        ap.error("--sections: 1,2,3 run together; 4 and 5 alone or with them")
    tv, timm = peers["torchvision"]["fn"], peers["timm"]["fn"]
    result: dict = {}
    if not {1, 2, 3} <= sections:  # new sections only: merged into the stored results
        result = json.loads(args.out.read_text())
    result["peers"] = {k: {"how": v["how"], "version": v["version"]} for k, v in peers.items()}
    if {1, 2, 3} <= sections:
        # 1. realised drop fraction
        gen = torch.Generator().manual_seed(0)
        impls = {
            "dropreg": lambda x, H, bs, p: DF.drop_block2d(x, p, bs, generator=gen),
            "torchvision": lambda x, H, bs, p: tv(x, p, bs),
            "timm": lambda x, H, bs, p: timm(x, drop_prob=p, block_size=bs),
        }
        drop_rows = []
        print(f"{'H=W':>4} {'bs':>3} {'p':>5} | " + " | ".join(f"{k:>22}" for k in impls)
              + " | exact rule tv / timm")
        for H, bs, p in ANCHOR_SETTINGS:
            row = {"H": H, "W": H, "block_size": bs, "p": p}
            cells = []
            for name, f in impls.items():
                mean, se = realised_drop(lambda x, f=f, H=H, bs=bs, p=p: f(x, H, bs, p), H, bs, p,
                                         elements)
                row[name] = mean
                row[name + "_stderr"] = se
                row[name + "_rel_error"] = (mean - p) / p
                cells.append(f"{mean:.4f} ({(mean - p) / p:+6.1%})")
            row["torchvision_rule_exact"] = peer_expected_drop_fraction("torchvision", H, H, bs, p)
            row["timm_rule_exact"] = peer_expected_drop_fraction("timm", H, H, bs, p)
            drop_rows.append(row)
            print(f"{H:>4} {bs:>3} {p:>5} | " + " | ".join(f"{c:>22}" for c in cells)
                  + f" | {row['torchvision_rule_exact']:.4f} / {row['timm_rule_exact']:.4f}")

        # 2. DropBlock2d time
        x = torch.randn(32, 64, 56, 56, requires_grad=True)
        p, bs = 0.1, 7
        timed = {
            "F.dropout": lambda t: F.dropout(t, p, training=True),
            "dropreg drop_block2d": lambda t: DF.drop_block2d(t, p, bs),
            "dropreg drop_block2d share_channels": lambda t: DF.drop_block2d(
                t, p, bs, share_channels=True),
            "torchvision drop_block2d": lambda t: tv(t, p, bs),
            "timm drop_block_2d couple_channels=False": lambda t: timm(
                t, drop_prob=p, block_size=bs, couple_channels=False),
            "timm drop_block_2d (default couple_channels=True)": lambda t: timm(
                t, drop_prob=p, block_size=bs),
        }
        times, walls = time_alternating(timed, x, repeats)
        base = times["F.dropout"]
        # like with like: independent masks per (sample, channel) vs the peers' per-channel modes;
        # one mask per sample (share_channels) vs timm's default couple_channels=True
        per_channel_peer = min(times["torchvision drop_block2d"],
                               times["timm drop_block_2d couple_channels=False"])
        shared_peer = times["timm drop_block_2d (default couple_channels=True)"]
        fastest_peer = min(per_channel_peer, shared_peer)
        print(f"\nDropBlock2d fwd+bwd on (32, 64, 56, 56) float32, p={p}, block={bs}, "
              f"{args.threads} thread(s), median of {repeats} alternated rounds (CPU time; wall)")
        for name, t in times.items():
            print(f"  {name:<48} {1e3 * t:8.1f} ms ({1e3 * walls[name]:6.1f} wall)   "
                  f"x{t / base:5.2f} dropout")
        ours = times["dropreg drop_block2d"]
        ours_shared = times["dropreg drop_block2d share_channels"]
        print(f"  dropreg per-channel / fastest per-channel peer: x{ours / per_channel_peer:.2f}")
        print("  dropreg share_channels / timm couple_channels=True: "
              f"x{ours_shared / shared_peer:.2f}")
        print(f"  fastest dropreg mode / fastest peer (any mode): "
              f"x{min(ours, ours_shared) / fastest_peer:.2f}")
        del x

        # 3. DropConnectLinear vs Linear + dropout
        n, d_in, d_out = 256, 1024, 1024
        xl = torch.randn(n, d_in, requires_grad=True)
        lin = torch.nn.Linear(d_in, d_out)
        dc = DropConnectLinear(d_in, d_out, p=0.5)
        lin_times, _ = time_alternating({
            "nn.Linear": lambda t: lin(t),
            "nn.Linear + F.dropout(input)": lambda t: lin(F.dropout(t, 0.5, training=True)),
            "DropConnectLinear (mask per batch)": lambda t: dc(t),
        }, xl, repeats)
        # per example, N = 32: p = 0.5 (one random word per 64 mask entries) and p = 0.1 (about
        # seven: the cost of an exact non-dyadic p, see dropreg.masks.bits)
        xs = torch.randn(32, d_in, requires_grad=True)
        pe_fns = {"nn.Linear + F.dropout(input), N=32":
                  lambda t: lin(F.dropout(t, 0.5, training=True))}
        for pe_p in (0.5, 0.1):
            layer = DropConnectLinear(d_in, d_out, p=pe_p, per_example=True)
            pe_fns[f"DropConnectLinear per_example p={pe_p}, N=32"] = lambda t, m=layer: m(t)
        pe_small, pe_wall = time_alternating(pe_fns, xs, max(3, repeats // 2))
        lin_base = lin_times["nn.Linear + F.dropout(input)"]
        print(f"\nDropConnectLinear fwd+bwd, ({n}, {d_in}) -> {d_out}, p=0.5 (CPU time)")
        for name, t in lin_times.items():
            print(f"  {name:<48} {1e3 * t:8.1f} ms   x{t / lin_base:5.2f} Linear+dropout")
        pe_base = pe_small["nn.Linear + F.dropout(input), N=32"]
        for name, t in pe_small.items():
            print(f"  {name:<48} {1e3 * t:8.1f} ms ({1e3 * pe_wall[name]:6.1f} wall)  "
                  f"x{t / pe_base:5.2f} Linear+dropout")

        result.update({
            "drop_fraction": {
                "settings": "anchors.md §1.5",
                "samples_per_setting": elements,
                "rows": drop_rows,
                "dropreg_max_abs_rel_error": max(abs(r["dropreg_rel_error"]) for r in drop_rows),
                "dropreg_max_abs_z": max(abs(r["dropreg"] - r["p"]) / r["dropreg_stderr"]
                                         for r in drop_rows),
            },
            "dropblock2d_time": {
                "shape": [32, 64, 56, 56], "dtype": "float32", "p": p, "block_size": bs,
                "repeats": repeats, "seconds": times, "wall_seconds": walls,
                "timing": "thread CPU time, sides alternated in each round, median",
                "ratio_to_dropout": {k: v / base for k, v in times.items()},
                "dropreg_per_channel_over_fastest_per_channel_peer": ours / per_channel_peer,
                "dropreg_shared_over_timm_coupled": ours_shared / shared_peer,
                "dropreg_per_channel_over_fastest_peer_any_mode": ours / fastest_peer,
            },
            "dropconnect_linear_time": {
                "shape": [n, d_in, d_out], "p": 0.5, "seconds": lin_times,
                "ratio_to_linear_plus_dropout": {k: v / lin_base for k, v in lin_times.items()},
                "per_example_N32_seconds": pe_small, "per_example_N32_wall_seconds": pe_wall,
                "per_example_N32_ratio": {k: v / pe_base for k, v in pe_small.items()},
            },
        })

    # 4. DropBlock3d time, 5. compiled DropBlock2d time (contenders alternated)
    if 4 in sections:
        result["dropblock3d_time"] = dropblock3d_time(peers["torchvision"]["fn3d"], repeats)
    if 5 in sections:
        result["compiled_dropblock2d_time"] = compiled_dropblock2d_time(tv, timm, repeats)
    if {1, 2, 3} <= sections:
        result["machine"] = machine(load_before)
    else:  # the machine record (and its load) stays that of sections 1-3; these name their own
        for key in ("dropblock3d_time", "compiled_dropblock2d_time"):
            if key in result and int(key == "compiled_dropblock2d_time") + 4 in sections:
                result[key]["load"] = f"{load_before:.1f}-{os.getloadavg()[0]:.1f}"
    result["quick"] = args.quick
    result["sections"] = sorted(sections)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    result["rows"] = summary_rows(result)
    args.out.write_text(json.dumps(result, indent=2, default=float) + "\n")
    print(f"\nwrote {args.out}")
    return result


if __name__ == "__main__":
    main()
