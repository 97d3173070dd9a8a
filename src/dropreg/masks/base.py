"""The :class:`MaskLaw` interface and the helpers every law shares.

A law describes a random keep-mask ``z`` over the positions of an *event* of a given ``size``:
``width`` units (an int) for the laws over a vector of units, an ``(H, W)`` map for
:class:`~dropreg.masks.SlidingBlocks2d` (``event_ndim`` says which). Moments are over the
positions in row-major order.

Example:
    >>> from dropreg.masks import Bernoulli
    >>> Bernoulli(0.5).inverse_mean(3)
    tensor([2., 2., 2.], dtype=torch.float64)
"""

from __future__ import annotations

import abc
import numbers
from collections.abc import Sequence
from typing import ClassVar

import torch

from dropreg._checks import check_float_dtype, check_int
from dropreg._random import bernoulli_keep

__all__ = ["SUPPORT_LIMIT", "MaskLaw"]

#: Largest number of configurations (seed patterns, block patterns or masks) that ``support``
#: enumerates; above it ``support`` raises ``ValueError``.
SUPPORT_LIMIT: int = 2**16

UNDEFINED = "{}: the normalized covariance is undefined because E[z] = 0 (every unit dropped)"


def check_batch_shape(batch_shape: object) -> tuple[int, ...]:
    """``batch_shape`` as a tuple of ints >= 0 (an int ``n`` means ``(n,)``)."""
    if type(batch_shape) is tuple and all(type(s) is int and s >= 0 for s in batch_shape):
        return batch_shape  # fast path: layers call this on every forward
    if isinstance(batch_shape, numbers.Integral) and not isinstance(batch_shape, bool):
        batch_shape = (int(batch_shape),)
    if not isinstance(batch_shape, (tuple, list, torch.Size)):
        raise TypeError(f"batch_shape must be a tuple of ints >= 0, got {batch_shape!r}")
    return tuple(check_int("batch_shape entry", s, minimum=0) for s in batch_shape)


def capturing() -> bool:
    """Whether the caller is being captured (``torch.jit.trace``, ``torch.compile``,
    ``torch.export``) or transformed by ``torch.func`` (``vmap``, ``grad``): where the sparse
    sampler's data-dependent hit count cannot be captured, samplers use the dense one.

    Example:
        >>> capturing()
        False
    """
    if torch.compiler.is_compiling() or torch.jit.is_tracing():
        return True
    return bool(torch._C._functorch.peek_interpreter_stack() is not None)


def keep_draw(shape: tuple[int, ...], keep: float, generator: torch.Generator | None,
              dtype: torch.dtype, device: torch.device | str | None) -> torch.Tensor:
    """0/1 entries iid Bernoulli(``keep``) of ``shape``: ``bernoulli_`` in place when eager, and
    under capture (:func:`capturing`) the out-of-place ``float64 uniform < keep`` (the same law to
    float64 rounding, and batched by ``torch.func.vmap(randomness="different")``)."""
    if not capturing():
        return bernoulli_keep(shape, keep, generator=generator, dtype=dtype, device=device)
    u = torch.rand(tuple(shape), generator=generator, dtype=torch.float64, device=device)
    return (u < keep).to(dtype)


def check_support_size(name: str, count: int) -> None:
    """Refuse to enumerate more than :data:`SUPPORT_LIMIT` configurations."""
    if count > SUPPORT_LIMIT:
        raise ValueError(
            f"{name}.support would enumerate {count} configurations, more than SUPPORT_LIMIT = "
            f"{SUPPORT_LIMIT}; use a smaller width, or the closed-form mean() and "
            "normalized_covariance()"
        )


def all_bits(m: int) -> torch.Tensor:
    """All 2**m binary vectors of length m as a float64 (2**m, m) tensor (row b = bits of b)."""
    codes = torch.arange(2**m, dtype=torch.int64)[:, None]
    return ((codes >> torch.arange(m, dtype=torch.int64)) & 1).to(torch.float64)


def independent_probs(bits: torch.Tensor, one: float, zero: float) -> torch.Tensor:
    """Probability of each row of 0/1 ``bits`` when every bit is independently 1 with probability
    ``one`` and 0 with probability ``zero = 1 - one`` (both given: no rounding of ``1 - one``)."""
    k = bits.sum(1)
    return one**k * zero ** (bits.shape[1] - k)


