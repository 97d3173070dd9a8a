"""Dropout-family ``nn.Module`` wrappers over :mod:`dropreg.nn.functional`.

Every layer has a drop probability ``p`` (validated on assignment, so a schedule can change it),
an optional ``generator`` and a ``law`` property giving the :mod:`dropreg.masks` law it samples
from, whose exact moments feed the theory modules. ``eval()`` and ``p = 0`` are the identity.

Example:
    >>> import torch
    >>> from dropreg.nn import DropBlock2d
    >>> layer = DropBlock2d(0.1, 7)
    >>> layer
    DropBlock2d(p=0.1, block_size=7, share_channels=False)
    >>> x = torch.randn(2, 3, 14, 14)
    >>> layer.eval()(x) is x
    True
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from dropreg._checks import check_int, check_probability
from dropreg.masks import Bernoulli, Blocks, Gaussian, MaskLaw, SlidingBlocks, SlidingBlocks2d
from dropreg.nn import functional as DF

__all__ = [
    "DropLayer",
    "Dropout",
    "GaussianDropout",
    "DropBlock1d",
    "DropBlock2d",
    "DropConnectLinear",
    "DropConnectConv2d",
    "MaskDropout",
]


class DropLayer:
    """Mixin of every dropreg layer: a validated drop probability ``p`` and a ``generator``.

    :class:`~dropreg.nn.DropRateWarmup` finds layers by this type.

    Example:
        >>> layer = DropBlock2d(0.1, 3)
        >>> isinstance(layer, DropLayer), layer.law
        (True, SlidingBlocks2d(p=0.1, block_size=3))
        >>> layer.p = 1.5
        Traceback (most recent call last):
        ...
        ValueError: p must be in [0, 1], got 1.5
    """

    _p_allows_one: bool = True
    generator: torch.Generator | None

    @property
    def p(self) -> float:
        """Drop probability; assigning validates it."""
        return self._p

    @p.setter
    def p(self, value: float) -> None:
        self._p = check_probability("p", value, allow_one=self._p_allows_one)

    def extra_repr(self) -> str:
        """``p=...``; layers with more parameters extend it."""
        return f"p={self.p}"

    @property
    def law(self) -> MaskLaw:  # pragma: no cover - overridden
        """The mask law of :mod:`dropreg.masks` that this layer samples."""
        raise NotImplementedError


class _EntrywiseLayer(DropLayer, nn.Module):
    """Independent noise on every entry (:class:`Dropout`, :class:`GaussianDropout`); a dropout
    site for :mod:`dropreg.analytic` (``is_dropout_site``), like ``torch.nn.Dropout``."""

    is_dropout_site = True

    def __init__(self, p: float = 0.5, *, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.p = p
        self.generator = generator


class Dropout(_EntrywiseLayer):
    """Dropout with drop probability ``p`` (law :class:`~dropreg.masks.Bernoulli`).

    Without a generator it calls ``torch.nn.functional.dropout``. It is a dropout site for
    :mod:`dropreg.analytic` (``is_dropout_site``), like ``torch.nn.Dropout``.

    Args:
        p: drop probability in [0, 1].
        generator: optional source of randomness.

    Example:
        >>> Dropout(0.2)
        Dropout(p=0.2)
    """

    @property
    def law(self) -> Bernoulli:
        """The mask law of :mod:`dropreg.masks` that this layer samples."""
        return Bernoulli(self.p)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        """Zero each entry with probability ``p`` and scale by ``1/(1-p)`` (identity in eval).

        Example:
            >>> g = torch.Generator().manual_seed(0)
            >>> layer, x = Dropout(0.5, generator=g), torch.ones(4, 6)
            >>> set(layer(x).flatten().tolist()) <= {0.0, 2.0}, torch.equal(layer.eval()(x), x)
            (True, True)
        """
        return DF.dropout(input, self.p, training=self.training, generator=self.generator)


class GaussianDropout(_EntrywiseLayer):
    """Multiplicative ``N(1, p / (1 - p))`` noise (law :class:`~dropreg.masks.Gaussian`).

    A dropout site for :mod:`dropreg.analytic`: its noise has the variance ``p / (1 - p)`` of
    Bernoulli dropout, so the explicit regularizer is the same.

    Args:
        p: drop probability of the matched Dropout, in [0, 1).
        generator: optional source of randomness.

    Example:
        >>> GaussianDropout(0.5)
        GaussianDropout(p=0.5)
    """

    _p_allows_one = False

    @property
    def law(self) -> Gaussian:
        """The mask law of :mod:`dropreg.masks` that this layer samples."""
        return Gaussian(self.p)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        """Multiply by ``N(1, p/(1-p))`` noise (identity in eval).

        Example:
            >>> g = torch.Generator().manual_seed(0)
            >>> layer, x = GaussianDropout(0.5, generator=g), torch.ones(4, 6)
            >>> layer(x).shape, torch.equal(layer.eval()(x), x)
            (torch.Size([4, 6]), True)
        """
        return DF.gaussian_dropout(input, self.p, training=self.training, generator=self.generator)


class DropBlock2d(DropLayer, nn.Module):
    """DropBlock on ``(N, C, H, W)`` that drops exactly ``p`` in expectation on every map size.

    See :func:`dropreg.nn.functional.drop_block2d`; :attr:`law` is its
    :class:`~dropreg.masks.SlidingBlocks2d` law, whose methods give the exact moments for a map
    shape ``(H, W)``.

    Args:
        p: mean drop fraction in [0, 1].
        block_size: int or ``(bh, bw)``.
        share_channels: one mask per sample for all channels (default: one per channel).
        generator: optional source of randomness.

    Example:
        >>> DropBlock2d(0.1, (3, 5), share_channels=True)
        DropBlock2d(p=0.1, block_size=(3, 5), share_channels=True)
    """

    def __init__(
        self,
        p: float,
        block_size: int | tuple[int, int],
        *,
        share_channels: bool = False,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.p = p
        self.block_size = SlidingBlocks2d(p, block_size).block_size  # validated: int or a pair
        self.share_channels = bool(share_channels)
        self.generator = generator

    @property
    def law(self) -> SlidingBlocks2d:
        """The mask law of :mod:`dropreg.masks` that this layer samples."""
        return SlidingBlocks2d(self.p, self.block_size)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        """Zero sliding blocks of each ``(H, W)`` map, rescaled per position (identity in eval).

        Example:
            >>> g = torch.Generator().manual_seed(0)
            >>> layer, x = DropBlock2d(0.2, 3, generator=g), torch.ones(2, 3, 8, 8)
            >>> layer(x).shape, torch.equal(layer.eval()(x), x)
            (torch.Size([2, 3, 8, 8]), True)
        """
        return DF.drop_block2d(input, self.p, self.block_size, training=self.training,
                               share_channels=self.share_channels, generator=self.generator)

    def extra_repr(self) -> str:
        return f"p={self.p}, block_size={self.block_size}, share_channels={self.share_channels}"


class DropBlock1d(DropLayer, nn.Module):
    """DropBlock over the feature axis of ``(N, r)`` or ``(N, C, L)`` inputs.

    Sliding Ghiasi-style blocks that drop exactly ``p`` (law :class:`~dropreg.masks.SlidingBlocks`)
    or, with ``fixed_blocks=True``, Pal et al.'s non-overlapping blocks (law
    :class:`~dropreg.masks.Blocks`). See :func:`dropreg.nn.functional.drop_block1d`.

    Example:
        >>> DropBlock1d(0.3, 4, fixed_blocks=True).law
        Blocks(p=0.3, block_size=4)
    """

    def __init__(
        self,
        p: float,
        block_size: int,
        *,
        share_channels: bool = False,
        fixed_blocks: bool = False,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.p = p
        self.block_size = check_int("block_size", block_size)
        self.share_channels = bool(share_channels)
        self.fixed_blocks = bool(fixed_blocks)
        self.generator = generator

    @property
    def law(self) -> SlidingBlocks | Blocks:
        """The mask law of :mod:`dropreg.masks` that this layer samples."""
        return (Blocks if self.fixed_blocks else SlidingBlocks)(self.p, self.block_size)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        """Zero blocks of the feature axis, rescaled by ``1 / E[z]`` (identity in eval).

        Example:
            >>> g = torch.Generator().manual_seed(0)
            >>> layer = DropBlock1d(0.5, 2, fixed_blocks=True, generator=g)
            >>> y = layer(torch.ones(3, 6))
            >>> torch.equal(y[:, 0::2], y[:, 1::2]), set(y.flatten().tolist()) <= {0.0, 2.0}
            (True, True)
        """
        return DF.drop_block1d(input, self.p, self.block_size, training=self.training,
                               share_channels=self.share_channels,
                               fixed_blocks=self.fixed_blocks, generator=self.generator)

    def extra_repr(self) -> str:
        return (f"p={self.p}, block_size={self.block_size}, share_channels="
                f"{self.share_channels}, fixed_blocks={self.fixed_blocks}")


class _DropConnectLayer(DropLayer):
    """What :class:`DropConnectLinear` and :class:`DropConnectConv2d` share: the Bernoulli law of
    the weight entries, the DropConnect settings and their repr."""

    def _set_drop_connect(self, p: float, per_example: bool, generator: torch.Generator | None,
                          max_mask_elements: int) -> None:
        self.p = p
        self.per_example = bool(per_example)
        self.generator = generator
        self.max_mask_elements = max_mask_elements

    @property
    def law(self) -> Bernoulli:
        """The mask law of :mod:`dropreg.masks` that this layer samples (over weight entries)."""
        return Bernoulli(self.p)

    def extra_repr(self) -> str:
        """The wrapped layer's repr, then ``p`` and ``per_example``."""
        return f"{super(DropLayer, self).extra_repr()}, p={self.p}, per_example={self.per_example}"


