"""Dropout gradient noise at fixed parameters and unbiased moments of its covariance.

Zhang, Zhou, Xu 2022 (the dropout noise ``xi = grad R^drop(theta, eta) - grad R``).

``xi_s = grad R^drop(theta, eta_s) - c`` for S independent mask draws ``eta_s``, where the centre
``c`` is either the sample mean of the S dropout gradients (``center="mean"``: ``Sigma`` is the
covariance of the dropout gradient) or the clean gradient (``center="clean"``: the second moment
about the plain GD gradient, which differs from the covariance by ``(grad R_1)(grad R_1)^T``).

Masks are drawn per example (as ``nn.Dropout``) or shared by each batch (Zhang, Zhou, Xu
2022). The samples are kept as a ``P x S`` matrix; gradients are computed batch by batch of the
data, ``chunk_size`` masks at a time with ``torch.func.vmap`` (a loop where vmap cannot trace
the model), so memory is ``P x S`` plus ``chunk_size`` forward passes of one batch. The model is
evaluated on a snapshot of its parameters and buffers
(:class:`~dropreg.curvature.risk.DropoutRisk`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn

from dropreg._checks import check_int
from dropreg._params import flatten_params
from dropreg._random import seed_from
from dropreg.curvature import distributed as _dist
from dropreg.curvature.hvp import _is_func_failure
from dropreg.curvature.risk import DropoutRisk
from dropreg.sites import DropoutMasks, DropoutState, block_masks

__all__ = [
    "GradientNoise",
    "dropout_gradient_noise",
    "dropout_gradients",
    "squared_frobenius_from_gram",
]


@dataclass(frozen=True)
class GradientNoise:
    """S samples of dropout gradient noise, ``samples`` of shape ``(P, S)``.

    Attributes:
        samples: the noise vectors ``xi_s`` as columns.
        center: ``"mean"`` or ``"clean"``.
        dof: divisor making ``samples @ samples.T / dof`` unbiased for ``Sigma`` (S - 1 or S).
        mean_gradient: the sample mean of the dropout gradients.
        clean_gradient: the clean gradient (``None`` when ``center="mean"``).
        per_example: whether masks were drawn per example.

    Example:
        Four noise samples about a fixed point, whose unbiased covariance is the identity:

        >>> xi = torch.tensor([[1.0, -1.0, 1.0, -1.0], [1.0, 1.0, -1.0, -1.0]], dtype=torch.float64)
        >>> noise = GradientNoise(xi, "clean", 4, torch.zeros(2), torch.zeros(2), True)
        >>> noise.num_samples, noise.covariance().tolist(), noise.trace()
        (4, [[1.0, 0.0], [0.0, 1.0]], 2.0)
    """

    samples: Tensor
    center: str
    dof: int
    mean_gradient: Tensor
    clean_gradient: Tensor | None
    per_example: bool

    @property
    def num_samples(self) -> int:
        """S, the number of noise samples (columns of :attr:`samples`)."""
        return self.samples.shape[1]

    def covariance(self) -> Tensor:
        """The dense ``P x P`` unbiased estimate of ``Sigma`` (small models only).

        Example:
            >>> noise = GradientNoise(torch.tensor([[1.0, -1.0, 1.0, -1.0], [1.0, 1.0, -1.0, -1.0]],
            ...                       dtype=torch.float64), "clean", 4, torch.zeros(2), None, True)
            >>> noise.covariance()
            tensor([[1., 0.],
                    [0., 1.]], dtype=torch.float64)
        """
        return self.samples @ self.samples.T / self.dof

    def gram(self) -> Tensor:
        """The ``S x S`` Gram matrix ``xi_s . xi_t`` in float64.

        Example:
            >>> noise = GradientNoise(torch.tensor([[1.0, -1.0, 1.0, -1.0], [1.0, 1.0, -1.0, -1.0]],
            ...                       dtype=torch.float64), "clean", 4, torch.zeros(2), None, True)
            >>> noise.gram()[0].tolist()
            [2.0, 0.0, 0.0, -2.0]
        """
        Xi = self.samples.double()
        return Xi.T @ Xi

    def trace(self) -> float:
        """Unbiased ``tr(Sigma)``.

        Example:
            >>> noise = GradientNoise(torch.tensor([[1.0, -1.0, 1.0, -1.0], [1.0, 1.0, -1.0, -1.0]],
            ...                       dtype=torch.float64), "clean", 4, torch.zeros(2), None, True)
            >>> noise.trace() == float(noise.covariance().trace())
            True
        """
        return float((self.samples.double() ** 2).sum()) / self.dof

    def squared_frobenius(self) -> float:
        """Unbiased ``||Sigma||_F^2`` from the Gram matrix (``(1/S^2) sum_st (xi_s . xi_t)^2``,
        bias removed).

        ``center="clean"``: ``sum_{s != t} (xi_s . xi_t)^2 / (S (S-1))``. ``center="mean"``: the
        estimator of Himeno & Yamada (2014, JMVA 130), unbiased without normality (needs S >= 4).

        Example:
            >>> noise = GradientNoise(torch.tensor([[1.0, -1.0, 1.0, -1.0], [1.0, 1.0, -1.0, -1.0]],
            ...                       dtype=torch.float64), "clean", 4, torch.zeros(2), None, True)
            >>> round(noise.squared_frobenius(), 4)  # sum_{s != t} G_st^2 / (S (S - 1))
            1.3333
        """
        return squared_frobenius_from_gram(self.gram(), self.center)

    def projected_variance(self, directions: Tensor) -> Tensor:
        """Unbiased ``v^T Sigma v`` for each column ``v`` of ``directions`` ``(P, k)``.

        Example:
            >>> noise = GradientNoise(torch.tensor([[1.0, -1.0, 1.0, -1.0], [1.0, 1.0, -1.0, -1.0]],
            ...                       dtype=torch.float64), "clean", 4, torch.zeros(2), None, True)
            >>> noise.projected_variance(torch.eye(2, dtype=torch.float64))  # diag of Sigma
            tensor([1., 1.], dtype=torch.float64)
        """
        proj = directions.T.to(self.samples.dtype) @ self.samples
        return (proj.double() ** 2).sum(1) / self.dof


def squared_frobenius_from_gram(G: Tensor, center: str) -> float:
    """Unbiased ``||Sigma||_F^2`` from the Gram matrix ``G`` of S noise samples.

    ``center="clean"`` (samples iid about a fixed point): ``sum_{s != t} G_st^2 / (S (S-1))``.
    ``center="mean"`` (samples centred by their mean; ``G`` is re-centred here, so any
    common shift is harmless): Himeno & Yamada (2014, JMVA 130), unbiased without normality,
    needs S >= 4.

    Example:
        >>> xi = torch.tensor([[1.0, -1.0, 1.0, -1.0], [1.0, 1.0, -1.0, -1.0]])
        >>> round(squared_frobenius_from_gram(xi.T @ xi, "clean"), 4)  # E = ||I||_F^2 = 2
        1.3333
    """
    G = G.double()
    n = G.shape[0]
    if center == "clean":
        off = (G**2).sum() - (G.diagonal() ** 2).sum()
        return float(off) / (n * (n - 1))
    if n < 4:
        raise ValueError(f"need num_samples >= 4 for an unbiased ||Sigma||_F, got {n}")
    r = G.mean(0)
    G = G - r[None, :] - r[:, None] + r.mean()  # = C G C, C the centring matrix
    tr_s = float(G.trace()) / (n - 1)
    tr_s2 = float((G**2).sum()) / (n - 1) ** 2
    q = float((G.diagonal() ** 2).sum()) / (n - 1)
    return (n - 1) / (n * (n - 2) * (n - 3)) * ((n - 1) * (n - 2) * tr_s2 + tr_s**2 - n * q)


def _stack_masks(ms: Sequence[DropoutMasks]) -> dict[str, Tensor]:
    return {k: torch.stack([m.masks[k] for m in ms]) for k in ms[0].masks}


def _mask_gradients(risk: DropoutRisk, st: DropoutState, x, y: Tensor,
                    masks: Sequence[DropoutMasks], state: dict) -> Tensor:
    """``(P, len(masks))`` gradients of one forward pass on ``(x, y)``, one per mask set."""

    def grad(p: dict[str, Tensor], md: dict[str, Tensor]) -> dict[str, Tensor]:
        return torch.func.grad(risk.function(st, x, y, md))(p)

    if state["vmap"]:
        try:
            gd = torch.func.vmap(grad, in_dims=(None, 0))(risk.params, _stack_masks(masks))
            return torch.cat([t.reshape(len(masks), -1) for t in gd.values()], dim=1).T
        except Exception as exc:  # vmap cannot trace this model: loop instead
            if not _is_func_failure(exc):
                raise
            state["vmap"] = False
    return torch.stack([flatten_params(grad(risk.params, m.masks)) for m in masks], dim=1)


def dropout_gradients(
    model: nn.Module,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    data: tuple[Tensor, Tensor],
    masks: Sequence[DropoutMasks],
    *,
    params: Sequence[str] | None = None,
    chunk_size: int = 16,
    is_dropout: Callable[[nn.Module], bool] | None = None,
) -> Tensor:
    """Flat gradients of the loss over ``data`` for each given mask realisation, ``(P, M)``.

    The one place where per-mask dropout gradients are computed (``dropreg.analytic``'s
    ``dropout_gradient`` is one column of it): ``torch.func.grad`` of the loss with the sites in
    the ``"fixed"`` state, ``chunk_size`` masks at a time under ``torch.func.vmap`` (a loop where
    vmap cannot trace the model), on a snapshot of the model's parameters and buffers.

    Args:
        model: the network.
        loss_fn: ``loss_fn(output, target)``, mean over the batch.
        data: ``(X, y)``.
        masks: the mask realisations (:class:`~dropreg.sites.DropoutMasks`) over all rows.
        params: parameter names (default all with ``requires_grad``), in this order in ``P``.
        chunk_size: masks per vectorised gradient call.
        is_dropout: predicate selecting dropout sites.

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Dropout(0.5),
        ...                           torch.nn.Linear(3, 1)).double()
        >>> X, y = torch.randn(4, 2).double(), torch.randn(4, 1).double()
        >>> from dropreg.sites import sample_masks
        >>> ms = sample_masks(net, X, 5, generator=torch.Generator().manual_seed(0))
        >>> dropout_gradients(net, torch.nn.functional.mse_loss, (X, y), ms).shape
        torch.Size([13, 5])
    """
    check_int("chunk_size", chunk_size)
    masks = list(masks)
    if not masks:
        raise ValueError("masks must hold at least one DropoutMasks, got none")
    risk = DropoutRisk(model, loss_fn, data, params=params, is_dropout=is_dropout,
                       check_deterministic=False)
    if not risk.sites:
        raise ValueError("model has no dropout site (is_dropout matched nothing)")
    x, y = next(iter(risk.batches()))
    out = torch.empty(risk.num_params, len(masks), dtype=risk.dtype, device=risk.device)
    state = {"vmap": True}
    with risk.switched() as st:
        for start in range(0, len(masks), chunk_size):
            chunk = masks[start:start + chunk_size]
            out[:, start:start + len(chunk)] = _mask_gradients(risk, st, x, y, chunk, state)
    return out


def dropout_gradient_noise(
    model: nn.Module,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    data: tuple[Tensor, Tensor] | Iterable[tuple[Tensor, Tensor]],
    num_samples: int,
    *,
    center: Literal["mean", "clean"] = "mean",
    per_example: bool = True,
    batch_size: int | None = None,
    chunk_size: int = 16,
    params: Sequence[str] | None = None,
    generator: torch.Generator | None = None,
    is_dropout: Callable[[nn.Module], bool] | None = None,
    block_rows: int = 64,
    process_group: Any = None,
) -> GradientNoise:
    """S samples of the dropout gradient noise of the full-data loss at the current parameters.

    Sample ``s`` is ``grad R^drop(theta, eta_s)``, the gradient of the loss over all the data
    with the mask draw ``eta_s``, minus the centre. Masks are drawn per fixed block of rows from
    a seed drawn from ``generator`` (:mod:`dropreg.sites.blocks`; row ``i`` of draw ``s`` is keyed
    by ``(seed, i // block_rows, s)``), so they do not depend on the batches, the chunks, or the
    ranks the rows are split over: they are the masks of ``DropoutRisk(..., dropout="expected",
    num_masks=S)`` with the same seed, whose gradient is :attr:`GradientNoise.mean_gradient`.
    With ``process_group`` (``data`` this rank's shard, :class:`DropoutRisk`) the per-mask
    gradients are summed over the ranks by one all-reduce; every rank gets the same samples.

    Args:
        model: the network with dropout sites.
        loss_fn: ``loss_fn(output, target)``, mean over the batch.
        data: ``(X, y)`` or an iterable of ``(inputs, targets)`` batches (a DataLoader); the
            gradient is that of the mean loss over all targets.
        num_samples: S, the number of mask draws (>= 2).
        center: ``"mean"`` (subtract the sample mean of the dropout gradients) or ``"clean"``
            (subtract the gradient of the clean model).
        per_example: masks per example (as ``nn.Dropout``) or one mask shared by each batch.
        batch_size: with ``(X, y)`` data, the rows per forward pass (and so the batch that
            shares a mask when ``per_example=False``; default: all rows at once).
        chunk_size: masks per vectorised gradient call (memory ~ chunk_size forward passes).
        params: parameter names (default all with ``requires_grad``).
        generator: for the masks.
        is_dropout: predicate selecting dropout sites.
        block_rows: rows per block of the mask keying.
        process_group: a ``torch.distributed`` process group the data are sharded over (the
            same ``generator`` seed on every rank, checked).

    Returns:
        :class:`GradientNoise` with ``samples`` of shape ``(P, S)``.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> net = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.ReLU(), torch.nn.Dropout(0.2),
        ...                           torch.nn.Linear(8, 1)).double()
        >>> X = torch.randn(16, 2, generator=g).double()
        >>> y = torch.randn(16, 1, generator=g).double()
        >>> xi = dropout_gradient_noise(net, torch.nn.functional.mse_loss, (X, y), 32, generator=g)
        >>> xi.samples.shape, xi.dof
        (torch.Size([33, 32]), 31)
    """
    check_int("num_samples", num_samples, minimum=2)
    if center not in ("mean", "clean"):
        raise ValueError(f"center must be 'mean' or 'clean', got {center!r}")
    check_int("chunk_size", chunk_size)
    risk = DropoutRisk(model, loss_fn, data, batch_size=batch_size, params=params,
                       is_dropout=is_dropout, per_example=per_example, block_rows=block_rows,
                       process_group=process_group)
    if not risk.sites:
        raise ValueError("model has no dropout site (is_dropout matched nothing): there is no "
                         "dropout noise")
    seed = seed_from(generator)
    if process_group is not None:
        seeds = [s[0] for s in _dist.gather_ints([seed], process_group, risk.device)]
        if len(set(seeds)) > 1:
            raise ValueError(f"process_group: the mask seed drawn from generator differs between "
                             f"the ranks: {seeds} (pass generator=torch.Generator()."
                             f"manual_seed(s) with the same s on every rank)")
    state = {"vmap": True}

    def compute() -> tuple[Tensor, float]:
        G = torch.zeros(risk.num_params, num_samples, dtype=risk.dtype, device=risk.device)
        total, start = 0.0, 0
        with risk.switched() as st:
            for x, y in risk.batches():
                n = int(y.shape[0])
                if n == 0:
                    continue
                for s0 in range(0, num_samples, chunk_size):
                    count = min(chunk_size, num_samples - s0)
                    ms = block_masks(model, x, seed, range(s0, s0 + count),
                                     row_start=risk.row_offset + start, block_rows=block_rows,
                                     per_example=per_example, sites=risk.sites)
                    G[:, s0:s0 + count] += n * _mask_gradients(risk, st, x, y, ms, state)
                total += n
                start += n
        return G, total

    G = risk.reduce(compute, (risk.num_params, num_samples))
    mean = G.mean(1)
    clean = None
    if center == "mean":
        Xi, dof = G - mean[:, None], num_samples - 1
    else:
        clean = risk.gradient()
        Xi, dof = G - clean[:, None], num_samples
    return GradientNoise(Xi, center, dof, mean, clean, per_example)
