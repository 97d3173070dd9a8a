"""The pull-back of cross-entropy residuals through a linear readout, by one shared product.

A step of Algorithm 2 (Wei, Kakade, Ma 2020) pulls two output cotangents back to the dropout
sites: the sampled-label residual ``softmax(F) - one_hot(y_hat)`` of R_approx (eq. 4.3) and the
clean residual ``(softmax(F) - one_hot(y)) / N`` of xi_approx (eq. 4.6). When the model's outputs
are an ``nn.Linear`` of a tensor ``u`` (a classifier's or language model's readout,
``F = u W^T + b``), the pull-back of ``probs - one_hot(labels)`` to ``u`` is::

    (probs - one_hot(labels)) W  =  probs W  -  W[labels]

so one product ``probs W`` serves every residual of the step, each one adding a gather of rows of
``W``; the double backward then differentiates that one product (two products for all
residuals, instead of two per residual, and no output-sized residual tensors). The rest of the
pull-back, from ``u`` to the sites, is autograd's.

:func:`record_readout` finds the readout during a forward pass (the ``nn.Linear`` whose output is
the model's output tensor); the step uses it where it :attr:`~LinearReadout.pays` (outputs wider
than the readout's inputs); otherwise the residuals are pulled back through the whole graph as
before.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

__all__ = ["LinearReadout", "readout_of", "record_readout"]


class LinearReadout:
    """``outputs = F.linear(inputs, weight, bias)``: the last ``nn.Linear`` of a forward pass
    produced the model's outputs. :meth:`pullback` pulls ``probs - one_hot(labels)`` back to
    ``inputs``.

    Example:
        >>> lin = nn.Linear(4, 3).double()
        >>> u = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
        >>> F = lin(u)
        >>> p = torch.softmax(F, -1)
        >>> y = torch.tensor([0, 2, 1, 1, 0])
        >>> r = p - torch.nn.functional.one_hot(y, 3)
        >>> want, = torch.autograd.grad(F, u, r, retain_graph=True)
        >>> g = LinearReadout(u, lin.weight).pullback(p, y)
        >>> bool(torch.allclose(g, want))
        True
    """

    def __init__(self, inputs: torch.Tensor, weight: torch.Tensor) -> None:
        self.inputs = inputs
        self.weight = weight
        self._probs: torch.Tensor | None = None
        self._pw: torch.Tensor | None = None

    @property
    def pays(self) -> bool:
        """Whether the readout's pull-back is the cheaper one: when the outputs are wider than the
        readout's inputs (``C > d``, a language model's decoder). Its tensors are ``rows x d``
        where the generic pull-back's residuals are ``rows x C``; for a narrow head (``C <= d``,
        a 10-class classifier) the extra gather and its backward cost more than they save (8%
        slower on the MLP 40-256-256-10, 10% faster on the word LSTM with C = 500, d = 64, in
        interleaved A/B runs of the step). The rule is ours.

        Example:
            >>> LinearReadout(torch.zeros(2, 64), torch.zeros(500, 64)).pays
            True
            >>> LinearReadout(torch.zeros(2, 256), torch.zeros(10, 256)).pays
            False
        """
        C, d = self.weight.shape
        return C > d

    def pullback(self, probs: torch.Tensor, labels: torch.Tensor,
                 scale: float = 1.0) -> torch.Tensor:
        """``scale * (probs - one_hot(labels)) W``, shaped like the readout's inputs; ``probs``
        is ``(rows, C)`` (differentiable), ``labels`` ``(rows,)``. The product ``probs W`` is
        computed once per ``probs`` and shared by every call."""
        C, d = self.weight.shape
        if probs.dim() != 2 or probs.shape[1] != C or tuple(labels.shape) != (probs.shape[0],):
            raise ValueError(f"probs (rows, {C}) and labels (rows,) must agree with the readout, "
                             f"got {tuple(probs.shape)} and {tuple(labels.shape)}")
        if self._probs is not probs:
            self._probs, self._pw = probs, probs @ self.weight
        g = self._pw - self.weight.index_select(0, labels)
        if scale != 1.0:
            g = g * scale
        return g.reshape(self.inputs.shape)


@contextlib.contextmanager
def record_readout(model: nn.Module) -> Iterator[list[tuple[torch.Tensor, torch.Tensor,
                                                             torch.Tensor]]]:
    """Record ``(input, weight, output)`` of every call of a plain ``nn.Linear`` of ``model``
    (not a subclass, no forward hooks of its own) inside the block; :func:`readout_of` then
    finds the readout of the outputs.

    Example:
        >>> net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
        >>> with record_readout(net) as calls:
        ...     out = net(torch.randn(5, 3))
        >>> readout_of(calls, out).weight is net[2].weight
        True
    """
    calls: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []

    def hook(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        if args and isinstance(args[0], torch.Tensor) and isinstance(output, torch.Tensor):
            calls.append((args[0], module.weight, output))

    # a plain nn.Linear with no hooks of its own: its output is F.linear of its input as given
    handles = [m.register_forward_hook(hook) for m in model.modules()
               if type(m) is nn.Linear and not m._forward_hooks and not m._forward_pre_hooks]
    try:
        yield calls
    finally:
        for h in handles:
            h.remove()


def readout_of(calls: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
               outputs: torch.Tensor) -> LinearReadout | None:
    """The :class:`LinearReadout` whose output is ``outputs`` itself (the same tensor object),
    among the calls :func:`record_readout` saw; ``None`` when the outputs are not an
    ``nn.Linear``'s (a reshape or another op came after it).

    Example:
        >>> lin = nn.Linear(3, 2)
        >>> with record_readout(lin) as calls:
        ...     out = lin(torch.randn(4, 3))
        >>> readout_of(calls, out) is not None, readout_of(calls, out * 2) is None
        (True, True)
    """
    for inp, weight, out in reversed(calls):
        if out is outputs:
            return LinearReadout(inp, weight)
    return None