class DropConnectLinear(_DropConnectLayer, nn.Linear):
    """``nn.Linear`` whose weight entries are dropped with probability ``p`` in training.

    One mask per forward call by default, one per example with ``per_example=True`` (chunked so
    that ``N x out x in`` masks are never held at once beyond ``max_mask_elements``). The bias is
    not masked. Weight law :class:`~dropreg.masks.Bernoulli` over the ``out * in`` entries.

    Example:
        >>> DropConnectLinear(4, 3, p=0.2)
        DropConnectLinear(in_features=4, out_features=3, bias=True, p=0.2, per_example=False)
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        p: float = 0.5,
        *,
        per_example: bool = False,
        generator: torch.Generator | None = None,
        max_mask_elements: int = DF.MAX_MASK_ELEMENTS,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        nn.Linear.__init__(self, in_features, out_features, bias, device=device, dtype=dtype)
        self._set_drop_connect(p, per_example, generator, max_mask_elements)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        """:func:`~dropreg.nn.functional.drop_connect_linear` (a plain linear map in eval).

        Example:
            >>> g = torch.Generator().manual_seed(0)
            >>> layer, x = DropConnectLinear(3, 2, p=0.5, generator=g), torch.randn(4, 3)
            >>> layer(x).shape
            torch.Size([4, 2])
            >>> F = torch.nn.functional
            >>> torch.equal(layer.eval()(x), F.linear(x, layer.weight, layer.bias))
            True
        """
        return DF.drop_connect_linear(
            input, self.weight, self.bias, self.p, training=self.training,
            per_example=self.per_example, generator=self.generator,
            max_mask_elements=self.max_mask_elements,
        )


class DropConnectConv2d(_DropConnectLayer, nn.Conv2d):
    """``nn.Conv2d`` whose kernel entries are dropped with probability ``p`` in training.

    Only ``padding_mode="zeros"`` is supported. One mask per call by default, one per example with
    ``per_example=True`` (grouped convolution over chunks of samples).

    Example:
        >>> DropConnectConv2d(3, 8, 3, p=0.1, padding=1).extra_repr()
        '3, 8, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1), p=0.1, per_example=False'
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        p: float = 0.5,
        *,
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] | str = 0,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        bias: bool = True,
        per_example: bool = False,
        generator: torch.Generator | None = None,
        max_mask_elements: int = DF.MAX_MASK_ELEMENTS,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        nn.Conv2d.__init__(self, in_channels, out_channels, kernel_size, stride=stride,
                           padding=padding, dilation=dilation, groups=groups, bias=bias,
                           device=device, dtype=dtype)
        self._set_drop_connect(p, per_example, generator, max_mask_elements)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        """:func:`~dropreg.nn.functional.drop_connect_conv2d` (a plain convolution in eval).

        Example:
            >>> g = torch.Generator().manual_seed(0)
            >>> layer, x = DropConnectConv2d(2, 4, 3, p=0.3, generator=g), torch.randn(1, 2, 6, 6)
            >>> layer(x).shape
            torch.Size([1, 4, 4, 4])
            >>> F = torch.nn.functional
            >>> torch.equal(layer.eval()(x), F.conv2d(x, layer.weight, layer.bias))
            True
        """
        return DF.drop_connect_conv2d(
            input, self.weight, self.bias, self.p, self.stride, self.padding, self.dilation,
            self.groups, training=self.training, per_example=self.per_example,
            generator=self.generator, max_mask_elements=self.max_mask_elements,
        )


