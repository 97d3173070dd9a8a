"""Dropout-family ``nn.Module`` wrappers over :mod:`dropreg.nn.functional`.

Every layer has a drop probability ``p`` (validated on assignment, so a schedule can change it),
an optional ``generator`` and a ``law`` property giving the :mod:`dropreg.masks` law it samples
from, whose exact moments feed the theory modules. ``eval()`` and ``p = 0`` are the identity.
Under ``torch.jit.script`` each forward calls its TorchScript twin in
:mod:`dropreg.nn._torchscript` (the same law, drawn with tensor ops only).

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
import torch.nn.functional as F
from torch import nn

from dropreg._checks import check_int, check_probability
from dropreg.masks import (
    Bernoulli,
    Blocks,
    Gaussian,
    MaskLaw,
    SlidingBlocks,
    SlidingBlocks2d,
    SlidingBlocks3d,
)
from dropreg.nn import _torchscript as TS
from dropreg.nn import functional as DF

__all__ = [
    "DropLayer",
    "Dropout",
    "GaussianDropout",
    "DropBlock1d",
    "DropBlock2d",
    "DropBlock3d",
    "DropConnectLinear",
    "DropConnectConv2d",
    "MaskDropout",
]


_RATE_LIKE = frozenset({
    "drop_rate", "dropout", "dropout_rate", "drop_p", "rate", "prob", "keep_prob", "keep_rate",
    "dropout_p", "drop_probability", "p_drop",
})


def _as_probability(name: str, value: object, allow_one: bool) -> float:
    """``value`` checked as a probability; a 0-dim tensor (as ``nn.Dropout`` accepts) is read as
    its number."""
    if isinstance(value, torch.Tensor):
        if value.ndim != 0 or value.is_complex() or value.dtype == torch.bool:
            raise TypeError(f"{name} must be a real number or a 0-dim real tensor in [0, 1], "
                            f"got a tensor of shape {tuple(value.shape)} and dtype {value.dtype}")
        value = value.item()
    return check_probability(name, value, allow_one=allow_one)


class DropLayer:
    """Mixin of every dropreg layer: a validated drop probability ``p`` and a ``generator``.

    ``drop_prob`` (timm's name) is the same attribute as ``p``, readable and writable, so timm-era
    schedulers that assign ``layer.drop_prob`` drive the layer. Assigning an attribute whose name
    looks like another drop rate (``drop_rate``, ``keep_prob``, ...) raises ``AttributeError``
    instead of creating an attribute the layer would never read.
    :class:`~dropreg.nn.DropRateWarmup` finds layers by this type.

    Example:
        >>> layer = DropBlock2d(0.1, 3)
        >>> isinstance(layer, DropLayer), layer.law  # doctest: +ELLIPSIS
        (True, SlidingBlocks2d(p=0.1, block_size=3))
        >>> layer.drop_prob = 0.3
        >>> layer.p
        0.3
        >>> layer.p = 1.5
        Traceback (most recent call last):
        ...
        ValueError: p must be in [0, 1], got 1.5
        >>> layer.drop_rate = 0.2
        Traceback (most recent call last):
        ...
        AttributeError: DropBlock2d has no attribute 'drop_rate': ... 'p' (alias 'drop_prob')
    """

    _p_allows_one: bool = True
    # Python-only properties that torch.jit.script must not compile (the scripted forward reads
    # the validated ``_p`` the ``p`` property stores)
    __jit_unused_properties__ = ["p", "drop_prob", "law", "couple_channels"]

    @property
    def p(self) -> float:
        """Drop probability; assigning validates it (a float or a 0-dim tensor)."""
        return self._p

    @p.setter
    def p(self, value: float) -> None:
        self._p = _as_probability("p", value, self._p_allows_one)

    @property
    def drop_prob(self) -> float:
        """timm's name of :attr:`p` (the same attribute: reading and assigning it is ``p``)."""
        return self.p

    @drop_prob.setter
    def drop_prob(self, value: float) -> None:
        self.p = value

    def __setattr__(self, name: str, value: object) -> None:
        if name in _RATE_LIKE and name not in type(self).__dict__ and not hasattr(self, name):
            raise AttributeError(
                f"{type(self).__name__} has no attribute {name!r}: its drop probability is 'p' "
                "(alias 'drop_prob')")
        super().__setattr__(name, value)

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
        if torch.jit.is_scripting():
            return TS.dropout(input, self._p, self.training, self.generator)
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
        if torch.jit.is_scripting():
            return TS.gaussian_dropout(input, self._p, self.training, self.generator)
        return DF.gaussian_dropout(input, self.p, training=self.training, generator=self.generator)


def _compat_block_args(layer: str, p: object, drop_prob: object, share_channels: bool,
                       couple_channels: bool | None, batchwise: object, fast: object,
                       scale_by_keep: bool, gamma_scale: float, with_noise: bool) -> tuple:
    """The ``(p, share_channels)`` a timm/torchvision-style call means; refuses what dropreg does
    not copy and warns on timm's removed arguments, as timm's own deprecation does."""
    import warnings

    if drop_prob is not None:
        if p is not None:
            raise TypeError(f"{layer}: give p or drop_prob (its timm alias), not both")
        p = drop_prob
    for name, value in (("batchwise", batchwise), ("fast", fast)):
        if value is not None:
            warnings.warn(f"{layer}: '{name}' was removed in timm 1.0.23 and has no effect "
                          "(dropreg draws one independent mask per sample and channel, or per "
                          "sample with share_channels=True)", DeprecationWarning, stacklevel=3)
    if scale_by_keep is not True:
        raise ValueError(
            f"{layer}: scale_by_keep={scale_by_keep!r} is not supported: dropreg always rescales "
            "each position by its exact 1 / E[z] (E[output] = input); to drop without rescaling "
            "multiply by the mask of law.sample(...) instead")
    if gamma_scale != 1.0:
        raise ValueError(
            f"{layer}: gamma_scale={gamma_scale!r} is not supported: dropreg solves the seed "
            "rate so that the mean drop fraction is exactly p; to drop more or less, set p")
    if with_noise:
        raise ValueError(
            f"{layer}: with_noise=True is not supported (it is not DropBlock's law); for "
            "multiplicative Gaussian noise use dropreg.nn.GaussianDropout")
    if couple_channels is not None:
        share_channels = bool(couple_channels)
    return (0.1 if p is None else p), bool(share_channels)


class _DropBlockNd(DropLayer, nn.Module):
    """What :class:`DropBlock2d` and :class:`DropBlock3d` share: torchvision's positional
    ``(p, block_size, inplace, eps)``, timm's keywords, the law and the repr."""

    _law_type: type
    _fn = staticmethod(DF.drop_block2d)
    __constants__ = ["_ndim", "_name"]  # read by the scripted forward

    def __init__(
        self,
        p: float | None = None,
        block_size: int | tuple[int, ...] = 7,
        inplace: bool = False,
        eps: float = 1e-6,
        *,
        share_channels: bool = False,
        generator: torch.Generator | None = None,
        drop_prob: float | None = None,
        couple_channels: bool | None = None,
        scale_by_keep: bool = True,
        gamma_scale: float = 1.0,
        with_noise: bool = False,
        batchwise: bool | None = None,
        fast: bool | None = None,
    ) -> None:
        super().__init__()
        p, share_channels = _compat_block_args(
            type(self).__name__, p, drop_prob, share_channels, couple_channels, batchwise, fast,
            scale_by_keep, gamma_scale, with_noise)
        self.p = p
        self.block_size = self._law_type(self.p, block_size).block_size  # validated
        self.inplace = bool(inplace)
        DF._check_eps(eps)
        self.eps = float(eps)
        self.share_channels = share_channels
        self.generator = generator

    @property
    def couple_channels(self) -> bool:
        """timm's name of :attr:`share_channels`."""
        return self.share_channels

    @couple_channels.setter
    def couple_channels(self, value: bool) -> None:
        self.share_channels = bool(value)

    @property
    def law(self) -> MaskLaw:
        """The mask law of :mod:`dropreg.masks` that this layer samples."""
        return self._law_type(self.p, self.block_size)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        """Zero sliding blocks of each map, rescaled per position (identity in eval).

        Example:
            >>> g = torch.Generator().manual_seed(0)
            >>> layer, x = DropBlock2d(0.2, 3, generator=g), torch.ones(2, 3, 8, 8)
            >>> layer(x).shape, torch.equal(layer.eval()(x), x)
            (torch.Size([2, 3, 8, 8]), True)
        """
        if torch.jit.is_scripting():
            return self._scripted_forward(input)
        return type(self)._fn(input, self.p, self.block_size, self.inplace, self.eps,
                              self.training, share_channels=self.share_channels,
                              generator=self.generator)

    def _scripted_forward(self, input: torch.Tensor) -> torch.Tensor:
        """The forward under ``torch.jit.script`` (:mod:`dropreg.nn._torchscript`)."""
        d = self._ndim
        if input.ndim != d + 2:
            raise ValueError(f"{self._name}: input must have ndim {d + 2}, got ndim {input.ndim}")
        if isinstance(self.block_size, int):
            block = [self.block_size] * d
        else:
            block = list(self.block_size)
        out = TS.sliding_blocks(input, self._p, block, self.training, self.share_channels,
                                self.generator)
        return TS.maybe_inplace(input, out, self.inplace) if out is not input else input

    def extra_repr(self) -> str:
        return f"p={self.p}, block_size={self.block_size}, share_channels={self.share_channels}"


class DropBlock2d(_DropBlockNd):
    """DropBlock on ``(N, C, H, W)`` that drops exactly ``p`` in expectation on every map size.

    See :func:`dropreg.nn.functional.drop_block2d`; :attr:`law` is its
    :class:`~dropreg.masks.SlidingBlocks2d` law, whose methods give the exact moments for a map
    shape ``(H, W)``. Takes torchvision's positional ``(p, block_size, inplace, eps)`` and timm's
    keywords (``drop_prob``, ``couple_channels``; ``batchwise`` and ``fast`` with timm's
    deprecation); defaults are timm's (``p = 0.1``, ``block_size = 7``).

    Args:
        p: mean drop fraction in [0, 1] (alias ``drop_prob``).
        block_size: int or ``(bh, bw)``.
        inplace: write into the input when no gradient flows through it.
        eps: accepted for torchvision, unused (no empirical renormalisation).
        share_channels: one mask per sample for all channels (alias ``couple_channels``).
        generator: optional source of randomness.

    Example:
        >>> DropBlock2d(0.1, (3, 5), share_channels=True)
        DropBlock2d(p=0.1, block_size=(3, 5), share_channels=True)
        >>> DropBlock2d(drop_prob=0.2, couple_channels=True)
        DropBlock2d(p=0.2, block_size=7, share_channels=True)
    """

    _law_type = SlidingBlocks2d
    _fn = staticmethod(DF.drop_block2d)
    _ndim = 2
    _name = "drop_block2d"


class DropBlock3d(_DropBlockNd):
    """DropBlock on ``(N, C, D, H, W)`` volumes that drops exactly ``p`` in expectation.

    See :func:`dropreg.nn.functional.drop_block3d`; :attr:`law` is its
    :class:`~dropreg.masks.SlidingBlocks3d` law. Arguments as :class:`DropBlock2d`.

    Example:
        >>> DropBlock3d(0.1, 3)
        DropBlock3d(p=0.1, block_size=3, share_channels=False)
        >>> layer = DropBlock3d(0.2, 2, generator=torch.Generator().manual_seed(0))
        >>> y = layer(torch.ones(2, 3, 4, 4, 4))
        >>> y.shape
        torch.Size([2, 3, 4, 4, 4])
    """

    _law_type = SlidingBlocks3d
    _fn = staticmethod(DF.drop_block3d)
    _ndim = 3
    _name = "drop_block3d"


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
        if torch.jit.is_scripting():
            if input.ndim != 2 and input.ndim != 3:
                raise ValueError(f"drop_block1d: input must have ndim 2 or 3, got ndim "
                                 f"{input.ndim}")
            if self.fixed_blocks:
                return TS.fixed_blocks(input, self._p, self.block_size, self.training,
                                       self.share_channels, self.generator)
            return TS.sliding_blocks(input, self._p, [self.block_size], self.training,
                                     self.share_channels, self.generator)
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
        if torch.jit.is_scripting():
            return TS.drop_connect_linear(input, self.weight, self.bias, self._p, self.training,
                                          self.per_example, self.generator)
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
        if torch.jit.is_scripting():
            return self._scripted_forward(input)
        return DF.drop_connect_conv2d(
            input, self.weight, self.bias, self.p, self.stride, self.padding, self.dilation,
            self.groups, training=self.training, per_example=self.per_example,
            generator=self.generator, max_mask_elements=self.max_mask_elements,
        )

    def _scripted_forward(self, input: torch.Tensor) -> torch.Tensor:
        """The forward under ``torch.jit.script``: the kernel masked by one draw per call, or per
        example one draw of all the call's kernels (a grouped convolution, as eager mode)."""
        if input.ndim != 4:
            raise ValueError(f"drop_connect_conv2d: input must have ndim 4, got ndim {input.ndim}")
        p = self._p
        if not self.training or p == 0.0:
            return self._conv_forward(input, self.weight, self.bias)
        if not self.per_example or p == 1.0 or input.shape[0] == 0:
            return self._conv_forward(input, TS.drop_connect(self.weight, p, True, self.generator),
                                      self.bias)
        m, c_in, c_out = input.shape[0], input.shape[1], self.weight.shape[0]
        kernels = self.weight.unsqueeze(0).expand([m] + list(self.weight.shape))
        wb = TS.drop_connect(kernels, p, True, self.generator)
        yb = F.conv2d(input.reshape([1, m * c_in] + list(input.shape[2:])),
                      wb.reshape([m * c_out] + list(self.weight.shape[1:])), None, self.stride,
                      self.padding, self.dilation, self.groups * m)
        out = yb.reshape([m, c_out] + list(yb.shape[2:]))
        if self.bias is not None:
            out = out + self.bias.view(1, -1, 1, 1).to(out.dtype)
        return out


class MaskDropout(DropLayer, nn.Module):
    """Apply any :mod:`dropreg.masks` law: ``input * z / E[z]`` (see
    :func:`dropreg.nn.functional.mask_dropout`).

    ``p`` reads and replaces the law's ``p`` field where it has one (so schedules work); laws
    without one (``KeepExactly``, ``Custom``) have no ``p``. Under ``torch.jit.script`` it is
    the identity in eval mode and raises in training: the law is a Python object.

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
        if torch.jit.is_scripting():
            if self.training:
                raise RuntimeError(
                    "MaskDropout cannot draw under torch.jit.script: its law is a Python object "
                    "(dropreg.masks) that TorchScript cannot compile; a scripted MaskDropout is "
                    "the identity in eval mode only. Train with the eager or torch.compile'd "
                    "module, or use a scriptable layer (Dropout, DropBlock1d/2d/3d)")
            return input
        return DF.mask_dropout(input, self._law, training=self.training, generator=self.generator)

    def extra_repr(self) -> str:
        return f"law={self._law!r}"

