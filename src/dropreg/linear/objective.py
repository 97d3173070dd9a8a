"""Expected objective and induced regularizer of a one-hidden-layer linear net under any mask law.

Network: ``x -> U diag(z / mu) V^T x`` with ``U`` of shape ``(D, r)`` (outgoing weights, column
``u_i``), ``V`` of shape ``(d, r)`` (incoming weights, column ``v_i``) and ``z`` a random keep-mask
of mean ``mu``. Data follow the PyTorch convention: ``X`` is ``(N, d)`` and ``Y`` is ``(N, D)``,
one example per row, and the loss is ``(1/N) ||Y - X V U^T||_F^2``.

For any law (Pal et al. 2020; ``docs/papers/pal2020.md``, "Any mask law"),
``E_z loss = loss + <C, (U^T U) ∘ (V^T Sigma_X V)>`` with ``C_ij = Cov(z_i, z_j) / (mu_i mu_j)``
the law's normalized covariance and ``Sigma_X = X^T X / N``. Dropout (``C = lam I``), DropBlock
(``C = lam I_b ⊗ 1 1^T``), KeepExactly, SlidingBlocks and Custom laws all go through this formula.
``p`` is the drop probability and ``lam = p / (1 - p)``.

Example:
    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> U, V = torch.randn(2, 4, generator=g), torch.randn(3, 4, generator=g)
    >>> C = 0.5 * torch.eye(4, dtype=torch.float64)         # Dropout with p = 1/3
    >>> bool(torch.isclose(induced_regularizer(U, V, C), dropout_regularizer(U, V, 1 / 3)))
    True
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor

from dropreg._checks import check_int, check_probability

__all__ = [
    "normalized_covariance_of",
    "linear_loss",
    "masked_loss",
    "expected_loss",
    "expected_objective_from_moments",
    "induced_regularizer",
    "dropout_regularizer",
    "dropblock_regularizer",
    "dropconnect_regularizer",
    "dropconnect_expected_loss",
    "dropconnect_masked_loss",
    "factorized_objective",
    "drop_to_lam",
]


def drop_to_lam(p: float) -> float:
    """``lam = p / (1 - p)`` for a drop probability ``p`` in ``[0, 1)``.

    (Pal et al. write the keep probability ``theta = 1 - p`` and ``lambda = (1 - theta)/theta``;
    ``docs/papers/pal2020.md``, "Mask laws".)

    Example:
        >>> drop_to_lam(0.5)
        1.0
    """
    p = check_probability("p (drop probability)", p, allow_one=False)
    return p / (1.0 - p)


def _check_factors(U: Tensor, V: Tensor) -> None:
    for name, T in (("U", U), ("V", V)):
        if not isinstance(T, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(T).__name__}")
        if T.dim() != 2:
            raise ValueError(f"{name} must be 2-D, got shape {tuple(T.shape)}")
    if U.shape[1] != V.shape[1]:
        raise ValueError(f"U and V must have the same number of columns (the width r), got "
                         f"U {tuple(U.shape)} and V {tuple(V.shape)}")


def _check_data(U: Tensor, V: Tensor, X: Tensor, Y: Tensor) -> None:
    _check_factors(U, V)
    if X.dim() != 2 or Y.dim() != 2:
        raise ValueError(f"X and Y must be 2-D (N, d) and (N, D), got {tuple(X.shape)}, "
                         f"{tuple(Y.shape)}")
    if X.shape[0] != Y.shape[0]:
        raise ValueError(f"X and Y must have the same number of rows, got {X.shape[0]} and "
                         f"{Y.shape[0]}")
    if X.shape[1] != V.shape[0] or Y.shape[1] != U.shape[0]:
        raise ValueError(f"shapes do not match: X {tuple(X.shape)} needs V with {X.shape[1]} rows "
                         f"(got {V.shape[0]}), Y {tuple(Y.shape)} needs U with {Y.shape[1]} rows "
                         f"(got {U.shape[0]})")


def normalized_covariance_of(law: Any, width: int, dtype: torch.dtype = torch.float64
                             ) -> Tensor:
    """The ``(width, width)`` normalized covariance ``C`` of ``law``: a mask law (anything with a
    ``normalized_covariance(width)`` method) or a tensor ``C`` given directly.

    ``C_ij = Cov(z_i, z_j) / (mu_i mu_j)``, the mask moment through which every law enters the
    expected objective (``docs/papers/pal2020.md``, "Any mask law").

    Example:
        >>> import torch
        >>> normalized_covariance_of(torch.eye(2), 2)
        tensor([[1., 0.],
                [0., 1.]], dtype=torch.float64)
    """
    if isinstance(law, Tensor):
        C = law
    elif hasattr(law, "normalized_covariance"):
        C = law.normalized_covariance(width)
    else:
        raise TypeError(f"law must be a MaskLaw or a (width, width) tensor, got "
                        f"{type(law).__name__}")
    if C.shape != (width, width):
        raise ValueError(f"normalized covariance must have shape ({width}, {width}), got "
                         f"{tuple(C.shape)}")
    return C.to(dtype)


def linear_loss(U: Tensor, V: Tensor, X: Tensor, Y: Tensor) -> Tensor:
    """``(1/N) ||Y - X V U^T||_F^2``: the plain squared loss of the linear net.

    Example:
        >>> import torch
        >>> o = torch.ones(1, 1)
        >>> float(linear_loss(o, o, torch.ones(2, 1), torch.ones(2, 1)))
        0.0
    """
    _check_data(U, V, X, Y)
    return ((Y - X @ V @ U.T) ** 2).sum() / X.shape[0]


def masked_loss(U: Tensor, V: Tensor, X: Tensor, Y: Tensor, z: Tensor, mu: Tensor) -> Tensor:
    """Sampled loss ``(1/N) ||Y - X V diag(z / mu) U^T||_F^2`` (inverted scaling).

    ``z`` is one mask ``(r,)`` shared by all rows, or one mask per example ``(N, r)``; ``mu`` is
    the law's mean ``(r,)``.

    Example:
        >>> import torch
        >>> o = torch.ones(1, 1)
        >>> float(masked_loss(o, o, o, o, torch.zeros(1), torch.full((1,), 0.5)))
        1.0
    """
    _check_data(U, V, X, Y)
    h = (X @ V) * (z / mu)
    return ((Y - h @ U.T) ** 2).sum() / X.shape[0]


def induced_regularizer(U: Tensor, V: Tensor, law: Any, sigma_x: Tensor | None = None
                        ) -> Tensor:
    """``<C, (U^T U) ∘ (V^T Sigma_X V)>``: the gap between the expected and the plain loss.

    ``docs/papers/pal2020.md``, "Any mask law" (one formula for every law). ``sigma_x = X^T X / N``;
    ``None`` means whitened data (``Sigma_X = I``).

    Args:
        U: ``(D, r)`` outgoing weights.
        V: ``(d, r)`` incoming weights.
        law: a mask law (``dropreg.masks.MaskLaw``) or its ``(r, r)`` normalized covariance.
        sigma_x: ``(d, d)`` input second moment, or ``None`` for the identity.

    Example:
        >>> import torch
        >>> U, V = torch.ones(1, 2), torch.ones(1, 2)
        >>> float(induced_regularizer(U, V, torch.ones(2, 2)))   # sum_ij C_ij
        4.0
    """
    _check_factors(U, V)
    C = normalized_covariance_of(law, U.shape[1]).to(U.dtype)
    VSV = V.T @ V if sigma_x is None else V.T @ sigma_x.to(V.dtype) @ V
    return (C * (U.T @ U) * VSV).sum()


def expected_loss(U: Tensor, V: Tensor, X: Tensor, Y: Tensor, law: Any) -> Tensor:
    """Exact ``E_z (1/N) ||Y - X V diag(z / mu) U^T||_F^2`` for any mask law (Pal et al. 2020).

    Example:
        >>> import torch
        >>> o = torch.ones(1, 1, dtype=torch.float64)
        >>> float(expected_loss(o, o, o, 2 * o, torch.ones(1, 1)))   # (2-1)^2 + 1
        2.0
    """
    _check_data(U, V, X, Y)
    sigma = X.T @ X / X.shape[0]
    return linear_loss(U, V, X, Y) + induced_regularizer(U, V, law, sigma)


def expected_objective_from_moments(U: Tensor, V: Tensor, M: Tensor, sigma: Tensor,
                                    yy: float, C: Tensor) -> float:
    """``E_z (1/N)||Y - X V diag(z/mu) U^T||^2`` from ``M = Y^T X / N``, ``sigma = X^T X / N``,
    ``yy = ||Y||^2 / N`` and the law's normalized covariance ``C`` ("Any mask law"): the same value
    as :func:`expected_loss`, from sufficient statistics (cheap inside a training loop).

    Example:
        >>> import torch
        >>> o = torch.ones(1, 1, dtype=torch.float64)
        >>> expected_objective_from_moments(o, o, o, o, 1.0, o)    # (1 - 1)^2 + 1
        1.0
    """
    A = U @ V.T
    plain = yy - 2.0 * float((A * M).sum()) + float(((A @ sigma) * A).sum())
    return plain + float(induced_regularizer(U, V, C, sigma))


def dropout_regularizer(U: Tensor, V: Tensor, p: float, sigma_x: Tensor | None = None) -> Tensor:
    """Dropout: ``lam sum_i ||u_i||^2 v_i^T Sigma_X v_i`` (Cavazza et al. 2018; Mianjy et al. 2018).

    Example:
        >>> import torch
        >>> float(dropout_regularizer(torch.ones(1, 2), torch.ones(1, 2), 0.5))
        2.0
    """
    _check_factors(U, V)
    lam = drop_to_lam(p)
    vsv = (V * V).sum(0) if sigma_x is None else (V * (sigma_x.to(V.dtype) @ V)).sum(0)
    return lam * ((U * U).sum(0) * vsv).sum()


def _block_count(width: int, block_size: int) -> int:
    """Number ``b = width / block_size`` of contiguous fixed blocks (``block_size`` must divide
    ``width``); the one block-count check of ``dropreg.linear``."""
    block_size = check_int("block_size", block_size)
    if width % block_size:
        raise ValueError(f"block_size must divide the width r = {width}, got {block_size}")
    return width // block_size


def dropblock_regularizer(U: Tensor, V: Tensor, p: float, block_size: int,
                          sigma_x: Tensor | None = None) -> Tensor:
    """DropBlock with contiguous fixed blocks: ``lam sum_g tr(U_g^T U_g V_g^T Sigma_X V_g)``,
    i.e. ``lam sum_g ||U_g V_g^T||_F^2`` on whitened data (Pal et al. 2020).

    Example:
        >>> import torch
        >>> float(dropblock_regularizer(torch.ones(1, 2), torch.ones(1, 2), 0.5, 2))
        4.0
    """
    _check_factors(U, V)
    lam = drop_to_lam(p)
    r = U.shape[1]
    b = _block_count(r, block_size)
    Ub = U.T.reshape(b, block_size, -1)            # (b, k, D)
    Vb = V.T.reshape(b, block_size, -1)            # (b, k, d)
    G_u = Ub @ Ub.transpose(1, 2)                  # U_g^T U_g
    SV = Vb if sigma_x is None else Vb @ sigma_x.to(V.dtype)
    G_v = SV @ Vb.transpose(1, 2)                  # V_g^T Sigma V_g
    return lam * (G_u * G_v).sum()


def factorized_objective(U: Tensor, V: Tensor, M: Tensor, p: float, block_size: int = 1
                         ) -> Tensor:
    """Deterministic DropBlock objective on whitened data, ``||M - U V^T||_F^2 +
    lam sum_g ||U_g V_g^T||_F^2`` (``docs/papers/pal2020.md``, "Closed-form minimizer";
    ``block_size=1`` is Dropout). It equals the expected loss minus the constant
    ``c_0 = ||Y||^2/N - ||M||^2``, ``M = Y^T X / N``.

    Example:
        >>> import torch
        >>> o = torch.ones(1, 1)
        >>> float(factorized_objective(o, o, 2 * o, 0.5))
        2.0
    """
    _check_factors(U, V)
    return ((M - U @ V.T) ** 2).sum() + dropblock_regularizer(U, V, p, block_size)


def dropconnect_regularizer(U: Tensor, V: Tensor, p: float,
                            layer: Literal["first", "second"] = "first",
                            sigma_x: Tensor | None = None) -> Tensor:
    """DropConnect regularizer (iid Bernoulli masks on weights, scaled by ``1/(1-p)``; "DropConnect
    equals Dropout").

    * ``layer="first"`` (mask on ``V^T``): ``lam sum_i ||u_i||^2 v_i^T diag(Sigma_X) v_i``.
    * ``layer="second"`` (mask on ``U``): ``lam sum_i ||u_i||^2 v_i^T Sigma_X v_i``.

    The second equals Dropout with the same ``p`` for any data. The first equals Dropout for all
    weights iff ``Sigma_X`` is diagonal (uncorrelated inputs, e.g. whitened data); with
    ``diag(Sigma_X) = 1`` but correlated inputs it equals the *whitened* Dropout formula
    ``lam sum_i ||u_i||^2 ||v_i||^2``, not Dropout on those data (a statement "DropConnect equals
    Dropout whenever diag(Sigma_X) = I" is to be read that way). On whitened data DropConnect at
    rate ``p`` is Dropout at rate ``p``: same expected objective, same minimizers.

    Example:
        >>> import torch
        >>> U, V = torch.randn(2, 3), torch.randn(4, 3)
        >>> bool(torch.isclose(dropconnect_regularizer(U, V, 0.3), dropout_regularizer(U, V, 0.3)))
        True
    """
    _check_factors(U, V)
    lam = drop_to_lam(p)
    if layer == "second":
        return dropout_regularizer(U, V, p, sigma_x)
    if layer != "first":
        raise ValueError(f"layer must be 'first' or 'second', got {layer!r}")
    diag = (torch.ones(V.shape[0], dtype=V.dtype, device=V.device) if sigma_x is None
            else torch.diagonal(sigma_x).to(V.dtype))
    return lam * ((U * U).sum(0) * (diag[:, None] * V * V).sum(0)).sum()


def dropconnect_expected_loss(U: Tensor, V: Tensor, X: Tensor, Y: Tensor, p: float,
                              layer: Literal["first", "second"] = "first") -> Tensor:
    """Exact expected DropConnect loss: plain loss + :func:`dropconnect_regularizer` (Pal et al.
    2020).

    Example:
        >>> import torch
        >>> o = torch.ones(1, 1)
        >>> float(dropconnect_expected_loss(o, o, o, o, 0.5))
        1.0
    """
    _check_data(U, V, X, Y)
    sigma = X.T @ X / X.shape[0]
    return linear_loss(U, V, X, Y) + dropconnect_regularizer(U, V, p, layer, sigma)


def dropconnect_masked_loss(U: Tensor, V: Tensor, X: Tensor, Y: Tensor, Z: Tensor, p: float,
                            layer: Literal["first", "second"] = "first") -> Tensor:
    """Sampled DropConnect loss with weight mask ``Z`` (shape of ``V^T`` for ``"first"``, of
    ``U`` for ``"second"``), shared by all examples, scaled by ``1/(1-p)`` (Wan et al. 2013).

    Example:
        >>> import torch
        >>> o = torch.ones(1, 1)
        >>> float(dropconnect_masked_loss(o, o, o, o, torch.ones(1, 1), 0.5))
        1.0
    """
    _check_data(U, V, X, Y)
    drop_to_lam(p)  # validates p in [0, 1)
    keep = 1.0 - p
    if layer == "first":
        W = U @ (Z * V.T) / keep
    elif layer == "second":
        W = (Z * U) / keep @ V.T
    else:
        raise ValueError(f"layer must be 'first' or 'second', got {layer!r}")
    return ((Y - X @ W.T) ** 2).sum() / X.shape[0]
