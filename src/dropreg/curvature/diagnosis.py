"""One call that diagnoses a model: curvature and dropout noise in the clean and expected states.

:func:`diagnose` computes, for the risk with dropout off (``"clean"``) and for the expected
dropout risk over ``M`` fixed masks (``"expected"``; Zhang, Zhou, Xu 2022):

* the top Hessian eigenvalues by Lanczos, each with its residual ``||H v - lambda v||``;
* the Hessian trace by Hutch++ with its standard error (Meyer et al. 2021);
* the spectral density by stochastic Lanczos quadrature (Ghorbani, Krishnan, Xiao 2019);
* the alignment of the dropout gradient-noise covariance ``Sigma`` with the Hessian,
  ``cos(H, Sigma) = Tr(H Sigma) / (||H||_F ||Sigma||_F)`` against its value for random
  eigenvectors, and the variance of the noise along the top eigenvectors (Zhang, Zhou, Xu 2022,
  the noise-structure analysis).

The result prints as a text summary and draws a figure (:meth:`Diagnosis.plot`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from dropreg._checks import check_int
from dropreg.curvature.alignment import AlignmentResult, noise_alignment
from dropreg.curvature.density import SpectralDensity, spectral_density
from dropreg.curvature.hvp import HessianOperator
from dropreg.curvature.lanczos import EigenResult, top_eigenpairs
from dropreg.curvature.noise import GradientNoise, dropout_gradient_noise
from dropreg.curvature.risk import DropoutRisk
from dropreg.curvature.trace import TraceResult, stochastic_trace

__all__ = ["Diagnosis", "StateDiagnosis", "diagnose"]


@dataclass(frozen=True)
class StateDiagnosis:
    """Curvature of the risk in one dropout state and its alignment with the dropout noise.

    Attributes:
        state: ``"clean"`` or ``"expected"``.
        loss: the risk at the parameters.
        top: top eigenpairs (``top.residuals`` are ``||H v - lambda v||``).
        trace: Hutch++ trace with its standard error.
        density: the spectral density (stochastic Lanczos quadrature).
        alignment: noise-Hessian alignment.
        num_matvecs: Hessian-vector products spent in this state.
    """

    state: str
    loss: float
    top: EigenResult
    trace: TraceResult
    density: SpectralDensity
    alignment: AlignmentResult
    num_matvecs: int


@dataclass(frozen=True)
class Diagnosis:
    """The result of :func:`diagnose`: one :class:`StateDiagnosis` per state and the noise.

    Attributes:
        clean: the clean state.
        expected: the expected state over ``num_masks`` masks.
        noise: the dropout gradient noise (``samples`` of shape ``(P, S)``).
        num_params: ``P``.
        num_masks: ``M`` of the expected state.
    """

    clean: StateDiagnosis
    expected: StateDiagnosis
    noise: GradientNoise
    num_params: int
    num_masks: int

    def summary(self) -> str:
        """A text summary: one block per state (see :func:`diagnose` for an example)."""
        lines = [f"dropreg diagnosis: P = {self.num_params} parameters, expected state over "
                 f"{self.num_masks} masks, {self.noise.num_samples} noise samples"]
        for d in (self.clean, self.expected):
            ev = ", ".join(f"{float(e):.4g} (res {float(r):.1e})"
                           for e, r in zip(d.top.eigenvalues, d.top.residuals))
            a = d.alignment
            lines += [
                f"[{d.state}] loss {d.loss:.6g}",
                f"  top eigenvalues: {ev}; converged {d.top.converged}",
                f"  trace: {d.trace.estimate:.5g} +- {d.trace.stderr:.2g} (s.e., "
                f"{d.trace.num_matvecs} products)",
                f"  noise alignment cos(H, Sigma) = {a.cosine:.3f} +- {a.cosine_stderr:.2g} "
                f"(random eigenvectors: {a.null_cosine:.3f}); Spearman(lambda_k, v_k' Sigma v_k) "
                f"= {a.spearman:.2f}",
                f"  Hessian-vector products: {d.num_matvecs}",
            ]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()

    def plot(self, sigma: float | None = None) -> Any:
        """A two-panel figure: the spectral density in both states (log scale), and the noise
        variance along each top eigenvector against its eigenvalue (log-log).

        Args:
            sigma: width of the Gaussian broadening (default 1 % of the spectral range).

        Returns:
            The ``matplotlib`` figure.
        """
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(10, 4))
        nodes = torch.cat([n for d in (self.clean, self.expected) for n in d.density.nodes])
        lo, hi = float(nodes.min()), float(nodes.max())
        span = max(hi - lo, 1e-12)
        s = 0.01 * span if sigma is None else sigma
        grid = torch.linspace(lo - 0.05 * span, hi + 0.05 * span, 800, dtype=torch.float64)
        for d, color in ((self.clean, "C0"), (self.expected, "C3")):
            dens = d.density.evaluate(grid, s)
            dens = dens.clamp_min(1e-6 * float(dens.max()))
            ax0.semilogy(grid, dens, color=color, label=f"{d.state} (tr = {d.trace.estimate:.3g})")
        ax0.set(xlabel="eigenvalue", ylabel="density", title="Hessian spectral density")
        ax0.legend()
        for d, color in ((self.clean, "C0"), (self.expected, "C3")):
            a = d.alignment
            ev, pv = a.eigenvalues.double(), a.projected_variances.double()
            keep = (ev > 0) & (pv > 0)
            ax1.loglog(ev[keep], pv[keep], "o", color=color,
                       label=f"{d.state}: cos = {a.cosine:.2f} (null {a.null_cosine:.2f})")
        ax1.set(xlabel="Hessian eigenvalue lambda_k", ylabel="noise variance v_k' Sigma v_k",
                title="dropout noise along top eigenvectors")
        ax1.legend()
        fig.tight_layout()
        return fig


def _state(risk: DropoutRisk, noise: GradientNoise, k: int, tol: float, trace_matvecs: int,
           probes: int, steps: int, g: torch.Generator | None) -> StateDiagnosis:
    H = HessianOperator(risk)
    top = top_eigenpairs(H, k, tol, generator=g)
    tr = stochastic_trace(H, trace_matvecs, "hutch++", generator=g)
    dens = spectral_density(H, probes, steps, generator=g)
    al = noise_alignment(H, noise, k=k, exact_hessian=False, num_matvecs=trace_matvecs, eigen=top,
                   generator=g)
    return StateDiagnosis(risk.state, risk.loss(), top, tr, dens, al, H.num_matvecs)


def diagnose(
    model: nn.Module,
    loss_fn: Callable[[Any, Tensor], Tensor],
    data: tuple[Tensor, Tensor] | Iterable[tuple[Any, Tensor]],
    *,
    k: int = 5,
    num_masks: int = 8,
    noise_samples: int = 32,
    trace_matvecs: int = 30,
    density_probes: int = 2,
    lanczos_steps: int = 40,
    tol: float = 1e-3,
    batch_size: int | None = None,
    generator: torch.Generator | None = None,
    is_dropout: Callable[[nn.Module], bool] | None = None,
) -> Diagnosis:
    """Diagnose a model with dropout: curvature in the clean and expected states and the
    alignment of its dropout noise with the Hessian (module docstring).

    Args:
        model: the network, with dropout sites (any kind, :mod:`dropreg.sites`), in train or eval
            mode (BatchNorm follows :class:`DropoutRisk`'s policy).
        loss_fn: ``loss_fn(output, target)``, the mean over the batch.
        data: ``(X, y)`` or an iterable of ``(inputs, targets)`` batches.
        k: top eigenpairs per state (>= 1; >= 3 for a Spearman correlation).
        num_masks: ``M``, the mask sets of the expected state.
        noise_samples: dropout gradient draws for ``Sigma`` (>= 4).
        trace_matvecs: products of each Hutch++ estimate (>= 6).
        density_probes, lanczos_steps: stochastic Lanczos quadrature settings.
        tol: relative Lanczos residual tolerance.
        batch_size: with ``(X, y)`` data, examples per forward pass.
        generator: every random choice (masks, probes, start vectors).
        is_dropout: predicate selecting dropout sites.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> net = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(),
        ...                           torch.nn.Dropout(0.3), torch.nn.Linear(8, 2)).double()
        >>> X = torch.randn(16, 3, generator=g, dtype=torch.float64)
        >>> y = torch.randint(0, 2, (16,), generator=g)
        >>> d = diagnose(net, torch.nn.functional.cross_entropy, (X, y), k=3, num_masks=4,
        ...              noise_samples=8, trace_matvecs=12, lanczos_steps=10, generator=g)
        >>> d.clean.top.converged, d.expected.state, d.summary().splitlines()[1][:13]
        (True, 'expected', '[clean] loss ')
    """
    k = check_int("k", k)
    check_int("noise_samples", noise_samples, minimum=4)
    check_int("trace_matvecs", trace_matvecs, minimum=6)
    common = dict(batch_size=batch_size, is_dropout=is_dropout)
    clean = DropoutRisk(model, loss_fn, data, **common)
    expected = DropoutRisk(model, loss_fn, data, dropout="expected", num_masks=num_masks,
                           generator=generator, **common)
    noise = dropout_gradient_noise(model, loss_fn, data, noise_samples, batch_size=batch_size,
                                   generator=generator, is_dropout=is_dropout)
    k = min(k, clean.num_params)
    states = [_state(r, noise, k, tol, trace_matvecs, density_probes, lanczos_steps, generator)
              for r in (clean, expected)]
    if not all(math.isfinite(s.alignment.cosine) for s in states):
        raise ValueError("the noise-Hessian alignment is not finite: the Hessian or the noise "
                         "has zero Frobenius norm here")
    return Diagnosis(states[0], states[1], noise, clean.num_params, num_masks)
