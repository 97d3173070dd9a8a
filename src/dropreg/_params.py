"""Flat views of a model's parameters: one vector of ``P`` numbers and back.

Used by :mod:`dropreg.curvature` (operators act on flat vectors) and :mod:`dropreg.analytic`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

__all__ = ["flatten_params", "unflatten_params", "unflatten_params_batched"]


def flatten_params(params: Mapping[str, Tensor] | Sequence[Tensor]) -> Tensor:
    """Concatenate tensors (a dict's values in order, or a sequence such as a tuple of
    gradients) into one flat vector. ``dropreg.analytic.flatten`` is this function.

    Example:
        >>> flatten_params({"a": torch.ones(2, 2), "b": torch.zeros(1)}).tolist()
        [1.0, 1.0, 1.0, 1.0, 0.0]
        >>> flatten_params((torch.ones(2, 3), torch.zeros(2))).shape
        torch.Size([8])
    """
    tensors = params.values() if isinstance(params, Mapping) else params
    return torch.cat([p.reshape(-1) for p in tensors])


def unflatten_params(vec: Tensor, like: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Split a flat vector into tensors shaped like ``like`` (inverse of :func:`flatten_params`).

    Example:
        >>> d = unflatten_params(torch.arange(5.0), {"a": torch.ones(2, 2), "b": torch.zeros(1)})
        >>> d["b"].tolist()
        [4.0]
    """
    total = sum(p.numel() for p in like.values())
    if vec.ndim != 1 or vec.numel() != total:
        raise ValueError(f"vector must have shape ({total},) like the parameters, got "
                         f"{tuple(vec.shape)}")
    out, i = {}, 0
    for k, p in like.items():
        n = p.numel()
        out[k] = vec[i:i + n].view_as(p)
        i += n
    return out


def unflatten_params_batched(mat: Tensor, like: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Split the rows of ``mat`` ``(k, P)`` into tensors shaped ``(k, *p.shape)`` like ``like``.

    Example:
        >>> d = unflatten_params_batched(torch.zeros(2, 5), {"a": torch.ones(2, 2),
        ...                                                  "b": torch.zeros(1)})
        >>> tuple(d["a"].shape), tuple(d["b"].shape)
        ((2, 2, 2), (2, 1))
    """
    out, i = {}, 0
    for k, p in like.items():
        n = p.numel()
        out[k] = mat[:, i:i + n].reshape(mat.shape[0], *p.shape)
        i += n
    return out
