"""Trained runs of the Helmbold & Long (2017) claims: pure functions of settings and a generator.

- :func:`sign_parity_run` -- Section 6 (Fig. 2): per-example SGD of K-n-1 ReLU nets on sign-parity
  data at several input scales, with dropout, weight decay or neither;
- :func:`fit_weight_decay_batch` -- Theorem 7: minimisers of the weight-decay criterion ``J_2`` on
  ``P_(x,1)`` found by Adam (torch autograd).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from dropreg._random import seed_from
from dropreg.relu import StandardNet, linear_layers

#: Methods of the sign-parity runs, in the order of the last axis of :attr:`SignParityRun.error`.
METHODS: tuple[str, ...] = ("dropout", "weight decay", "none")


def sign_parity_sets(runs: int, K: int, n: int, generator: torch.Generator
                     ) -> tuple[list[np.ndarray], list[np.ndarray], list[list[np.ndarray]]]:
    """``runs`` sign-parity training sets (10 examples, ``K`` inputs) and one Torch-default
    K-n-1 initialisation each: ``(Xs, Ys, inits)``, ``inits[r] = [W1, b1, w, b]``."""
    from dropreg.data import sign_parity

    Xs, Ys, inits = [], [], []
    for _ in range(runs):
        ds = sign_parity(10, 0, K=K, generator=generator)
        init = StandardNet(K, 2, n, generator=generator)  # Torch default init
        lin1, lin2 = linear_layers(init)
        inits.append([t.detach().numpy().copy() for t in
                      (lin1.weight, lin1.bias, lin2.weight[0], lin2.bias)])
        Xs.append(ds.X_train.numpy())
        Ys.append(ds.y_train[:, 0].numpy())
    return Xs, Ys, inits


def sgd_batch(Xs, Ys, params, keep, wd, iters, rng, lr0=0.01, lrd=1e-5, mom=0.5,
              progress=None, block=5000):
    """Per-example SGD of B independent K-n-1 ReLU nets at once (manual backprop, numpy).

    Torch7 ``optim.sgd``: ``clr = lr / (1 + t lrd)``, momentum with dampening = momentum (the
    first step uses the plain gradient), weight decay ``wd * theta`` added to the gradient of every
    parameter (biases included). Loss ``(f - y)^2`` without 1/2. Dropout on inputs and hidden
    units with keep probability ``keep`` (per net; 1 = none), kept scaled by ``1 / keep``.
    The gradient is checked against torch autograd in ``tests/relu/test_relu_claims.py``.
    """
    W1, b1, w, b = params
    B, N, K = Xs.shape
    n = W1.shape[1]
    ar = np.arange(B)
    vel = None
    kp = keep[:, None]
    wds = [wd[:, None, None], wd[:, None], wd[:, None], wd]
    prm = [W1, b1, w, b]
    for t0 in range(0, iters, block):
        T = min(block, iters - t0)
        idx = rng.integers(0, N, size=(T, B))
        U = rng.random((T, B, K + n))
        for t in range(T):
            i = idx[t]
            x, y = Xs[ar, i], Ys[ar, i]
            m = (U[t] < kp) / kp
            xm = x * m[:, :K]
            pre = np.einsum("bnk,bk->bn", W1, xm) + b1
            r1 = m[:, K:]
            hm = np.maximum(pre, 0.0) * r1
            g = 2.0 * ((w * hm).sum(1) + b - y)
            dpre = (g[:, None] * w) * r1 * (pre > 0)
            grads = [dpre[:, :, None] * xm[:, None, :], dpre, g[:, None] * hm, g]
            for k in range(4):
                grads[k] += wds[k] * prm[k]
            if vel is None:
                vel = grads
            else:
                for k in range(4):
                    vel[k] *= mom
                    vel[k] += (1.0 - mom) * grads[k]
            clr = lr0 / (1.0 + (t0 + t) * lrd)
            for k in range(4):
                prm[k] -= clr * vel[k]
        if progress is not None:
            progress.advance(T / iters)
    return prm


def train_mse(Xs: np.ndarray, Ys: np.ndarray, params) -> np.ndarray:
    """Mean square training error (no dropout) of each of the B nets, shape ``(B,)``."""
    W1, b1, w, b = params
    pre = np.einsum("bnk,bik->bin", W1, Xs) + b1[:, None, :]
    f = (np.maximum(pre, 0.0) * w[:, None, :]).sum(-1) + b[:, None]
    return ((f - Ys) ** 2).mean(1)


@dataclass(frozen=True)
class SignParityRun:
    """Training errors of the sign-parity runs: ``error[run][scale][method]`` (METHODS order)."""

    scales: tuple[float, ...]
    error: tuple[tuple[tuple[float, ...], ...], ...]
    iterations: int

    def slopes(self, method: int) -> list[float]:
        """Least-squares slope of the error against the scale, one per run."""
        sc = np.array(self.scales)
        return [float(np.polyfit(sc, np.array(r)[:, method], 1)[0]) for r in self.error]


def sign_parity_run(runs: int, iters: int, scales: tuple[float, ...], generator: torch.Generator,
                    progress=None, K: int = 5, n: int = 5, drop: float = 0.5,
                    lam: float = 0.5) -> SignParityRun:
    """Section 6 of Helmbold & Long (2017): each run draws one data set and one initialisation
    shared by its (scale, method) nets, trained by :func:`sgd_batch` for ``iters`` steps."""
    Xr, Yr, inits = sign_parity_sets(runs, K, n, generator)
    cases = [(r, s, m) for r in range(runs) for s in scales for m in range(len(METHODS))]
    Xs = np.stack([Xr[r] * s for r, s, _ in cases])
    Ys = np.stack([Yr[r] for r, _, _ in cases])
    meth = np.array([m for _, _, m in cases])
    params = [np.stack([inits[r][k] for r, _, _ in cases]).copy() for k in range(4)]
    params[3] = params[3].reshape(-1)
    keep = np.where(meth == 0, 1.0 - drop, 1.0)
    wd = np.where(meth == 1, lam, 0.0)
    rng = np.random.default_rng(seed_from(generator))
    params = sgd_batch(Xs, Ys, params, keep, wd, iters, rng, progress=progress)
    err = train_mse(Xs, Ys, params).reshape(runs, len(scales), len(METHODS))
    return SignParityRun(tuple(scales), tuple(tuple(tuple(float(v) for v in row) for row in r)
                                              for r in err), iters)


def fit_weight_decay_batch(xs: list[torch.Tensor], lam: float, n: int, seeds: int, steps: int,
                           generator: torch.Generator):
    """Minimise J_2 = R + (lam/2)||weights||^2 on P_(x,1) for many (x, seed) at once (Adam).

    P_(x,1) puts 1/2 on (x, 1) and 1/2 on (0, 0) (Helmbold & Long 2017, Theorem 7); the nets are
    K-n-1 ReLU nets, independent slices of one batched parameter tensor (the summed loss
    separates), Torch-default init. Returns ``(R, J, W1, w, b)``, ``R`` and ``J`` of shape
    ``(len(xs), seeds)``.
    """
    B, K = len(xs) * seeds, xs[0].shape[0]
    X = torch.stack([x for x in xs for _ in range(seeds)])

    def init(*shape, fan):
        return ((torch.rand(*shape, generator=generator, dtype=torch.float64) * 2 - 1)
                / math.sqrt(fan)).requires_grad_()

    W1, b1, w, b = init(B, n, K, fan=K), init(B, n, fan=K), init(B, n, fan=n), init(B, fan=n)
    opt = torch.optim.Adam([W1, b1, w, b], lr=0.01)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)

    def parts():
        f0 = (torch.relu(b1) * w).sum(1) + b
        fx = (torch.relu(torch.einsum("bnk,bk->bn", W1, X) + b1) * w).sum(1) + b
        R = 0.5 * f0**2 + 0.5 * (fx - 1.0) ** 2
        return R, R + 0.5 * lam * ((W1**2).sum((1, 2)) + (w**2).sum(1))

    for _ in range(steps):
        opt.zero_grad()
        parts()[1].sum().backward()
        opt.step()
        sched.step()
    with torch.no_grad():
        R, J = parts()
    shape = (len(xs), seeds)
    return R.reshape(shape), J.reshape(shape), W1.detach(), w.detach(), b.detach()
