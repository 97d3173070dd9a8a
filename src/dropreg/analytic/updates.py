"""How one minibatch gradient is formed under an update rule of Wei, Kakade, Ma 2020
(``docs/papers/wei2020.md``).

An :class:`UpdateRule` says how one minibatch gradient is formed; :func:`accumulate_gradient` fills
``param.grad`` (the optimizer step, clipping and weight decay stay the caller's). The named rules
of the paper (Dropout_k, noise top-ups, explicit + implicit) are built by
:mod:`dropreg.analytic.rules`.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from dropreg.analytic.explicit import Coefficient, _sampled_regularizer, output_probabilities
from dropreg.analytic.implicit import Variance, implicit_noise_from_outputs
from dropreg.analytic.losses import (
    check_loss,
    cross_entropy_value,
    mean_loss,
    num_terms,
    softmax_cotangent,
)
from dropreg.analytic.readout import LinearReadout, readout_of, record_readout
from dropreg.analytic.recurrent import twice_differentiable_lstm
from dropreg.sites import dropout_state

TOP_UPS = ("none", "xi_tilde", "xi_approx")
EXPLICIT = ("none", "hessian", "identity", "loss_jacobian")


@dataclass(frozen=True)
class UpdateRule:
    """How one minibatch gradient is formed.

    Attributes:
        name: label for tables and plots.
        k: dropout forward passes averaged (0: no dropout pass, the clean loss is used).
        top_up: ``"none"``, ``"xi_tilde"`` or ``"xi_approx"`` noise added with scale
            ``sqrt(1 - 1/k)`` (only with ``k >= 1``).
        explicit: ``"none"``, ``"hessian"`` (R_approx), ``"identity"`` or ``"loss_jacobian"``
            (only with ``k == 0``).
        implicit: add ``xi_approx`` at full scale (only with ``k == 0``).
        coefficient: explicit coefficient (``None``: ``p / (2 (1 - p))`` per site).
        variance: xi_approx variance (``None``: ``p / (1 - p)`` per site).
        n_label_samples: sampled labels for the explicit estimator.

    Example:
        >>> rule = UpdateRule("Dropout_2", k=2)
        >>> rule.k, rule.top_up, rule.explicit, rule.implicit
        (2, 'none', 'none', False)
        >>> UpdateRule("bad", k=2, explicit="hessian")
        Traceback (most recent call last):
        ...
        ValueError: explicit / implicit terms replace dropout: use k=0 with them
    """

    name: str
    k: int = 1
    top_up: str = "none"
    explicit: str = "none"
    implicit: bool = False
    coefficient: Coefficient = None
    variance: Variance = None
    n_label_samples: int = 1

    def __post_init__(self) -> None:
        if self.k < 0:
            raise ValueError(f"k must be >= 0, got {self.k}")
        if self.top_up not in TOP_UPS:
            raise ValueError(f"top_up must be one of {TOP_UPS}, got {self.top_up!r}")
        if self.explicit not in EXPLICIT:
            raise ValueError(f"explicit must be one of {EXPLICIT}, got {self.explicit!r}")
        if self.k == 0 and self.top_up != "none":
            raise ValueError("top_up needs dropout passes (k >= 1)")
        if self.k > 0 and (self.explicit != "none" or self.implicit):
            raise ValueError("explicit / implicit terms replace dropout: use k=0 with them")


@contextlib.contextmanager
def native_rnn_kernels(model: nn.Module) -> Iterator[None]:
    """Run ``model``'s recurrent layers on torch's native kernels instead of oneDNN's, when it has
    any (``nn.RNN``, ``nn.LSTM``, ``nn.GRU``), for the forward passes whose gradient is
    differentiated again (``create_graph=True``).

    On the CPU, ``nn.LSTM`` runs oneDNN's fused layer; its backward is differentiable only as an
    unrolled graph of the time steps, and differentiating it again (the double backward of
    R_approx) cost 98 ms against 72 ms with the native kernels in one measurement (word LSTM of
    ``benchmarks/bench_analytic.py``), while the plain dropout step is faster on oneDNN (17 ms
    against 28 ms). Same numbers up to float rounding; the switch (``torch.backends.mkldnn``) is
    process-wide for the duration of the forward, so it also covers convolutions run meanwhile.
    :func:`accumulate_gradient` uses it only for the recurrent layers that
    :class:`~dropreg.analytic.recurrent.LSTMLayer` does not cover (:func:`second_order_rnns`).

    Example:
        >>> net = torch.nn.LSTM(3, 4)
        >>> with native_rnn_kernels(net):
        ...     torch.backends.mkldnn.is_available() and torch._C._get_mkldnn_enabled()
        False
    """
    if not any(isinstance(m, nn.RNNBase) for m in model.modules()):
        yield
        return
    was = torch.backends.mkldnn.set_flags(False, None, None, None)[0]
    try:
        yield
    finally:
        torch.backends.mkldnn.set_flags(was, None, None, None)


@contextlib.contextmanager
def second_order_rnns(model: nn.Module) -> Iterator[None]:
    """The recurrent layers of ``model`` in the form whose backward is cheapest to differentiate
    again: every ``nn.LSTM`` that :func:`dropreg.analytic.recurrent.supports` by
    :class:`~dropreg.analytic.recurrent.LSTMLayer` (fused forward, hand-derived second
    derivative), any other ``nn.RNNBase`` on torch's native kernels (:func:`native_rnn_kernels`).

    Example:
        >>> net = torch.nn.LSTM(3, 4)
        >>> with second_order_rnns(net):
        ...     out, _ = net(torch.randn(5, 2, 3))
        >>> type(out.grad_fn).__name__
        'LSTMLayerBackward'
    """
    rnns = [m for m in model.modules() if isinstance(m, nn.RNNBase)]
    if not rnns:  # nothing to switch (an MLP, a CNN)
        yield
        return
    with twice_differentiable_lstm(model) as replaced:
        if all(any(m is r for r in replaced) for m in rnns):
            yield
            return
        with native_rnn_kernels(model):
            yield


def _wide_readout(calls: list, outputs: torch.Tensor) -> LinearReadout | None:
    """The outputs' linear readout where its pull-back is the cheaper one, else ``None``."""
    readout = readout_of(calls, outputs)
    return readout if readout is not None and readout.pays else None