def aggregate(masks: torch.Tensor, probs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Merge identical masks (rows), summing their probabilities; drop zero-probability rows."""
    flat = masks.reshape(masks.shape[0], -1)
    uniq, inverse = torch.unique(flat, dim=0, return_inverse=True)
    agg = torch.zeros(uniq.shape[0], dtype=torch.float64).index_add_(0, inverse, probs)
    keep = agg > 0
    return uniq[keep].reshape(-1, *masks.shape[1:]), agg[keep]


def normalized_from_moments(mu: torch.Tensor, second: torch.Tensor, name: str) -> torch.Tensor:
    """``C = E[z z^T] / (mu mu^T) - 1`` (``docs/papers/pal2020.md``, "Mask laws")."""
    if bool((mu <= 0).any()):
        raise ValueError(
            f"{name}: the normalized covariance Cov(z_i, z_j) / (mu_i mu_j) is undefined because "
            "some unit is never kept (E[z_i] = 0)"
        )
    return second / torch.outer(mu, mu) - 1.0


class MaskLaw(abc.ABC):
    """Distribution of a keep-mask ``z`` over an event of ``size`` positions; layers apply
    ``h * z / E[z]``.

    ``size`` is the event's shape: ``width`` (an int, or a 1-tuple) for the laws over a vector of
    units (``event_ndim = 1``), ``(H, W)`` for :class:`~dropreg.masks.SlidingBlocks2d`
    (``event_ndim = 2``). :meth:`mean` has the event's shape; :meth:`normalized_covariance` and
    :meth:`second_moment` are ``(n, n)`` over the ``n`` positions in row-major order.

    Subclasses implement the sampler :meth:`_sample` (behind :meth:`sample` and
    :meth:`sample_scaled`), :meth:`mean`, :meth:`normalized_covariance` and :meth:`support`;
    :meth:`second_moment`, :meth:`drop_fraction` and :meth:`inverse_mean` follow from them (laws
    override them where a closed form exists).

    Example:
        The moments agree exactly with the enumerated support:

        >>> from dropreg.masks import Blocks
        >>> law = Blocks(0.25, 2)
        >>> masks, probs = law.support(4)
        >>> bool(torch.allclose(probs @ masks, law.mean(4)))
        True
        >>> bool(torch.allclose(masks.T @ (probs[:, None] * masks), law.second_moment(4)))
        True
    """

    #: Number of trailing axes of an input that one mask covers.
    event_ndim: ClassVar[int] = 1

    def sample(
        self,
        batch_shape: tuple[int, ...],
        size: int | tuple[int, ...],
        /,
        *,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> torch.Tensor:
        """Draw independent masks, one per batch index: a ``(*batch_shape, *event)`` tensor.

        Example:
            >>> from dropreg.masks import Bernoulli
            >>> z = Bernoulli(0.5).sample((2, 3), 5, generator=torch.Generator().manual_seed(0),
            ...                           dtype=torch.float64)
            >>> z.shape, z.dtype, bool(((z == 0) | (z == 1)).all())
            (torch.Size([2, 3, 5]), torch.float64, True)
        """
        return self._sample(check_batch_shape(batch_shape), size, generator,
                            check_float_dtype(dtype), device, scaled=False)

    def sample_scaled(
        self,
        batch_shape: tuple[int, ...],
        size: int | tuple[int, ...],
        /,
        *,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> torch.Tensor:
        """``z / E[z]`` (0 where ``E[z] = 0``) for ``z`` drawn exactly as by :meth:`sample` (same
        generator, same stream): what a dropout layer multiplies its input by. Laws fold the
        scaling into the draw where that is cheaper.

        Example:
            >>> from dropreg.masks import Blocks, KeepExactly
            >>> KeepExactly(1).sample_scaled((2,), 4, generator=torch.Generator()).sum(-1)
            tensor([4., 4.])
            >>> law = Blocks(0.5, 2)
            >>> z = law.sample((1,), 4, generator=torch.Generator().manual_seed(4))
            >>> y = law.sample_scaled((1,), 4, generator=torch.Generator().manual_seed(4))
            >>> torch.equal(y, 2 * z)
            True
        """
        return self._sample(check_batch_shape(batch_shape), size, generator,
                            check_float_dtype(dtype), device, scaled=True)

    @abc.abstractmethod
    def _sample(
        self,
        batch_shape: tuple[int, ...],
        size: int | tuple[int, ...],
        generator: torch.Generator | None,
        dtype: torch.dtype,
        device: torch.device | str | None,
        *,
        scaled: bool,
    ) -> torch.Tensor:
        """The sampler of the law (``batch_shape`` and ``dtype`` already validated): masks
        ``(*batch_shape, *event)``, or with ``scaled`` the same draw times ``1 / E[z]``
        (:meth:`_rescale` does it for laws with no cheaper way)."""

    def _rescale(self, z: torch.Tensor, size: int | tuple[int, ...]) -> torch.Tensor:
        """``z * inverse_mean(size)``, in place."""
        return z.mul_(self.inverse_mean(size).to(dtype=z.dtype, device=z.device))

    @abc.abstractmethod
    def mean(self, size: int | tuple[int, ...], /) -> torch.Tensor:
        """``E[z_i]`` as a float64 tensor of the event's shape.

        Example:
            >>> from dropreg.masks import KeepExactly
            >>> KeepExactly(1).mean(4)
            tensor([0.2500, 0.2500, 0.2500, 0.2500], dtype=torch.float64)
        """

    @abc.abstractmethod
    def normalized_covariance(self, size: int | tuple[int, ...], /) -> torch.Tensor:
        """``Cov(z_i, z_j) / (mu_i mu_j)`` as a float64 ``(n, n)`` tensor
        (``docs/papers/pal2020.md``, "Mask laws").

        Raises ``ValueError`` where some ``mu_i = 0`` (e.g. ``p = 1``): it is undefined there.

        Example:
            >>> from dropreg.masks import Bernoulli
            >>> Bernoulli(0.2).normalized_covariance(2)  # lam I, lam = p / (1 - p)
            tensor([[0.2500, 0.0000],
                    [0.0000, 0.2500]], dtype=torch.float64)
        """

    @abc.abstractmethod
    def support(self, size: int | tuple[int, ...], /) -> tuple[torch.Tensor, torch.Tensor]:
        """Every mask of positive probability: ``(masks (S, *event), probs (S,))``, float64.

        Raises ``ValueError`` above :data:`SUPPORT_LIMIT` enumerated configurations.

        Example:
            >>> from dropreg.masks import Blocks
            >>> masks, probs = Blocks(0.5, 2).support(4)  # 2 blocks: 4 equally likely masks
            >>> masks.shape, probs.tolist()
            (torch.Size([4, 4]), [0.25, 0.25, 0.25, 0.25])
        """

    def second_moment(self, size: int | tuple[int, ...], /) -> torch.Tensor:
        """``E[z z^T]`` as a float64 ``(n, n)`` tensor, ``(C + 1) * mu mu^T`` (the definition of
        ``C`` in ``docs/papers/pal2020.md``, "Mask laws", solved for ``E[z z^T]``).

        Example:
            >>> from dropreg.masks import Bernoulli
            >>> Bernoulli(0.5).second_moment(2)  # E z_i^2 = 1 - p, E z_i z_j = (1 - p)^2
            tensor([[0.5000, 0.2500],
                    [0.2500, 0.5000]], dtype=torch.float64)
        """
        mu = self.mean(size).reshape(-1)
        return (self.normalized_covariance(size) + 1.0) * torch.outer(mu, mu)

    def drop_fraction(self, size: int | tuple[int, ...], /) -> float:
        """Expected fraction of dropped positions, ``1 - mean(E[z_i])`` (for 0/1 masks).

        Example:
            >>> from dropreg.masks import Blocks, KeepExactly
            >>> round(Blocks(0.3, 4).drop_fraction(10), 12), KeepExactly(3).drop_fraction(4)
            (0.3, 0.25)
        """
        return float((1.0 - self.mean(size)).mean())

    def inverse_mean(self, size: int | tuple[int, ...], /) -> torch.Tensor:
        """The factor a layer multiplies a mask by: ``1 / E[z_i]``, and 0 where ``E[z_i] = 0``
        (such positions are always dropped), float64 of the event's shape.

        Example:
            >>> from dropreg.masks import KeepExactly
            >>> KeepExactly(1).inverse_mean(4)
            tensor([4., 4., 4., 4.], dtype=torch.float64)
        """
        mu = self.mean(size)
        return torch.where(mu > 0, 1.0 / mu, torch.zeros_like(mu))

    @staticmethod
    def _width(width: object) -> int:
        """``width`` (an int, or a 1-tuple) as an int >= 1."""
        if isinstance(width, Sequence) and not isinstance(width, str) and len(width) == 1:
            width = width[0]
        return check_int("width", width)

    @staticmethod
    def _scalar_scale(keep: float) -> float:
        """``1 / keep``, and 0 when ``keep = 0`` (every unit dropped)."""
        return 1.0 / keep if keep > 0 else 0.0
