"""Sums over the ranks of a ``torch.distributed`` process group, for a risk over sharded data.

A :class:`~dropreg.curvature.risk.DropoutRisk` given ``process_group=`` holds this rank's shard of
the data. Every quantity of the risk is a sum over rows, ``R = (1/N) sum_i loss_i`` with ``N``
the global row count, so each rank sums its weighted pieces and one all-reduce (SUM) gives the
total on every rank: uneven shards are exact, nothing is padded and nothing is divided by the
world size. An all-reduce leaves the same tensor on every rank, so what is computed from it
(Lanczos, Hutchinson, Hutch++, spectral density, alignment) is identical on every rank given the
same probes (one generator seed on every rank) and the same thread settings.

Each reduction carries, besides the sum:

* a fingerprint of the vectors the product was taken with (``v . w`` for fixed weights ``w``):
  ranks that were handed different vectors (probes drawn from unseeded generators) get a
  ``ValueError`` naming the cause instead of a silently wrong product;
* a failure count: an exception while summing this rank's pieces is raised on every rank (as a
  :class:`RankFailure` on the others), so no rank waits forever in a collective.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

__all__ = ["RankFailure", "check_process_group", "fingerprint", "gather_ints", "sum_over_ranks"]

#: Relative difference of the fingerprints above which the ranks' vectors are called different
#: in float64 (``64 eps`` in lower precision); the rounding of the all-reduce is ~ world size x
#: machine epsilon, far below.
FINGERPRINT_TOL = 1e-8


class RankFailure(RuntimeError):
    """Raised on every rank when the computation failed on another rank."""


def check_process_group(group: Any) -> tuple[int, int]:
    """``(rank, world size)`` of this process in ``group``; a clear error where the group is not
    usable (torch.distributed not initialised, not a process group, this process not in it).

    Example:
        >>> try:
        ...     check_process_group(object())
        ... except (TypeError, ValueError) as e:
        ...     print(type(e).__name__)
        ValueError
    """
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        raise ValueError("process_group is given but torch.distributed is not initialised: call "
                         "torch.distributed.init_process_group(...) first (torchrun sets its "
                         "environment), or pass process_group=None for one process")
    if group is dist.GroupMember.NON_GROUP_MEMBER:  # what new_group returns to non-members
        raise ValueError("process_group: this process is not a member of the group")
    if not isinstance(group, dist.ProcessGroup):
        raise TypeError(f"process_group must be a torch.distributed.ProcessGroup (e.g. "
                        f"torch.distributed.group.WORLD or one from new_group), got "
                        f"{type(group).__name__}")
    rank = dist.get_rank(group)
    if rank < 0:
        raise ValueError("process_group: this process is not a member of the group")
    return rank, dist.get_world_size(group)


def gather_ints(values: Sequence[int], group: Any, device: torch.device) -> list[list[int]]:
    """``values`` of every rank of ``group``, in rank order (one all-gather of int64).

    Example:
        >>> import inspect
        >>> list(inspect.signature(gather_ints).parameters)
        ['values', 'group', 'device']
    """
    import torch.distributed as dist

    mine = torch.tensor(list(values), dtype=torch.int64, device=device)
    out = [torch.empty_like(mine) for _ in range(dist.get_world_size(group))]
    dist.all_gather(out, mine, group=group)
    return [t.tolist() for t in out]


def _weights(n: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """Fixed, position-dependent weights in [0.5, 1.5) (so sign patterns do not collide)."""
    i = torch.arange(n, dtype=torch.int64, device=device)
    return ((i * 2654435761) % 65521).to(dtype) / 65521 + 0.5


def fingerprint(V: Tensor, weights: Tensor) -> tuple[Tensor, Tensor]:
    """``(V^T w, |V|^T w)`` per column of ``V`` (a vector is one column): the fingerprint of the
    vectors and its scale.

    Example:
        >>> v = torch.tensor([1.0, -1.0, 1.0], dtype=torch.float64)
        >>> f, s = fingerprint(v, torch.ones(3, dtype=torch.float64))
        >>> f.tolist(), s.tolist()
        ([1.0], [3.0])
    """
    M = V.reshape(V.shape[0], -1).to(weights.dtype)
    return M.T @ weights, M.abs().T @ weights


def sum_over_ranks(
    compute: Callable[[], Tensor],
    shape: Sequence[int],
    group: Any,
    *,
    dtype: torch.dtype,
    device: torch.device,
    probes: Tensor | None = None,
    weights: Tensor | None = None,
) -> Tensor:
    """``compute()`` (this rank's sum, of ``shape``) summed over the ranks of ``group`` by one
    all-reduce, the same tensor on every rank; ``probes`` (``(P,)`` or ``(P, k)``, the vectors
    the sum was computed with) are checked to be the same on every rank (module docstring).

    Example:
        >>> import inspect
        >>> list(inspect.signature(sum_over_ranks).parameters)[:3]
        ['compute', 'shape', 'group']
    """
    import torch.distributed as dist

    failure: BaseException | None = None
    try:
        local = compute().to(dtype).reshape(-1)
    except Exception as exc:  # reported to the other ranks, raised here after the reduction
        failure = exc
        local = torch.zeros(int(torch.Size(shape).numel()), dtype=dtype, device=device)
    from dropreg.curvature.hvp import _is_func_failure

    flags = torch.zeros(2, dtype=dtype, device=device)
    if failure is not None:
        flags[0 if _is_func_failure(failure) else 1] = 1.0
    parts = [local, flags]
    if probes is not None:
        if weights is None or weights.shape[0] != probes.shape[0]:
            weights = _weights(probes.shape[0], dtype, device)
        f, scale = fingerprint(probes, weights)
        parts.append(f)
    buf = torch.cat(parts)
    dist.all_reduce(buf, op=dist.ReduceOp.SUM, group=group)
    if failure is not None:
        raise failure
    n = local.numel()
    func_failures, other_failures = float(buf[n]), float(buf[n + 1])
    if other_failures > 0:
        raise RankFailure(f"the computation failed on {int(other_failures)} other rank(s) of "
                          "the process group; see the error raised there")
    if func_failures > 0:
        raise RankFailure("torch.func could not trace the model (vmap / forward-mode) on "
                          f"{int(func_failures)} other rank(s) of the process group")
    if probes is not None:
        world = dist.get_world_size(group)
        diff = (buf[n + 2:] - world * f).abs()
        tol = max(FINGERPRINT_TOL, 64 * torch.finfo(dtype).eps)  # above the rounding of the sum
        if bool((diff > tol * world * scale + torch.finfo(dtype).tiny).any()):
            raise ValueError("the vectors of this product differ between the ranks of the "
                             "process group, so their sum is no Hessian-vector product: draw "
                             "probes and start vectors from a generator with the same seed on "
                             "every rank (generator=torch.Generator().manual_seed(seed))")
    return buf[:n].reshape(tuple(shape))
