"""The two losses of the analytic tools, with what the regularizers need from them.

Every loss is a mean over *loss terms* ``L = (1/N) sum_n l_n(F_n)``:

* ``"cross_entropy"``: outputs ``(..., C)`` logits, integer targets of shape ``outputs.shape[:-1]``;
  one term per target entry (an example, or a token of a language model). ``H_n = diag(p) - p p^T``.
* ``"mse"``: ``torch.nn.functional.mse_loss`` (mean over every element); one term per row
  ``outputs[n]`` with ``D`` entries, ``l_n = (1/D) ||F_n - y_n||^2`` and ``H_n = (2/D) I``.

Each loss also provides *pseudo-losses* whose gradient with respect to the outputs is, per term, a
random vector ``r_n`` with ``E[r_n r_n^T] = H_n`` (``docs/papers/wei2020.md``): the sampled-label
estimator.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from dropreg._random import rademacher

LOSSES = ("cross_entropy", "mse")


def check_loss(loss: str) -> str:
    """``loss`` when it is one of :data:`LOSSES`, else ``ValueError`` naming the allowed values.

    Example:
        >>> check_loss("mse")
        'mse'
    """
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
    return loss


def num_terms(outputs: torch.Tensor, targets: torch.Tensor, loss: str) -> int:
    """Number ``N`` of loss terms the mean runs over (checks the shapes).

    Example:
        >>> num_terms(torch.zeros(2, 3, 4), torch.zeros(2, 3, dtype=torch.long), "cross_entropy")
        6
        >>> num_terms(torch.zeros(5, 2), torch.zeros(5, 2), "mse")
        5
    """
    _check_shapes(outputs, targets, check_loss(loss))
    if loss == "cross_entropy":
        return targets.numel()
    return outputs.shape[0] if outputs.dim() > 0 else 1


def _check_shapes(outputs: torch.Tensor, targets: torch.Tensor, loss: str) -> None:
    if loss == "cross_entropy":
        if tuple(targets.shape) != tuple(outputs.shape[:-1]):
            raise ValueError(f"targets must have shape {tuple(outputs.shape[:-1])} (outputs "
                             f"without the class dim), got {tuple(targets.shape)}")
    elif tuple(targets.shape) != tuple(outputs.shape):
        raise ValueError(f"targets must have the outputs' shape {tuple(outputs.shape)}, "
                         f"got {tuple(targets.shape)}")


def per_term_loss(outputs: torch.Tensor, targets: torch.Tensor, loss: str) -> torch.Tensor:
    """The loss terms ``l_n``, flattened to shape ``(N,)``; their mean is :func:`mean_loss`.

    Example:
        >>> out = torch.zeros(2, 3, 4, dtype=torch.float64)  # 2 sequences of 3 tokens, 4 classes
        >>> terms = per_term_loss(out, torch.zeros(2, 3, dtype=torch.long), "cross_entropy")
        >>> terms.shape, bool(torch.allclose(terms, torch.full((6,), math.log(4.0),
        ...                                                      dtype=torch.float64)))
        (torch.Size([6]), True)
        >>> per_term_loss(torch.ones(2, 4), torch.zeros(2, 4), "mse")  # (1/D) ||F_n - y_n||^2
        tensor([1., 1.])
    """
    check_loss(loss)
    _check_shapes(outputs, targets, loss)
    if loss == "cross_entropy":
        C = outputs.shape[-1]
        return F.cross_entropy(outputs.reshape(-1, C), targets.reshape(-1), reduction="none")
    flat = outputs.reshape(outputs.shape[0], -1)
    return ((flat - targets.reshape(flat.shape)) ** 2).mean(dim=1)


def mean_loss(outputs: torch.Tensor, targets: torch.Tensor, loss: str) -> torch.Tensor:
    """``L = (1/N) sum_n l_n`` (``F.cross_entropy`` / ``F.mse_loss`` with mean reduction).

    Example:
        >>> out = torch.randn(5, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
        >>> y = torch.tensor([0, 2, 1, 1, 0])
        >>> bool(torch.isclose(mean_loss(out, y, "cross_entropy"),
        ...                    per_term_loss(out, y, "cross_entropy").mean()))
        True
    """
    check_loss(loss)
    _check_shapes(outputs, targets, loss)
    if loss == "cross_entropy":
        C = outputs.shape[-1]
        return F.cross_entropy(outputs.reshape(-1, C), targets.reshape(-1))
    return F.mse_loss(outputs, targets)


def output_hessian_quadratic(outputs: torch.Tensor, v: torch.Tensor, loss: str) -> torch.Tensor:
    """``v_n^T H_n v_n`` per loss term; ``v`` is ``(G, *outputs.shape)`` -> result ``(G, N)``.

    ``H_n`` is the module docstring's output Hessian: ``diag(p) - p p^T`` (cross entropy) or
    ``(2/D) I`` (mse).

    Example:
        >>> v = torch.tensor([[[1.0, -1.0]]])     # G = 1 direction, N = 1 term, C = 2 classes
        >>> output_hessian_quadratic(torch.zeros(1, 2), v, "cross_entropy")  # p = (1/2, 1/2)
        tensor([[1.]])
        >>> output_hessian_quadratic(torch.zeros(3, 2), torch.ones(1, 3, 2), "mse")
        tensor([[2., 2., 2.]])
    """
    if loss == "cross_entropy":
        C = outputs.shape[-1]
        p = torch.softmax(outputs.reshape(-1, C), dim=-1)
        v = v.reshape(v.shape[0], -1, C)
        pv = (p * v).sum(-1)
        return (p * v * v).sum(-1) - pv * pv
    n = outputs.shape[0]
    v = v.reshape(v.shape[0], n, -1)
    return (2.0 / v.shape[-1]) * (v * v).sum(-1)


def sampled_pseudo_loss(outputs: torch.Tensor, targets: torch.Tensor, loss: str,
                        kind: str = "hessian",
                        generator: torch.Generator | None = None) -> torch.Tensor:
    """A scalar ``P = sum_n ...`` whose output-gradient ``r_n`` per term has ``E r r^T = M_n``.

    ``kind``: ``"hessian"`` (``M_n = H_n``: a label sampled from the model's prediction for cross
    entropy, as in the authors' code; Rademacher signs times ``sqrt(2/D)`` for mse), ``"identity"``
    (``M_n = I / C``, the identity ablation of Section 5.2) or ``"loss_jacobian"`` (the true-label
    loss itself, ``r_n = grad l_n``, so ``r r^T`` is the loss-Jacobian ablation of eq. 5.1).

    Example:
        >>> out = torch.zeros(4, 3, requires_grad=True)
        >>> P = sampled_pseudo_loss(out, torch.zeros(4, dtype=torch.long), "cross_entropy",
        ...                         generator=torch.Generator().manual_seed(0))
        >>> r, = torch.autograd.grad(P, out)      # softmax(out) - one_hot(sampled label)
        >>> bool(torch.allclose(r.sum(-1), torch.zeros(4), atol=1e-6))
        True
    """
    check_loss(loss)
    if kind == "loss_jacobian":
        return per_term_loss(outputs, targets, loss).sum()
    if kind == "identity":
        C = outputs.shape[-1] if loss == "cross_entropy" else outputs[0].numel()
        s = rademacher(outputs.shape, generator=generator, dtype=outputs.dtype,
                       device=outputs.device)
        return (s * outputs).sum() / math.sqrt(C)
    if kind != "hessian":
        raise ValueError(f"kind must be 'hessian', 'identity' or 'loss_jacobian', got {kind!r}")
    if loss == "cross_entropy":
        C = outputs.shape[-1]
        logits = outputs.reshape(-1, C)
        return F.cross_entropy(logits, sample_labels(logits, generator), reduction="sum")
    D = outputs[0].numel()
    s = rademacher(outputs.shape, generator=generator, dtype=outputs.dtype, device=outputs.device)
    return (s * outputs).sum() * math.sqrt(2.0 / D)


def sample_labels(logits: torch.Tensor, generator: torch.Generator | None = None, *,
                  probs: torch.Tensor | None = None) -> torch.Tensor:
    """One label per row of ``(rows, C)`` logits, drawn from ``softmax(logits)``.

    By inverse CDF in float64 with one uniform per row (``torch.multinomial`` would draw an
    exponential per class, ``C`` times the random numbers), in two levels: a block of about
    ``sqrt(C)`` classes from the blocks' sums, then the class inside the block. The
    probabilities are the softmax in the logits' dtype, or ``probs`` when given (the same
    softmax, computed once and shared with the estimator's cotangent ``probs - one_hot(label)``,
    whose mean over the draws is then zero up to the float64 rounding of the cumulative sums).
    The labels of the cross-entropy pseudo-loss of :func:`sampled_pseudo_loss`.

    Example:
        >>> logits = torch.tensor([[0.0, 50.0, 0.0], [50.0, 0.0, 0.0]])
        >>> sample_labels(logits, torch.Generator().manual_seed(0)).tolist()
        [1, 0]
    """
    if logits.dim() != 2:
        raise ValueError(f"logits must have shape (rows, C), got {tuple(logits.shape)}")
    C = logits.shape[-1]
    if probs is None:
        probs = torch.softmax(logits.detach(), dim=-1)
    elif probs.shape != logits.shape:
        raise ValueError(f"probs must have the shape of logits {tuple(logits.shape)}, got "
                         f"{tuple(probs.shape)}")
    p = probs.detach()
    rows = p.shape[0]
    # two-level inverse CDF: a block of about sqrt(C) classes by the blocks' float64 sums, then
    # the class inside it (one pass over the probabilities instead of a float64 cumulative sum);
    # a last, shorter block holds the C mod width remaining classes (no padded copy of probs)
    width = max(1, math.isqrt(C))
    n_full, rest = divmod(C, width)
    sums = p[:, :n_full * width].view(rows, n_full, width).sum(-1, dtype=torch.float64)
    if rest:
        sums = torch.cat([sums, p[:, n_full * width:].sum(-1, keepdim=True,
                                                          dtype=torch.float64)], 1)
    n_blocks = sums.shape[1]
    cdf = sums.cumsum_(-1)
    u = torch.rand((rows, 1), generator=generator, dtype=torch.float64, device=p.device)
    u = u * cdf[:, -1:]
    b = torch.searchsorted(cdf, u, right=True).clamp_(max=n_blocks - 1)
    before = torch.where(b > 0, cdf.gather(1, (b - 1).clamp(min=0)), 0.0)
    cols = b * width + torch.arange(width, device=p.device)
    inside = p.gather(1, cols.clamp(max=C - 1))
    if rest:
        inside = inside.masked_fill(cols >= C, 0.0)  # past the last class of a short block
    inside = inside.cumsum(-1, dtype=torch.float64).add_(before)
    j = torch.searchsorted(inside, u, right=True).clamp_(max=width - 1)
    return (b * width + j).squeeze(1).clamp_(max=C - 1)


def softmax_cotangent(probs: torch.Tensor, labels: torch.Tensor,
                      scale: float = 1.0) -> torch.Tensor:
    """``scale * (probs - one_hot(labels))``: the gradient of ``scale * sum_n CE(logits_n,
    labels_n)`` with respect to ``(rows, C)`` logits, given ``probs = softmax(logits)``.

    Differentiable through ``probs`` by the softmax's own backward (once), where the autograd
    gradient of ``F.cross_entropy`` taken with ``create_graph=True`` records a log-softmax
    backward whose second derivative recomputes ``exp`` of all logits; with one ``probs`` the
    clean loss, its sampled-label pseudo-loss and the implicit noise share one softmax.

    Example:
        >>> logits = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
        >>> y = torch.tensor([0, 2, 1, 1])
        >>> r = softmax_cotangent(torch.softmax(logits, -1), y)
        >>> auto, = torch.autograd.grad(F.cross_entropy(logits, y, reduction="sum"), logits)
        >>> bool(torch.allclose(r, auto))
        True
    """
    if probs.dim() != 2 or tuple(labels.shape) != (probs.shape[0],):
        raise ValueError(f"probs (rows, C) and labels (rows,) must agree, got "
                         f"{tuple(probs.shape)} and {tuple(labels.shape)}")
    src = probs.new_full((probs.shape[0], 1), -scale)
    if scale == 1.0:
        return probs.scatter_add(1, labels.unsqueeze(1), src)
    return (probs * scale).scatter_add_(1, labels.unsqueeze(1), src)  # a fresh product: no copy


def cross_entropy_value(outputs: torch.Tensor, targets: torch.Tensor,
                        probs: torch.Tensor) -> torch.Tensor:
    """The mean cross entropy of ``(..., C)`` logits ``outputs`` from their shared softmax
    ``probs`` of shape ``(N, C)``: ``-mean log probs[n, y_n]``, without gradient (a step that has
    the softmax applies the loss's gradient ``(probs - one_hot(y)) / N``, :func:`softmax_cotangent`,
    itself). Where a target's probability is below float precision (``tiny / eps`` of the dtype)
    the value comes from ``F.cross_entropy`` instead.

    Example:
        >>> logits = torch.randn(4, 3, dtype=torch.float64)
        >>> y = torch.tensor([0, 2, 1, 1])
        >>> L = cross_entropy_value(logits, y, torch.softmax(logits, -1))
        >>> bool(torch.isclose(L, F.cross_entropy(logits, y)))
        True
    """
    _check_shapes(outputs, targets, "cross_entropy")
    C = outputs.shape[-1]
    y = targets.reshape(-1)
    if tuple(probs.shape) != (y.numel(), C):
        raise ValueError(f"probs must have shape {(y.numel(), C)}, got {tuple(probs.shape)}")
    with torch.no_grad():
        p_y = probs.gather(1, y.unsqueeze(1))
        finfo = torch.finfo(p_y.dtype)
        if bool((p_y < finfo.tiny / finfo.eps).any()):
            return F.cross_entropy(outputs.reshape(-1, C), y)
        return -p_y.log().mean()
