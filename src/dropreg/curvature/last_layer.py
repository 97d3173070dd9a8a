"""Exact Hessian and dropout-noise covariance for dropout at the last hidden layer (Zhang, Zhou & Xu
2022; ``docs/papers/zhang2022.md``, "Last hidden layer").

Setting: scalar output ``f(x) = sum_j W_j h_j(x) + b`` with dropout on ``h`` (mask ``1 + eta``,
``eta = z / (1 - p) - 1``, ``z ~ Bernoulli(1 - p)``; ``p`` is the DROP probability; the paper's
keep probability is ``1 - p``), loss ``(1/n) sum_i 1/2 (f(x_i) - y_i)^2``, at an interpolating
point ``f(x_i) = y_i``. With ``a_ij = W_j h_j(x_i)``, ``J_i = grad f(x_i)``, ``A_ij = grad a_ij``:

* ``H = (1/n) sum_i J_i J_i^T`` (exact at interpolation, any activation);
* the dropout gradient is ``sum_j eta_j u_j + sum_jk eta_j eta_k v_jk`` exactly, so its
  covariance is a closed form in ``lam = p/(1-p)``, ``mu3 = E eta^3``, ``mu4 = E eta^4``.

These closed forms are re-derived in the docs page and checked against enumeration of all masks in
the tests.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.func import functional_call, jacrev

from dropreg._params import flatten_params, unflatten_params
from dropreg.sites import dropout_state

__all__ = [
    "dropout_eta_moments",
    "last_layer_hessian",
    "last_layer_noise_covariance",
    "last_layer_noise_covariance_linear",
    "last_layer_terms",
]


def dropout_eta_moments(p: float) -> tuple[float, float, float]:
    """``(E eta^2, E eta^3, E eta^4)`` of ``eta = z/(1-p) - 1``, ``z ~ Bernoulli(1-p)`` (the dropout
    noise of Zhang, Zhou & Xu 2022 with keep probability ``1 - p``).

    Example:
        >>> dropout_eta_moments(0.5)
        (1.0, 0.0, 1.0)
    """
    if not 0.0 <= p < 1.0:
        raise ValueError(f"p (drop probability) must be in [0, 1), got {p}")
    q = 1.0 - p
    lam = p / q
    mu3 = p * (2.0 * p - 1.0) / q**2
    mu4 = p * (p**3 + q**3) / q**3
    return lam, mu3, mu4


def last_layer_terms(
    model: nn.Module, X: Tensor, head: str, params: Sequence[str] | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """The terms ``(a, J, A)`` for a model whose module ``head`` is the output ``nn.Linear``.

    Notation of ``docs/papers/zhang2022.md``, section "Last hidden layer".

    ``a[i, j] = W_j h_j(x_i)`` (``h`` the input of ``head``), ``J[i] = grad f(x_i)`` and
    ``A[i, j] = grad a[i, j]`` over the flat parameters (clean model, dropout off).

    Returns:
        ``a`` ``(n, m)``, ``J`` ``(n, P)``, ``A`` ``(n, m, P)``.

    Example:
        >>> torch.manual_seed(0)
        <torch._C.Generator object at ...>
        >>> net = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Tanh(), torch.nn.Dropout(0.5),
        ...                           torch.nn.Linear(3, 1)).double()
        >>> X = torch.randn(4, 2, dtype=torch.float64)
        >>> a, J, A = last_layer_terms(net, X, head="3")
        >>> a.shape, J.shape, A.shape  # P = 9 + 4
        (torch.Size([4, 3]), torch.Size([4, 13]), torch.Size([4, 3, 13]))
        >>> bool(torch.allclose(a.sum(1) + net[3].bias, net.eval()(X)[:, 0]))  # f = sum_j a_j + b
        True
    """
    mods = dict(model.named_modules())
    if head not in mods or not isinstance(mods[head], nn.Linear):
        raise ValueError(f"head must name an nn.Linear of the model, got {head!r}")
    if mods[head].out_features != 1:
        raise ValueError(f"head must have one output, got {mods[head].out_features}")
    named = dict(model.named_parameters())
    names = [k for k, p in named.items() if p.requires_grad] if params is None else list(params)
    like = {k: named[k].detach() for k in names}
    theta = flatten_params(like)

    def both(flat: Tensor) -> tuple[Tensor, Tensor]:
        p = unflatten_params(flat, like)
        seen: dict[str, Tensor] = {}
        hook = mods[head].register_forward_pre_hook(lambda m, args: seen.__setitem__("h", args[0]))
        try:
            with dropout_state(model, "off"):
                out = functional_call(model, p, (X,))
        finally:
            hook.remove()
        W = p.get(head + ".weight", named[head + ".weight"])
        return seen["h"] * W[0], out[:, 0]

    a, _ = both(theta)
    A, J = jacrev(both)(theta)
    return a.detach(), J.detach(), A.detach()


def last_layer_hessian(J: Tensor) -> Tensor:
    """``H = J^T J / n``: the exact Hessian of the half-MSE at an interpolating point.

    Example:
        >>> last_layer_hessian(torch.tensor([[1.0, 0.0], [1.0, 2.0]]))
        tensor([[1., 1.],
                [1., 2.]])
    """
    return J.T @ J / J.shape[0]


def _shared_cov(a: Tensor, J: Tensor, A: Tensor, p: float) -> Tensor:
    n, m = a.shape
    lam, mu3, mu4 = dropout_eta_moments(p)
    u = torch.einsum("ij,ip->jp", a, J) / n
    v = torch.einsum("ij,ikp->jkp", a, A) / n
    vd = v.diagonal(dim1=0, dim2=1).T  # (m, P): v_jj
    S = lam * u.T @ u + mu3 * (u.T @ vd + vd.T @ u) + (mu4 - lam**2) * vd.T @ vd
    iu = torch.triu_indices(m, m, 1)
    w = v[iu[0], iu[1]] + v[iu[1], iu[0]]
    return S + lam**2 * w.T @ w


def last_layer_noise_covariance(
    a: Tensor, J: Tensor, A: Tensor, p: float, *, per_example: bool = True
) -> Tensor:
    """Exact covariance of the dropout gradient at an interpolating point
    (``docs/papers/zhang2022.md``).

    Args:
        a, J, A: from :func:`last_layer_terms`.
        p: drop probability of the last-hidden-layer dropout.
        per_example: masks per example (``nn.Dropout``) or one mask shared by all n examples.

    Returns:
        ``Sigma`` ``(P, P)``.

    Example:
        With one example, per-example and shared masks are the same thing:

        >>> g = torch.Generator().manual_seed(0)
        >>> a = torch.randn(1, 3, generator=g, dtype=torch.float64)
        >>> J = torch.randn(1, 5, generator=g, dtype=torch.float64)
        >>> A = torch.randn(1, 3, 5, generator=g, dtype=torch.float64)
        >>> S = last_layer_noise_covariance(a, J, A, 0.3)
        >>> S.shape, bool(torch.allclose(S, S.T))
        (torch.Size([5, 5]), True)
        >>> bool(torch.allclose(S, last_layer_noise_covariance(a, J, A, 0.3, per_example=False)))
        True
    """
    if not per_example:
        return _shared_cov(a, J, A, p)
    n = a.shape[0]
    return sum(_shared_cov(a[i:i + 1], J[i:i + 1], A[i:i + 1], p) for i in range(n)) / n**2


def last_layer_noise_covariance_linear(
    a: Tensor, J: Tensor, p: float, *, per_example: bool = True
) -> Tensor:
    """Leading (linear-in-eta) term of the covariance (``docs/papers/zhang2022.md``): per example
    ``(lam/n^2) sum_i s_i J_i J_i^T`` with ``s_i = sum_j a_ij^2``; shared
    ``(lam/n^2) sum_ik (a_i^T a_k) J_i J_k^T``.

    Example:
        >>> a, J = torch.tensor([[1.0, 1.0]]), torch.tensor([[1.0, 0.0]])
        >>> last_layer_noise_covariance_linear(a, J, 0.5)  # lam = 1, s_1 = 2
        tensor([[2., 0.],
                [0., 0.]])
    """
    n = a.shape[0]
    lam = dropout_eta_moments(p)[0]
    if per_example:
        return lam / n**2 * (J.T * (a**2).sum(1)) @ J
    return lam / n**2 * J.T @ (a @ a.T) @ J
