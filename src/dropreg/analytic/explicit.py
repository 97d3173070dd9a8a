"""Explicit regularizer of dropout in deep nets (Wei, Kakade, Ma 2020, Section 4.1).

For a mean loss ``L = (1/N) sum_n l_n`` and dropout sites ``h_s`` with drop probability ``p_s``,
the second-order Taylor expansion of the expected dropout loss gives (eqs. 4.2-4.4)::

    R(F) = sum_s c_s sum_G u_G^T M_s u_G,     u_G = h_s restricted to the noise group G

with ``c_s = p_s / (2 (1 - p_s))`` (Taylor; for other mask laws ``noise_variance / 2``), and ``M_s``

* ``"full"``: the full Hessian ``D^2_h L`` of the loss w.r.t. the site (eq. 4.2, checks only);
* ``"gauss_newton"``: its Gauss-Newton part ``(1/N) sum_n J_n^T H_n J_n`` (eq. 4.3, R_approx),
  computed exactly with ``torch.func`` (small models);
* ``"sampled"``: the same, estimated without bias with one backward pass of a loss at labels
  sampled from the model's own prediction (the authors' code; ``docs/papers/wei2020.md``,
  "Sampled-label estimator"); this is what trains;
* ``"identity"`` / ``"loss_jacobian"``: the ablations of Section 5.2 (``H_n -> I/C`` and
  ``H_n -> grad l_n grad l_n^T``).

Element-wise masks have one group per coordinate. Masks shared over dims (channel dropout, or a
site's ``shared_mask_dims``) use ``u_G`` = the whole shared slice, which is exact for such masks.
The formula needs the groups' masks to be independent with one variance: Bernoulli and Gaussian
sites (``DropoutSite.independent``, :mod:`dropreg.sites`); a site with a correlated law
(DropBlock, ``MaskDropout`` of a block law) raises ``ValueError`` (its true gap is still measured
by :func:`monte_carlo_dropout_gap`).

Coefficient (``docs/papers/wei2020.md``, "The coefficient of R_approx"; claim
``wei2020.explicit-regularizer-matches-dropout-gap``): the default is the
Taylor constant ``p / (2 (1 - p))`` of the derivation (Wei et al. 2020, eqs. 4.2-4.4). It is exact
for squared loss with dropout before a linear readout (:func:`last_layer_regularizer`), and on
MLPs trained with dropout at the same ``p`` the measured Monte-Carlo gap is 0.87-1.17 times
R_approx with it (p = 0.02 ... 0.5), not about 2 times as ``p / (1 - p)`` would need: the
measurement supports the derivation's constant; it does not settle which constant the authors
ran. On over-confident nets trained without dropout the true gap is many times the second-order
term (higher-order terms, the paper's footnote 4) and no constant fits.
Pass ``coefficient=`` to choose another value.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import nn

from dropreg._checks import check_int, check_probability
from dropreg.analytic.losses import (
    check_loss,
    mean_loss,
    num_terms,
    output_hessian_quadratic,
    per_term_loss,
    sample_labels,
    sampled_pseudo_loss,
    softmax_cotangent,
)
from dropreg.analytic.readout import LinearReadout
from dropreg.sites import DropoutSite, DropoutState, dropout_state, frozen_statistics, group_sum

ESTIMATORS = ("sampled", "gauss_newton", "full", "identity", "loss_jacobian")
Coefficient = float | Mapping[str, float] | Callable[[DropoutSite], float] | None


def taylor_coefficient(p: float) -> float:
    """``p / (2 (1 - p))``: the second-order Taylor coefficient of Bernoulli dropout (eq. 4.2).

    Example:
        >>> round(taylor_coefficient(0.4), 12)
        0.333333333333
    """
    p = check_probability("p", p, allow_one=False)
    return p / (2.0 * (1.0 - p)) if p > 0 else 0.0


def check_second_order_site(site: DropoutSite, analysis: str = "the explicit regularizer") -> None:
    """Raise ``ValueError`` unless the second-order formulas hold for ``site``: a mask on an
    activation or on attention weights (Wei, Kakade, Ma 2020, Sec. 4 expand in the masked
    activations; a mask on weights is not covered), independent noise groups with one variance
    (Bernoulli or Gaussian law, or a declared site) and ``p < 1``.

    Example:
        >>> from dropreg.nn import DropBlock2d
        >>> from dropreg.sites import dropout_sites
        >>> site = dropout_sites(torch.nn.Sequential(DropBlock2d(0.1, 3)))[0]
        >>> try:
        ...     check_second_order_site(site)
        ... except ValueError as e:
        ...     print(str(e)[-54:])
        block_size=3); measure it with monte_carlo_dropout_gap
    """
    if site.kind == "weight":
        raise ValueError(f"{analysis} is derived for masks on activations (Wei, Kakade, Ma 2020, "
                         f"Sec. 4), not on weights; site {site.name!r} "
                         f"({type(site.module).__name__}) masks a weight; measure it with "
                         f"monte_carlo_dropout_gap")
    if not site.independent:
        raise ValueError(f"{analysis} needs dropout sites with independent noise groups (Bernoulli "
                         f"or Gaussian laws); site {site.name!r} ({type(site.module).__name__}) "
                         f"has the law {site.law!r}; measure it with monte_carlo_dropout_gap")
    if not 0.0 <= site.p < 1.0:
        raise ValueError(f"dropout site {site.name!r} has p={site.p}; {analysis} needs "
                         "0 <= p < 1")


def site_coefficient(site: DropoutSite, coefficient: Coefficient = None) -> float:
    """Coefficient ``c_s`` of a site: ``noise_variance / 2`` (= ``p / (2 (1 - p))``) by default.

    ``coefficient`` may be a float (used for every site, as the authors' ``--exp_reg*`` flags),
    a mapping from site name to float, or a callable ``site -> float``.

    Example:
        >>> from dropreg.analytic import dropout_sites
        >>> s = dropout_sites(torch.nn.Sequential(torch.nn.Dropout(0.4)))[0]
        >>> round(site_coefficient(s), 4), site_coefficient(s, 0.66)
        (0.3333, 0.66)
    """
    check_second_order_site(site)
    if coefficient is None:
        return site.noise_variance / 2.0
    if callable(coefficient):
        return float(coefficient(site))
    if isinstance(coefficient, Mapping):
        return float(coefficient.get(site.name, site.noise_variance / 2.0))
    c = float(coefficient)
    if not math.isfinite(c) or c < 0:
        raise ValueError(f"coefficient must be a finite number >= 0, got {coefficient!r}")
    return c


def _check_estimator(estimator: str) -> None:
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")


def sampled_regularizer(
    outputs: torch.Tensor, targets: torch.Tensor, recording: DropoutState, *,
    loss: str = "cross_entropy", kind: str = "hessian", coefficient: Coefficient = None,
    n_samples: int = 1, generator: torch.Generator | None = None, create_graph: bool = True,
) -> torch.Tensor:
    """The sampled-label estimator of R (``docs/papers/wei2020.md``) from an existing recorded
    forward pass.

    ``E[(sum_{e in G} g_e h_e)^2] = u_G^T J^T H J u_G`` for ``g = d P / d h`` and a pseudo-loss
    ``P`` from :func:`dropreg.analytic.losses.sampled_pseudo_loss`; cross-term pairs vanish in
    expectation because the sampled residuals are independent and mean zero. ``create_graph=True``
    makes the result differentiable w.r.t. the weights (double backprop, through ``g`` and ``h``).

    The value is unbiased. Its weight-gradient is unbiased for squared loss (constant ``H``); for
    cross entropy it differentiates through the softmax ``p`` inside the sampled-label loss but
    not through the sampling distribution of the label, exactly as the authors' code does, so it
    misses the score-function part of the derivative of ``H_out``, as in the authors' code.

    Example:
        With squared loss and one output after the last dropout site, every sampled residual
        gives the same value, so the estimate equals the exact Gauss-Newton regularizer:

        >>> net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(),
        ...                           torch.nn.Dropout(0.3), torch.nn.Linear(4, 1)).double()
        >>> x, y = torch.randn(6, 3, dtype=torch.float64), torch.randn(6, 1, dtype=torch.float64)
        >>> with dropout_state(net, "off", record=True) as rec:
        ...     out = net(x)
        >>> r = sampled_regularizer(out, y, rec, loss="mse",
        ...                         generator=torch.Generator().manual_seed(0))
        >>> bool(torch.isclose(r, explicit_regularizer(net, x, y, loss="mse",
        ...                                            estimator="gauss_newton")))
        True
    """
    return _sampled_regularizer(outputs, targets, recording, loss=loss, kind=kind,
                                coefficient=coefficient, n_samples=n_samples,
                                generator=generator, create_graph=create_graph)


def output_probabilities(outputs: torch.Tensor, loss: str) -> torch.Tensor | None:
    """``softmax`` of cross-entropy logits as ``(rows, C)`` (differentiable), ``None`` for mse:
    computed once per step and shared by the clean loss gradient, the sampled-label pseudo-loss
    and the implicit noise (:func:`dropreg.analytic.losses.softmax_cotangent`).

    Example:
        >>> output_probabilities(torch.zeros(2, 3, 4), "cross_entropy").shape
        torch.Size([6, 4])
        >>> output_probabilities(torch.zeros(2, 3), "mse") is None
        True
    """
    if check_loss(loss) != "cross_entropy":
        return None
    return torch.softmax(outputs.reshape(-1, outputs.shape[-1]), dim=-1)


def pseudo_loss_site_gradients(
    outputs: torch.Tensor, targets: torch.Tensor, hs: list[torch.Tensor], *, loss: str,
    kind: str = "hessian", generator: torch.Generator | None = None, create_graph: bool = True,
    probs: torch.Tensor | None = None, readout: LinearReadout | None = None,
) -> tuple[torch.Tensor, ...]:
    """``dP / dh`` at the recorded site outputs ``hs`` for one draw of the pseudo-loss ``P`` of
    :func:`dropreg.analytic.losses.sampled_pseudo_loss` (same random draws, same value).

    For cross entropy (``kind`` ``"hessian"`` or ``"loss_jacobian"``) the output cotangent
    ``dP/dF = softmax(F) - one_hot(label)`` is formed from ``probs``
    (:func:`output_probabilities`, computed here when ``None``) and pulled back with one backward
    (``create_graph`` as given); the double backward then differentiates the softmax once instead
    of the log-softmax backward of ``F.cross_entropy``. With ``readout``, the outputs' linear
    readout (:mod:`dropreg.analytic.readout`), the cotangent is pulled back through it as
    ``probs W - W[label]``. Other kinds and mse differentiate ``P``.

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(),
        ...                           torch.nn.Dropout(0.3), torch.nn.Linear(4, 2)).double()
        >>> x, y = torch.randn(5, 3, dtype=torch.float64), torch.tensor([0, 1, 0, 1, 1])
        >>> with dropout_state(net, "off", record=True) as rec:
        ...     out = net(x)
        >>> hs = rec.tensors()
        >>> g, = pseudo_loss_site_gradients(out, y, hs, loss="cross_entropy",
        ...                                 generator=torch.Generator().manual_seed(0))
        >>> P = sampled_pseudo_loss(out, y, "cross_entropy",
        ...                         generator=torch.Generator().manual_seed(0))
        >>> bool(torch.allclose(g, torch.autograd.grad(P, hs)[0]))
        True
    """
    check_loss(loss)
    if loss == "cross_entropy" and kind in ("hessian", "loss_jacobian"):
        num_terms(outputs, targets, loss)  # checks the shapes
        C = outputs.shape[-1]
        logits = outputs.reshape(-1, C)
        if probs is None:
            probs = torch.softmax(logits, dim=-1)
        labels = (sample_labels(logits, generator, probs=probs) if kind == "hessian"
                  else targets.reshape(-1))
        if readout is not None:
            return torch.autograd.grad(readout.inputs, hs, readout.pullback(probs, labels),
                                       create_graph=create_graph, retain_graph=True)
        r = softmax_cotangent(probs, labels).reshape(outputs.shape)
        return torch.autograd.grad(outputs, hs, r, create_graph=create_graph, retain_graph=True)
    P = sampled_pseudo_loss(outputs, targets, loss, kind=kind, generator=generator)
    return torch.autograd.grad(P, hs, create_graph=create_graph, retain_graph=True)


def _sampled_regularizer(
    outputs: torch.Tensor, targets: torch.Tensor, recording: DropoutState, *,
    loss: str = "cross_entropy", kind: str = "hessian", coefficient: Coefficient = None,
    n_samples: int = 1, generator: torch.Generator | None = None, create_graph: bool = True,
    probs: torch.Tensor | None = None, readout: LinearReadout | None = None,
) -> torch.Tensor:
    check_int("n_samples", n_samples)
    items = list(recording.items())
    if not items:
        raise ValueError("the recorded forward pass called no dropout site: the regularizer "
                         "needs sites that fire (record the forward pass with "
                         "dropout_state(model, 'off', record=True))")
    N = num_terms(outputs, targets, loss)
    if kind not in ("hessian", "identity", "loss_jacobian"):
        raise ValueError(f"kind must be 'hessian', 'identity' or 'loss_jacobian', got {kind!r}")
    hs = [h for _, h in items]
    coefs = [site_coefficient(site, coefficient) for site, _ in items]
    if probs is None:
        probs = output_probabilities(outputs, loss)
    total = outputs.new_zeros(())
    for _ in range(n_samples):
        gs = pseudo_loss_site_gradients(outputs, targets, hs, loss=loss, kind=kind,
                                        generator=generator, create_graph=create_graph,
                                        probs=probs, readout=readout)
        for (site, h), g, c in zip(items, gs, coefs):
            if c == 0.0:
                continue
            a = group_sum(g * h, site.shared_dims(h.dim()))
            total = total + c * (a * a).sum()
    return total / (N * n_samples)


def _single_calls(rec: DropoutState) -> list[tuple[DropoutSite, torch.Tensor]]:
    for s in rec.sites:
        if rec.values.get(s.name):
            check_second_order_site(s)
    out = []
    for s in rec.sites:
        vals = rec.values.get(s.name, [])
        if len(vals) > 1:
            raise ValueError(f"site {s.name!r} is called {len(vals)} times per forward pass; the "
                             "exact estimators need each site called once (use 'sampled')")
        if vals:
            out.append((s, vals[0]))
    return out


def _exact_regularizer(model, inputs, targets, loss, estimator, coefficient, reduction):
    """Exact R by ``torch.func``: derivatives w.r.t. the sites' fixed masks at ``z = 1``.

    With one mask entry per noise group, ``d out / d z_G = sum_{e in G} J_e h_e`` and
    ``d^2 L / dz_G^2 = u_G^T (D^2_h L) u_G``, which are the Gauss-Newton and full terms of R.
    """
    with frozen_statistics(model), dropout_state(model, "off", record=True) as st:
        with torch.no_grad():
            out0 = model(inputs)
        pairs = [(s, h.detach()) for s, h in _single_calls(st)]
        N = num_terms(out0, targets, loss)
        if not pairs:
            raise ValueError(f"no dropout site of the model was called in a forward pass (sites: "
                             f"{[s.name for s in st.sites]}): there is no regularizer to compute")
        coefs = [site_coefficient(s, coefficient) for s, _ in pairs]
        ones = tuple(torch.ones(s.mask_shape(h.shape), dtype=h.dtype, device=h.device)
                     for s, h in pairs)
        st.record, st.state = False, "fixed"

        def outputs_of(*zs):
            st.masks = {s.name: z for (s, _), z in zip(pairs, zs)}
            return model(inputs)

        per_term = out0.new_zeros(N)
        total = out0.new_zeros(())
        if estimator == "gauss_newton":
            jac = torch.func.jacrev(outputs_of, argnums=tuple(range(len(pairs))))(*ones)
            for c, z, J in zip(coefs, ones, jac):
                A = J.reshape(*out0.shape, z.numel()).movedim(-1, 0)  # (G, *out)
                q = output_hessian_quadratic(out0, A, loss)  # (G, N)
                per_term = per_term + c * q.sum(0) / N
        else:  # full second-order diagonal (of the noise groups)
            for i, (c, z) in enumerate(zip(coefs, ones)):

                def loss_of(zi, i=i):
                    zs = list(ones)
                    zs[i] = zi
                    return mean_loss(outputs_of(*zs), targets, loss)

                Hz = torch.func.hessian(loss_of)(z).reshape(z.numel(), z.numel())
                total = total + c * Hz.diagonal().sum()
    if estimator == "gauss_newton":
        return (per_term if reduction == "none" else per_term.sum()).detach()
    if reduction == "none":
        raise ValueError("reduction='none' is available for the 'gauss_newton' estimator only")
    return total.detach()


def explicit_regularizer(
    model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, *,
    loss: str = "cross_entropy", estimator: str = "sampled", coefficient: Coefficient = None,
    n_samples: int = 1, generator: torch.Generator | None = None, create_graph: bool = True,
    reduction: str = "mean",
) -> torch.Tensor:
    """Explicit dropout regularizer ``R(F)`` of the mean loss on a batch (Wei et al. 2020, eqs.
    4.2-4.4).

    The model is run without dropout (every site passes its activation through).

    Args:
        model: any module whose dropout sites (:func:`dropout_sites`) define the noise.
        inputs: batch fed to ``model``.
        targets: class indices (``"cross_entropy"``) or regression targets (``"mse"``).
        loss: ``"cross_entropy"`` or ``"mse"`` (see :mod:`dropreg.analytic.losses`).
        estimator: ``"sampled"`` (unbiased, one extra backward, differentiable; trains),
            ``"gauss_newton"`` (exact R_approx via ``torch.func.jacrev``, small models),
            ``"full"`` (exact second-order term with the full hidden-layer Hessian, checks),
            ``"identity"`` or ``"loss_jacobian"`` (the Section 5.2 ablations, sampled).
        coefficient: ``None`` for ``p / (2 (1 - p))`` per site, or a float / mapping / callable
            (see :func:`site_coefficient`).
        n_samples: label draws averaged by the sampled estimators (one forward pass is reused).
        generator: random source of the sampled labels.
        create_graph: keep the graph so that the result can be differentiated (sampled
            estimators; the exact ones return values without a graph).
        reduction: ``"mean"`` (the regularizer of the mean loss) or ``"none"`` (one value per loss
            term, ``"gauss_newton"`` only; their sum is the ``"mean"`` value).

    Returns:
        A scalar tensor (or ``(N,)`` for ``reduction="none"``).

    Example:
        >>> torch.manual_seed(0)
        <torch._C.Generator object at ...>
        >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(),
        ...                           torch.nn.Dropout(0.2), torch.nn.Linear(8, 3)).double()
        >>> x, y = torch.randn(5, 4, dtype=torch.float64), torch.tensor([0, 1, 2, 0, 1])
        >>> gn = explicit_regularizer(net, x, y, estimator="gauss_newton")
        >>> full = explicit_regularizer(net, x, y, estimator="full")
        >>> bool(torch.isclose(gn, full))  # dropout right before a linear readout
        True
    """
    check_loss(loss)
    _check_estimator(estimator)
    if reduction not in ("mean", "none"):
        raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")
    if estimator in ("gauss_newton", "full"):
        return _exact_regularizer(model, inputs, targets, loss, estimator, coefficient, reduction)
    if reduction == "none":
        raise ValueError("reduction='none' is available for the 'gauss_newton' estimator only")
    kind = {"sampled": "hessian", "identity": "identity", "loss_jacobian": "loss_jacobian"}
    with frozen_statistics(model), dropout_state(model, "off", record=True) as rec:
        outputs = model(inputs)
    return sampled_regularizer(outputs, targets, rec, loss=loss, kind=kind[estimator],
                               coefficient=coefficient, n_samples=n_samples,
                               generator=generator, create_graph=create_graph)


def last_layer_regularizer(hidden: torch.Tensor, weight: torch.Tensor, p: float,
                           reduction: str = "mean") -> torch.Tensor:
    """Exact R_1 of squared loss with dropout on the input of a linear readout (eq. 4.2 is exact
    there).

    For ``F = W (h * z / (1 - p)) + b`` and ``l = (1/D) ||F - y||^2`` (``F.mse_loss``), the expected
    loss is exactly the clean loss plus ``(p / (1 - p)) (1/D) sum_j ||W[:, j]||^2 h_j^2`` (the
    expansion stops at second order), so the Taylor constant ``p / (2 (1 - p))`` times ``H = 2I/D``
    is exact here.

    Args:
        hidden: ``(N, r)`` activations entering the readout.
        weight: ``(D, r)`` readout weight.
        p: drop probability in ``[0, 1)``.
        reduction: ``"mean"`` over rows or ``"none"``.

    Example:
        >>> h, W = torch.ones(2, 3, dtype=torch.float64), torch.ones(4, 3, dtype=torch.float64)
        >>> float(last_layer_regularizer(h, W, 0.5))  # (1) * (1/4) * 3 * 4
        3.0
    """
    p = check_probability("p", p, allow_one=False)
    if hidden.dim() != 2 or weight.dim() != 2 or hidden.shape[1] != weight.shape[1]:
        raise ValueError(f"hidden (N, r) and weight (D, r) must agree in r, got "
                         f"{tuple(hidden.shape)} and {tuple(weight.shape)}")
    per_row = (p / (1 - p)) / weight.shape[0] * (hidden**2 @ (weight**2).sum(0))
    if reduction == "none":
        return per_row
    if reduction != "mean":
        raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")
    return per_row.mean()


@dataclass(frozen=True)
class DropoutGap:
    """Monte-Carlo estimate of the expected dropout loss minus the clean loss.

    Attributes:
        value: the gap of the mean loss, ``E_eta L(F(x, eta)) - L(F(x))``.
        stderr: its standard error.
        per_term: the gap per loss term, shape ``(N,)``.
        per_term_stderr: their standard errors.
        clean_loss: the clean mean loss.
        n_masks: masks drawn per term.

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Dropout(0.5), torch.nn.Linear(2, 3))
        >>> gap = monte_carlo_dropout_gap(net, torch.randn(4, 2), torch.tensor([0, 1, 2, 0]),
        ...                               n_masks=50, generator=torch.Generator().manual_seed(0))
        >>> gap.per_term.shape, gap.n_masks, gap.stderr > 0
        (torch.Size([4]), 50, True)
    """

    value: float
    stderr: float
    per_term: torch.Tensor
    per_term_stderr: torch.Tensor
    clean_loss: float
    n_masks: int


@torch.no_grad()
def monte_carlo_dropout_gap(
    model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, *,
    loss: str = "cross_entropy", n_masks: int = 1000, generator: torch.Generator | None = None,
    repeats: int = 1,
) -> DropoutGap:
    """True explicit regularizer ``R_drop = E_eta l(F(x, eta)) - l(F(x))`` by Monte Carlo (Section
    2).

    Every forward pass draws independent masks for every term, so per-term estimates are
    independent and the standard error of the mean gap is ``sqrt(sum se_n^2) / N``.

    Args:
        model, inputs, targets, loss: as in :func:`explicit_regularizer`.
        n_masks: mask draws per loss term (at least 2).
        generator: random source of the masks.
        repeats: stack this many copies of the batch (along dim 0) in each forward pass, so one
            pass draws ``repeats`` masks per term (faster for small models; rows must be
            independent examples).

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Dropout(0.5), torch.nn.Linear(2, 1, bias=False))
        >>> with torch.no_grad():
        ...     _ = net[1].weight.fill_(1.0)
        >>> x, y = torch.ones(3, 2), torch.full((3, 1), 2.0)
        >>> gap = monte_carlo_dropout_gap(net, x, y, loss="mse", n_masks=4000,
        ...                               generator=torch.Generator().manual_seed(0))
        >>> abs(gap.value - 2.0) < 5 * gap.stderr  # exact: (p/(1-p)) * (1 + 1)
        True
    """
    check_loss(loss)
    check_int("n_masks", n_masks, minimum=2)
    if repeats < 1 or n_masks % repeats:
        raise ValueError(f"repeats must be >= 1 and divide n_masks={n_masks}, got {repeats}")
    with frozen_statistics(model), dropout_state(model, "off") as st:
        clean = per_term_loss(model(inputs), targets, loss).double()
        if st.calls == 0:
            raise ValueError(f"no dropout site of the model was called in a forward pass (sites: "
                             f"{[s.name for s in st.sites]}): there is no dropout gap to measure")
        s1 = torch.zeros_like(clean)
        s2 = torch.zeros_like(clean)
        big_x = inputs.repeat(repeats, *([1] * (inputs.dim() - 1))) if repeats > 1 else inputs
        big_y = targets.repeat(repeats, *([1] * (targets.dim() - 1))) if repeats > 1 else targets
        st.state, st.generator = "fresh", generator
        for _ in range(n_masks // repeats):
            d = per_term_loss(model(big_x), big_y, loss).double().reshape(repeats, -1) - clean
            s1 += d.sum(0)
            s2 += (d * d).sum(0)
    mean = s1 / n_masks
    var = (s2 / n_masks - mean * mean).clamp_min(0.0) * n_masks / (n_masks - 1)
    se = (var / n_masks).sqrt()
    N = clean.numel()
    return DropoutGap(float(mean.mean()), float(se.pow(2).sum().sqrt() / N), mean, se,
                      float(clean.mean()), n_masks)