class MaskDropout(DropLayer, nn.Module):
    """Apply any :mod:`dropreg.masks` law: ``input * z / E[z]`` (see
    :func:`dropreg.nn.functional.mask_dropout`).

    ``p`` reads and replaces the law's ``p`` field where it has one (so schedules work); laws
    without one (``KeepExactly``, ``Custom``) have no ``p``.

    Example:
        >>> from dropreg.masks import KeepExactly
        >>> MaskDropout(KeepExactly(2))
        MaskDropout(law=KeepExactly(keep=2))
    """

    def __init__(self, law: MaskLaw, *, generator: torch.Generator | None = None) -> None:
        super().__init__()
        if not isinstance(law, MaskLaw):
            raise TypeError(f"law must be a dropreg.masks law, got {type(law).__name__}")
        self._law = law
        self.generator = generator

    @property
    def law(self) -> MaskLaw:
        """The mask law of :mod:`dropreg.masks` that this layer samples."""
        return self._law

    @property
    def p(self) -> float:
        """The law's drop probability (``AttributeError`` for laws without one)."""
        if not hasattr(self._law, "p"):
            raise AttributeError(f"{self._law!r} has no drop probability p")
        return self._law.p

    @p.setter
    def p(self, value: float) -> None:
        if not hasattr(self._law, "p"):
            raise AttributeError(f"{self._law!r} has no drop probability p to set")
        self._law = dataclasses.replace(self._law, p=value)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        """``input * z / E[z]`` with ``z`` drawn from the law (identity in eval).

        Example:
            >>> from dropreg.masks import KeepExactly
            >>> g = torch.Generator().manual_seed(0)
            >>> y = MaskDropout(KeepExactly(2), generator=g)(torch.ones(3, 4))
            >>> y.sum(1).tolist()  # two of four units kept, each scaled by 1 / E[z] = 2
            [4.0, 4.0, 4.0]
        """
        return DF.mask_dropout(input, self._law, training=self.training, generator=self.generator)

    def extra_repr(self) -> str:
        return f"law={self._law!r}"

