"""Implicit regularization of dropout: the update noise and its surrogates (Wei et al. 2020,
Sections 3 and 4.2).

* ``xi_drop = grad_W l(F(x, eta)) - grad_W l_drop(F, x)``: dropout's own gradient noise.
* ``xi~_drop = (grad_W l(F(x, eta1)) - grad_W l(F(x, eta2))) / sqrt 2`` (Section 3.1): same
  covariance.
* ``xi_approx = grad_W [ J_loss(x) . (eta * h(x)) ]`` (Section 4.2, eqs. 4.5-4.6): the
  weight-gradient of the first-order Taylor term, differentiated through both ``J_loss = dL/dh`` and
  ``h``, with ``eta = sqrt(var) * Rademacher`` (footnote 6) or the skewed dropout noise itself.

Each is available as a *scalar surrogate* whose weight-gradient is the noise (to add to a loss
before ``backward``), and as a tuple of gradient tensors. The second-order noises need sites whose
noise groups are independent (``DropoutSite.independent``); ``noise="dropout"`` needs Bernoulli
sites; the dropout gradients themselves work for every site (see :mod:`dropreg.sites`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import torch
from torch import nn

from dropreg._random import rademacher
from dropreg.analytic.explicit import check_second_order_site
from dropreg.analytic.losses import check_loss, mean_loss, num_terms, softmax_cotangent
from dropreg.analytic.readout import LinearReadout
from dropreg.masks import Bernoulli
from dropreg.sites import (
    DropoutSite,
    DropoutState,
    bernoulli_mask,
    dropout_state,
    frozen_statistics,
    group_sum,
)

NOISES = ("rademacher", "dropout")
Variance = float | Mapping[str, float] | Callable[[DropoutSite], float] | None


def site_variance(site: DropoutSite, variance: Variance = None) -> float:
    """Noise variance of a site: ``p / (1 - p)`` by default (the authors' ``--imp_reg*``).

    ``variance`` may be a float (every site), a mapping from site name to float, or a callable
    ``site -> float``. Sites with correlated masks or ``p = 1`` raise ``ValueError``.

    Example:
        >>> from dropreg.analytic import dropout_sites
        >>> s = dropout_sites(torch.nn.Sequential(torch.nn.Dropout(0.2)))[0]
        >>> site_variance(s), site_variance(s, 0.5), site_variance(s, lambda site: 2 * site.p)
        (0.25, 0.5, 0.4)
    """
    check_second_order_site(site, "xi_approx")
    if variance is None:
        return site.noise_variance
    if callable(variance):
        return float(variance(site))
    if isinstance(variance, Mapping):
        return float(variance.get(site.name, site.noise_variance))
    v = float(variance)
    if not math.isfinite(v) or v < 0:
        raise ValueError(f"variance must be a finite number >= 0, got {variance!r}")
    return v


def _noise_items(recording: DropoutState, noise: str) -> list:
    """The recorded ``(site, h)`` pairs of a noise term, after checking ``noise`` and that some
    site fired."""
    if noise not in NOISES:
        raise ValueError(f"noise must be one of {NOISES}, got {noise!r}")
    items = list(recording.items())
    if not items:
        raise ValueError("the recorded forward pass called no dropout site: the noise term needs "
                         "sites that fire (record it with dropout_state(model, 'off', "
                         "record=True))")
    return items


def implicit_noise_term(
    data_loss: torch.Tensor, recording: DropoutState, *, noise: str = "rademacher",
    variance: Variance = None, scale: float = 1.0, generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Scalar whose weight-gradient is ``scale * xi_approx`` (eq. 4.6; authors' ``taylor_fo``).

    ``sum_s sum_G eta_G * sum_{e in G} (dL/dh_e) h_e`` with fresh noise ``eta`` per noise group:
    ``sqrt(variance) * Rademacher`` (``noise="rademacher"``, footnote 6) or the dropout noise
    ``z / (1 - p) - 1`` (``noise="dropout"``, Bernoulli sites only). ``dL/dh`` is taken with
    ``create_graph=True`` and ``h`` is not detached, so the gradient flows through both, as in the
    paper.

    Args:
        data_loss: the clean mean loss of a forward pass recorded by
            ``dropout_state(model, "off", record=True)``.
        recording: that recording.
        noise: ``"rademacher"`` or ``"dropout"``.
        variance: per-coordinate noise variance (see :func:`site_variance`).
        scale: multiplies the noise, e.g. ``sqrt(1 - 1/k)`` inside Dropout_k (Section 5.1).
        generator: random source of the noise.

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(),
        ...                           torch.nn.Dropout(0.3), torch.nn.Linear(4, 2)).double()
        >>> x, y = torch.randn(5, 3, dtype=torch.float64), torch.tensor([0, 1, 0, 1, 1])
        >>> with dropout_state(net, "off", record=True) as rec:
        ...     L = mean_loss(net(x), y, "cross_entropy")
        >>> term = implicit_noise_term(L, rec, generator=torch.Generator().manual_seed(0))
        >>> term.shape, term.requires_grad
        (torch.Size([]), True)
        >>> float(implicit_noise_term(L, rec, variance=0.0))  # zero variance: no noise
        0.0
    """
    items = _noise_items(recording, noise)
    gs = torch.autograd.grad(data_loss, [h for _, h in items], create_graph=True)
    return scale * _noise_sum(items, gs, noise, variance, generator, data_loss.new_zeros(()))


def _noise_sum(items: list[tuple[DropoutSite, torch.Tensor]], gs: Sequence[torch.Tensor],
               noise: str, variance: Variance, generator: torch.Generator | None,
               total: torch.Tensor) -> torch.Tensor:
    """``total + sum_s sum_G eta_G sum_{e in G} g_e h_e`` with fresh noise per group, drawn site
    by site in recording order."""
    for (site, h), g in zip(items, gs):
        sd = site.shared_dims(h.dim())
        a = group_sum(g * h, sd)
        if noise == "rademacher":
            v = site_variance(site, variance)
            if v == 0.0:
                continue
            eta = math.sqrt(v) * rademacher(a.shape, generator=generator, dtype=a.dtype,
                                            device=a.device)
        else:
            if variance is not None:
                raise ValueError("variance applies to noise='rademacher' only; dropout noise "
                                 "has the site's own variance")
            check_second_order_site(site, "noise='dropout'")
            if site.law is not None and not isinstance(site.law, Bernoulli):
                raise ValueError(f"noise='dropout' draws Bernoulli masks, but site {site.name!r} "
                                 f"has the law {type(site.law).__name__}; use noise='rademacher'")
            eta = bernoulli_mask(a.shape, site.p, generator=generator, dtype=a.dtype,
                                 device=a.device) - 1.0
        total = total + (eta * a).sum()
    return total


def implicit_noise_from_outputs(
    outputs: torch.Tensor, targets: torch.Tensor, data_loss: torch.Tensor,
    recording: DropoutState, *, loss: str = "cross_entropy", noise: str = "rademacher",
    variance: Variance = None, scale: float = 1.0, generator: torch.Generator | None = None,
    probs: torch.Tensor | None = None, cotangent: torch.Tensor | None = None,
    readout: LinearReadout | None = None,
) -> torch.Tensor:
    """:func:`implicit_noise_term` of ``data_loss = mean_loss(outputs, targets, loss)``, the same
    value and weight-gradient from the same draws, with ``dL/dh`` for cross entropy pulled back
    from the output cotangent ``(softmax(F) - one_hot(y)) / N`` formed from ``probs``
    (:func:`dropreg.analytic.explicit.output_probabilities`; computed when ``None``), so that the
    double backward differentiates the (shared) softmax once instead of a log-softmax backward.
    ``cotangent``: that output cotangent when the caller has formed it (differentiable through
    ``probs``, shaped like ``outputs``). ``readout``: the outputs' linear readout
    (:mod:`dropreg.analytic.readout`); the residual is then pulled back through it as
    ``(probs W - W[y]) / N`` (``cotangent`` is not used).

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(),
        ...                           torch.nn.Dropout(0.3), torch.nn.Linear(4, 2)).double()
        >>> x, y = torch.randn(5, 3, dtype=torch.float64), torch.tensor([0, 1, 0, 1, 1])
        >>> with dropout_state(net, "off", record=True) as rec:
        ...     out = net(x)
        >>> L = mean_loss(out, y, "cross_entropy")
        >>> a = implicit_noise_from_outputs(out, y, L, rec,
        ...                                 generator=torch.Generator().manual_seed(0))
        >>> b = implicit_noise_term(L, rec, generator=torch.Generator().manual_seed(0))
        >>> bool(torch.isclose(a, b))
        True
    """
    check_loss(loss)
    if loss != "cross_entropy":
        return implicit_noise_term(data_loss, recording, noise=noise, variance=variance,
                                   scale=scale, generator=generator)
    items = _noise_items(recording, noise)
    N = num_terms(outputs, targets, loss)
    y = targets.reshape(-1)
    if probs is None and (readout is not None or cotangent is None):
        probs = torch.softmax(outputs.reshape(-1, outputs.shape[-1]), dim=-1)
    if readout is not None:  # (probs W - W[y]) / N at the readout's inputs
        root, r = readout.inputs, readout.pullback(probs, y, 1.0 / N)
    else:
        root = outputs
        r = (cotangent if cotangent is not None
             else softmax_cotangent(probs, y, 1.0 / N).reshape(outputs.shape))
    gs = torch.autograd.grad(root, [h for _, h in items], r, create_graph=True, retain_graph=True)
    return scale * _noise_sum(items, gs, noise, variance, generator, outputs.new_zeros(()))


def _params(model: nn.Module, params: Sequence[torch.Tensor] | None) -> list[torch.Tensor]:
    return [p for p in model.parameters() if p.requires_grad] if params is None else list(params)


def xi_approx(
    model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, *,
    loss: str = "cross_entropy", noise: str = "rademacher", variance: Variance = None,
    generator: torch.Generator | None = None, params: Sequence[torch.Tensor] | None = None,
) -> tuple[torch.Tensor, ...]:
    """One draw of the analytic update noise ``xi_approx`` (eq. 4.6), one tensor per parameter.

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(),
        ...                           torch.nn.Dropout(0.3), torch.nn.Linear(4, 2))
        >>> xi = xi_approx(net, torch.randn(5, 3), torch.tensor([0, 1, 0, 1, 1]),
        ...                generator=torch.Generator().manual_seed(0))
        >>> [tuple(t.shape) for t in xi]
        [(4, 3), (4,), (2, 4), (2,)]
    """
    check_loss(loss)
    ps = _params(model, params)
    with frozen_statistics(model), dropout_state(model, "off", record=True) as rec:
        L = mean_loss(model(inputs), targets, loss)
    term = implicit_noise_term(L, rec, noise=noise, variance=variance, generator=generator)
    return torch.autograd.grad(term, ps, allow_unused=True, materialize_grads=True)


def dropout_gradient(
    model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, *,
    loss: str = "cross_entropy", generator: torch.Generator | None = None,
    params: Sequence[torch.Tensor] | None = None,
) -> tuple[torch.Tensor, ...]:
    """``grad_W L(F(x, eta))`` for one fresh draw of the dropout masks of every site.

    One backward pass with every site in the ``"fresh"`` state of
    :func:`dropreg.sites.dropout_state`
    (each call of a site draws a new mask from ``generator``, one per example, by
    :func:`dropreg.sites.sample_mask`). For many draws of the same batch,
    :func:`dropreg.curvature.dropout_gradients` over :func:`dropreg.sites.sample_masks` computes
    them together (vectorised), from the same mask law.

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Dropout(0.5), torch.nn.Linear(3, 2))
        >>> x, y = torch.randn(4, 3), torch.tensor([0, 1, 1, 0])
        >>> g1 = dropout_gradient(net, x, y, generator=torch.Generator().manual_seed(0))
        >>> g2 = dropout_gradient(net, x, y, generator=torch.Generator().manual_seed(0))
        >>> [tuple(t.shape) for t in g1], all(torch.equal(a, b) for a, b in zip(g1, g2))
        ([(2, 3), (2,)], True)
    """
    check_loss(loss)
    ps = _params(model, params)
    owned = {id(p) for p in model.parameters()}
    if any(id(p) not in owned for p in ps):
        raise ValueError("params must be parameters of model")
    with frozen_statistics(model), dropout_state(model, "fresh", generator=generator) as st:
        value = mean_loss(model(inputs), targets, loss)
    if st.calls == 0:
        raise ValueError(f"no dropout site of the model was called in a forward pass (sites: "
                         f"{[s.name for s in st.sites]}): this is not a dropout gradient")
    return tuple(torch.autograd.grad(value, ps, allow_unused=True, materialize_grads=True))


def xi_drop_tilde(
    model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, *,
    loss: str = "cross_entropy", generator: torch.Generator | None = None,
    params: Sequence[torch.Tensor] | None = None,
) -> tuple[torch.Tensor, ...]:
    """``(grad L(F(x, eta1)) - grad L(F(x, eta2))) / sqrt 2``: covariance of ``xi_drop`` (Section
    3.1).

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Dropout(0.5), torch.nn.Linear(3, 2))
        >>> xi = xi_drop_tilde(net, torch.randn(4, 3), torch.tensor([0, 1, 1, 0]),
        ...                    generator=torch.Generator().manual_seed(0))
        >>> [tuple(t.shape) for t in xi]
        [(2, 3), (2,)]
    """
    g1 = dropout_gradient(model, inputs, targets, loss=loss, generator=generator, params=params)
    g2 = dropout_gradient(model, inputs, targets, loss=loss, generator=generator, params=params)
    return tuple((a - b) / math.sqrt(2.0) for a, b in zip(g1, g2))
