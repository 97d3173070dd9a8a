"""Predicted spectrum of the training predictions of a deep net with Dropout or DropBlock at its
last hidden layer and squared loss (Pal et al. 2020; ``docs/papers/pal2020.md``,
"Last layer of a deep network").

With features ``Phi`` (``N x r``) free, the expected objective
``(1/N)||Y - Phi U^T||^2 + (lam/N) sum_g ||Phi_g U_g^T||^2`` is the factorization problem of
:func:`~dropreg.linear.solve_dropblock` with target ``Y`` itself (no whitening needed). If the
net is expressive enough to realise the optimal features, its training predictions
``Yhat = Phi U^T`` have the closed-form singular values computed here. One-hot labels have
``Y^T Y = diag(n_c)``, so the spectrum depends on the class counts only.

Example:
    >>> import torch
    >>> last_layer_singular_values(20, 0.5, class_counts=[20, 15, 12, 8, 5])
    tensor([3.7972, 3.1980, 2.7892, 2.1535, 1.5611], dtype=torch.float64)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from dropreg.linear.closed_form import LinearSolution, solve_dropblock

__all__ = ["last_layer_solution", "last_layer_singular_values"]


def _target_spectrum(Y: Tensor | None, class_counts: Sequence[int] | None) -> Tensor:
    if (Y is None) == (class_counts is None):
        raise ValueError("give exactly one of Y (N x C targets) and class_counts")
    if Y is not None:
        if not isinstance(Y, Tensor) or Y.dim() != 2:
            raise ValueError(f"Y must be a 2-D tensor (N, C), got {getattr(Y, 'shape', Y)}")
        return torch.linalg.svdvals(Y.to(torch.float64))
    counts = torch.as_tensor(list(class_counts), dtype=torch.float64)
    if counts.dim() != 1 or counts.numel() == 0 or bool((counts < 0).any()):
        raise ValueError(f"class_counts must be a nonempty sequence of counts >= 0, got "
                         f"{list(class_counts)}")
    return torch.sort(counts.sqrt(), descending=True).values


def last_layer_solution(width: int, p: float, block_size: int = 1, *, Y: Tensor | None = None,
                        class_counts: Sequence[int] | None = None) -> LinearSolution:
    """Closed-form solution of the last-layer surrogate: :func:`solve_dropblock` applied to the
    diagonal of the singular values of ``Y`` (or of ``sqrt(class_counts)``), with its
    certificate (few blocks can make the bound unattainable). ``docs/papers/pal2020.md``,
    "Last layer of a deep network".

    Example:
        >>> sol = last_layer_solution(20, 0.5, 5, class_counts=[12] * 5)
        >>> round(float(sol.singular_values[0]), 4), sol.certificate.attained
        (2.7713, True)
    """
    s = _target_spectrum(Y, class_counts)
    return solve_dropblock(torch.diag(s), width, p, block_size)


def last_layer_singular_values(width: int, p: float, block_size: int = 1, *,
                               Y: Tensor | None = None,
                               class_counts: Sequence[int] | None = None) -> Tensor:
    """Predicted singular values of the training predictions ``Yhat`` (decreasing, one per
    singular value of ``Y``), for Dropout (``block_size=1``) or DropBlock of width ``r``.

    Dropout: ``(s_i - tau)_+`` with ``tau = lam sum_{i<=rho} s_i / (r + lam rho)``; DropBlock:
    the prox of the squared spectral k-support norm with ``mu = lam k / r``
    (``docs/papers/pal2020.md``, "Last layer of a deep network", with the closed form of
    "Closed-form minimizer").

    Args:
        width: width ``r`` of the last hidden layer.
        p: drop probability (Pal et al.'s ``theta = 1 - p``).
        block_size: DropBlock block size ``k`` (dividing ``width``); 1 is Dropout.
        Y: ``(N, C)`` training targets (e.g. one-hot), or
        class_counts: the class counts of one-hot targets.

    Example:
        >>> last_layer_singular_values(20, 0.5, 5, class_counts=[20, 15, 12, 8, 5])
        tensor([3.5777, 3.0984, 2.7713, 2.2627, 1.7889], dtype=torch.float64)
    """
    return last_layer_solution(width, p, block_size, Y=Y, class_counts=class_counts
                               ).singular_values