def accumulate_gradient(
    model: nn.Module, rule: UpdateRule, inputs: torch.Tensor, targets: torch.Tensor, *,
    loss: str = "cross_entropy", generator: torch.Generator | None = None,
) -> float:
    """Add this rule's minibatch gradient to ``param.grad``; return the training loss it saw.

    The returned loss is the mean dropout loss (``k >= 1``) or the clean loss (``k == 0``).

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(),
        ...                           torch.nn.Dropout(0.3), torch.nn.Linear(4, 2))
        >>> x, y = torch.randn(6, 3), torch.tensor([0, 1, 0, 1, 1, 0])
        >>> from dropreg.analytic import rules
        >>> _ = accumulate_gradient(net, rules.explicit_implicit(), x, y,
        ...                         generator=torch.Generator().manual_seed(0))
        >>> net[0].weight.grad.shape
        torch.Size([4, 3])
    """
    check_loss(loss)
    if rule.k >= 1:
        seen = 0.0
        with dropout_state(model, "fresh", generator=generator):
            for _ in range(rule.k):
                L = mean_loss(model(inputs), targets, loss)
                (L / rule.k).backward()
                seen += float(L.detach()) / rule.k
            if rule.top_up == "xi_tilde" and rule.k > 1:
                L1 = mean_loss(model(inputs), targets, loss)
                L2 = mean_loss(model(inputs), targets, loss)
                ((L1 - L2) * math.sqrt((1 - 1 / rule.k) / 2)).backward()
        if rule.top_up == "xi_approx" and rule.k > 1:
            with dropout_state(model, "off", record=True) as rec, second_order_rnns(model), \
                    record_readout(model) as calls:
                outputs = model(inputs)
            L = mean_loss(outputs, targets, loss)
            implicit_noise_from_outputs(outputs, targets, L, rec, loss=loss,
                                        variance=rule.variance, scale=math.sqrt(1 - 1 / rule.k),
                                        generator=generator,
                                        readout=_wide_readout(calls, outputs)).backward()
        return seen
    with dropout_state(model, "off", record=True) as rec, second_order_rnns(model), \
            record_readout(model) as calls:
        outputs = model(inputs)
    # a wide linear readout pulls every residual back by one shared product (analytic.readout)
    readout = _wide_readout(calls, outputs) if loss == "cross_entropy" else None
    # one softmax for the loss gradient, the sampled labels' cotangent and the implicit noise
    probs = (output_probabilities(outputs, loss) if rule.explicit != "none" or rule.implicit
             else None)
    clean = None  # the clean loss's output cotangent (softmax(F) - one_hot(y)) / N
    if probs is not None:
        N = num_terms(outputs, targets, loss)
        # differentiable only where xi_approx pulls it back itself (no readout)
        clean = softmax_cotangent(probs if readout is None else probs.detach(),
                                  targets.reshape(-1), 1.0 / N).reshape(outputs.shape)
        L = cross_entropy_value(outputs, targets, probs)
        roots, cotangents = [outputs], [clean.detach()]  # the clean loss's gradient
    else:
        L = mean_loss(outputs, targets, loss)
        roots, cotangents = [L], [None]
    extra = []
    if rule.explicit != "none":
        extra.append(_sampled_regularizer(outputs, targets, rec, loss=loss, kind=rule.explicit,
                                          coefficient=rule.coefficient,
                                          n_samples=rule.n_label_samples, generator=generator,
                                          probs=probs, readout=readout))
    if rule.implicit:
        extra.append(implicit_noise_from_outputs(outputs, targets, L, rec, loss=loss,
                                                 variance=rule.variance, generator=generator,
                                                 probs=probs, cotangent=clean,
                                                 readout=readout))
    if extra:
        roots.append(sum(extra[1:], extra[0]))
        cotangents.append(None)
    torch.autograd.backward(roots, cotangents)
    return float(L.detach())
