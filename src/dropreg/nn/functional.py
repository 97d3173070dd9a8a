"""Dropout-family layers as pure functions (``torch.nn.functional`` habits).

Every function takes ``p``, the **drop** probability (as ``torch.nn.functional.dropout``), a
``training`` flag (``False`` or ``p = 0`` return the input itself) and an explicit
``generator: torch.Generator | None``; ``p = 1`` returns zeros (``input * 0``, so no NaN for finite
input and a zero gradient). Every function draws its mask from its :mod:`dropreg.masks` law,
through ``law.sample_scaled`` (``z / E[z]``) or, for DropBlock, ``law.draw`` (the same sampler,
returning the dropped positions so that scaling and dropping need no full-size mask), so the mask
a layer applies is its law's mask: scaled by the fixed ``1 / E[z]`` of each position, never by a
batch-wide empirical count, samples independent across the batch. The one exception is
:func:`dropout` without a generator, which calls ``torch.nn.functional.dropout`` (the same
Bernoulli law, fused by torch).

Example:
    >>> import torch
    >>> from dropreg.nn import functional as DF
    >>> x = torch.ones(2, 3, 8, 8)
    >>> y = DF.drop_block2d(x, 0.2, 3, generator=torch.Generator().manual_seed(0))
    >>> y.shape
    torch.Size([2, 3, 8, 8])
    >>> DF.drop_block2d(x, 0.2, 3, training=False) is x
    True
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from dropreg._checks import check_int
from dropreg._random import seed_from
from dropreg.masks import (
    Bernoulli,
    Blocks,
    Gaussian,
    MaskLaw,
    SlidingBlocks,
    SlidingBlocks2d,
    SlidingBlocks3d,
)
from dropreg.masks.base import capturing
from dropreg.masks.bits import bernoulli_bits, byte_table

__all__ = [
    "dropout",
    "gaussian_dropout",
    "drop_block1d",
    "drop_block2d",
    "drop_block3d",
    "drop_connect",
    "drop_connect_linear",
    "drop_connect_conv2d",
    "mask_dropout",
]

#: Default bound on the number of mask entries that per-example DropConnect materialises at once.
MAX_MASK_ELEMENTS: int = 2**24


# --------------------------------------------------------------------------- validation


def _check_input(input: object, fn: str, ndims: Sequence[int] | None = None) -> torch.Tensor:
    if not isinstance(input, torch.Tensor):
        raise TypeError(f"{fn}: input must be a torch.Tensor, got {type(input).__name__}")
    if not (input.is_floating_point() or input.is_complex()):
        raise TypeError(f"{fn}: input must have a floating-point dtype, got {input.dtype}")
    if ndims is not None and input.ndim not in ndims:
        allowed = " or ".join(str(d) for d in ndims)
        raise ValueError(
            f"{fn}: input must have ndim {allowed}, got ndim {input.ndim} "
            f"(shape {tuple(input.shape)})"
        )
    return input


def _as_p(p: object) -> object:
    """A 0-dim tensor ``p`` (as ``torch.nn.functional.dropout`` accepts) read as its number."""
    if isinstance(p, torch.Tensor) and p.ndim == 0 and p.is_floating_point():
        return p.item()
    return p


def _check_eps(eps: object) -> None:
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps >= 0:
        raise ValueError(f"eps must be a float >= 0, got {eps!r}")


def _maybe_inplace(input: torch.Tensor, out: torch.Tensor, inplace: bool) -> torch.Tensor:
    """``out`` written into ``input`` when ``inplace`` and no gradient flows through ``input``."""
    if not inplace or (torch.is_grad_enabled() and input.requires_grad):
        return out
    return input.copy_(out)


def _iid_scaled_mask(law: Bernoulli | Gaussian, shape: Sequence[int],
                     generator: torch.Generator | None, like: torch.Tensor) -> torch.Tensor:
    """``z / E[z]`` of shape ``shape`` for a law with iid entries, in the dtype and device of
    ``like``: ``law.sample_scaled`` over the ``numel`` entries (any shape, 0-dim or empty)."""
    shape = tuple(int(s) for s in shape)  # traced sizes (torch.jit.trace) read as ints
    z = law.sample_scaled((math.prod(shape),), 1, generator=generator, dtype=like.dtype,
                          device=like.device)
    return z.view(shape)


# --------------------------------------------------------------------------- dropout


def dropout(
    input: torch.Tensor,
    p: float = 0.5,
    *,
    training: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Dropout: ``input * z / (1 - p)``, ``z`` iid Bernoulli(1 - p) (law ``masks.Bernoulli``).

    Without a generator this is ``torch.nn.functional.dropout`` (same speed, same stream); with one,
    the mask is drawn from it.

    Args:
        input: floating-point tensor of any shape.
        p: drop probability in [0, 1].
        training: apply dropout (``False`` returns ``input``).
        generator: source of randomness.

    Returns:
        Tensor of the shape and dtype of ``input``.

    Example:
        >>> y = dropout(torch.ones(1000), 0.5, generator=torch.Generator().manual_seed(0))
        >>> sorted(set(y.tolist()))
        [0.0, 2.0]
    """
    _check_input(input, "dropout")
    law = Bernoulli(p)
    if not training or law.p == 0.0:
        return input
    if law.p == 1.0:
        return input * 0.0
    if generator is None:  # the same law, fused by torch (no mask tensor)
        return F.dropout(input, law.p, training=True)
    return input * _iid_scaled_mask(law, input.shape, generator, input)


def gaussian_dropout(
    input: torch.Tensor,
    p: float = 0.5,
    *,
    training: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Gaussian dropout: ``input * z``, ``z`` iid ``N(1, p / (1 - p))`` (law ``masks.Gaussian``).

    Same mean and variance of the rescaled mask as Dropout with drop probability ``p``.

    Args:
        input: floating-point tensor.
        p: drop probability of the matched Dropout, in [0, 1) (``p = 1`` would be infinite noise).
        training: apply the noise (``False`` returns ``input``).
        generator: source of randomness.

    Example:
        >>> y = gaussian_dropout(torch.ones(3), 0.5, generator=torch.Generator().manual_seed(0))
        >>> y.shape
        torch.Size([3])
    """
    _check_input(input, "gaussian_dropout")
    law = Gaussian(p)
    if not training or law.p == 0.0:
        return input
    return input * _iid_scaled_mask(law, input.shape, generator, input)


# --------------------------------------------------------------------------- DropBlock kernel


class _ScaleAndDrop(torch.autograd.Function):
    """``y = x * scale`` with the positions ``idx`` of the flat contiguous result set to 0.

    Forward and backward are one broadcast multiply plus one ``index_fill_``; only the ``(H, W)``
    scale and the indices are saved (a full-size mask costs an extra pass and its memory).
    Double backward works: the backward is made of differentiable ops.
    """

    @staticmethod
    def forward(x: torch.Tensor, scale: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        return _zero_at(x * scale, idx)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        ctx.save_for_backward(inputs[1], inputs[2])

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        scale, idx = ctx.saved_tensors
        return _zero_at(grad * scale, idx), None, None


def _zero_at(t: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``t`` (a fresh tensor) with the entries of logical flat (row-major) indices ``idx`` set to
    0, in place; a channels_last ``t`` keeps its layout (indices mapped to storage offsets)."""
    if t.is_contiguous():
        t.view(-1).index_fill_(0, idx, 0.0)
        return t
    if not (t.ndim == 4 and t.is_contiguous(memory_format=torch.channels_last)):
        return _zero_at(t.contiguous(), idx)
    N, C, H, W = t.shape
    w = idx % W
    h = (idx // W) % H
    c = (idx // (W * H)) % C
    n = idx // (W * H * C)
    offsets = ((n * H + h) * W + w) * C + c
    t.as_strided((t.numel(),), (1,)).index_fill_(0, offsets, 0.0)
    return t


def _apply_sliding_blocks(input: torch.Tensor, law: SlidingBlocks | SlidingBlocks2d,
                          batch_shape: tuple[int, ...], size: int | tuple[int, int],
                          generator: torch.Generator | None) -> torch.Tensor:
    """``input * z / E[z]`` with ``z = law.draw(batch_shape, size)`` broadcast over ``input``.

    When every entry of ``input`` has its own mask entry and the draw lists the dropped positions
    (the CPU sampler), the fused :class:`_ScaleAndDrop` applies it without a full-size mask;
    otherwise the draw's scaled mask (``law.sample_scaled``'s) multiplies ``input``.
    """
    draw = law.draw(batch_shape, size, generator=generator, dtype=input.dtype,
                    device=input.device)
    if draw.indices is not None and len(draw.indices) <= 1 \
            and math.prod(draw.shape) == input.numel():
        idx = draw.indices[0] if draw.indices else torch.zeros(0, dtype=torch.int64,
                                                               device=input.device)
        return _ScaleAndDrop.apply(input.reshape(draw.shape), draw.scale, idx).view(input.shape)
    out = input * draw.mask(draw.scale)
    if input.ndim == 4 and not input.is_contiguous() \
            and input.is_contiguous(memory_format=torch.channels_last):
        out = out.contiguous(memory_format=torch.channels_last)  # keep the input's layout
    return out


def drop_block2d(
    input: torch.Tensor,
    p: float = 0.1,
    block_size: int | tuple[int, int] = 7,
    inplace: bool = False,
    eps: float = 1e-6,
    training: bool = True,
    *,
    share_channels: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """DropBlock on ``(N, C, H, W)`` maps that drops exactly ``p`` in expectation on every map size.

    Law :class:`~dropreg.masks.SlidingBlocks2d` (Ghiasi et al. 2018;
    ``docs/guide/masks.md``, "DropBlock drops exactly p"): seeds on the valid-centre grid,
    each zeroing a ``kh x kw`` block (``(kh, kw) = min(block_size, (H, W))``), with the seed rate
    solved for edges and overlaps so that the mean drop fraction is exactly ``p``; position
    ``(i, j)`` is multiplied by ``z_ij / E[z_ij]`` with the fixed, exact ``E[z_ij]`` (so
    ``E[output] = input`` elementwise). Unlike torchvision/timm no batch-wide empirical
    renormalisation couples the samples. Odd or even, square or not, larger than the map or not.

    Args:
        input: ``(N, C, H, W)`` floating-point tensor.
        p: mean drop fraction in [0, 1] (a float or a 0-dim tensor).
        block_size: int or ``(bh, bw)``, each >= 1 (timm's default 7).
        inplace: write the result into ``input`` when no gradient has to flow through it
            (torchvision's argument); with autograd recording it is computed out of place.
        eps: torchvision's guard of its empirical renormalisation; accepted (a float >= 0) and
            unused, since dropreg rescales by the exact ``1 / E[z]`` and divides by no count.
        training: apply DropBlock (``False`` returns ``input``).
        share_channels: one mask per sample shared by all channels (timm >= 1.0.23 default);
            by default each (sample, channel) gets an independent mask (torchvision, the paper's
            recommendation).
        generator: source of randomness.

    Returns:
        Tensor like ``input``.

    Example:
        >>> x = torch.ones(64, 16, 7, 7)
        >>> y = drop_block2d(x, 0.1, 3, generator=torch.Generator().manual_seed(0))
        >>> abs(float((y == 0).float().mean()) - 0.1) < 0.01
        True
    """
    _check_input(input, "drop_block2d", (4,))
    _check_eps(eps)
    law = SlidingBlocks2d(_as_p(p), block_size)
    if not training or law.p == 0.0:
        return input
    N, C, H, W = (int(s) for s in input.shape)
    out = _apply_sliding_blocks(input, law, (N, 1 if share_channels else C), (H, W), generator)
    return _maybe_inplace(input, out, inplace)


def drop_block3d(
    input: torch.Tensor,
    p: float = 0.1,
    block_size: int | tuple[int, int, int] = 7,
    inplace: bool = False,
    eps: float = 1e-6,
    training: bool = True,
    *,
    share_channels: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """DropBlock on ``(N, C, D, H, W)`` volumes that drops exactly ``p`` in expectation.

    Law :class:`~dropreg.masks.SlidingBlocks3d` (Ghiasi et al. 2018, Section 3, on volumes as
    torchvision's ``drop_block3d``): seeds on the valid-centre grid, each zeroing a
    ``kd x kh x kw`` block, the seed rate solved so that the mean drop fraction is exactly ``p``;
    each position multiplied by ``z / E[z]`` with its fixed, exact ``E[z]``. Arguments as
    :func:`drop_block2d` (torchvision's positional order ``p, block_size, inplace, eps,
    training``).

    Example:
        >>> x = torch.ones(32, 4, 5, 6, 6)
        >>> y = drop_block3d(x, 0.2, 3, generator=torch.Generator().manual_seed(0))
        >>> abs(float((y == 0).float().mean()) - 0.2) < 0.02
        True
    """
    _check_input(input, "drop_block3d", (5,))
    _check_eps(eps)
    law = SlidingBlocks3d(_as_p(p), block_size)
    if not training or law.p == 0.0:
        return input
    N, C, D, H, W = (int(s) for s in input.shape)
    mask = law.sample_scaled((N, 1 if share_channels else C), (D, H, W), generator=generator,
                             dtype=input.dtype, device=input.device)
    return _maybe_inplace(input, input * mask, inplace)


def drop_block1d(
    input: torch.Tensor,
    p: float,
    block_size: int,
    *,
    training: bool = True,
    share_channels: bool = False,
    fixed_blocks: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """DropBlock over the last (feature) axis of ``(N, r)`` or ``(N, C, L)`` inputs.

    Default law :class:`~dropreg.masks.SlidingBlocks` (1-D Ghiasi-style seeds, each zeroing
    ``block_size`` consecutive units, seed rate solved so the mean drop fraction is exactly ``p``;
    each unit scaled by its fixed ``1 / E[z_i]``). With ``fixed_blocks=True``, law
    :class:`~dropreg.masks.Blocks`: the contiguous non-overlapping blocks of Pal et al. 2020
    (``docs/papers/pal2020.md``, "Mask laws"), each kept with probability ``1 - p`` and scaled by
    ``1 / (1 - p)``; a shorter last block when ``block_size`` does not divide the width.

    Args:
        input: ``(N, r)`` or ``(N, C, L)`` floating-point tensor.
        p: drop probability (mean drop fraction) in [0, 1].
        block_size: units per block, int >= 1.
        training: apply DropBlock (``False`` returns ``input``).
        share_channels: for ``(N, C, L)`` input, one mask per sample shared by the channels.
        fixed_blocks: use Pal et al.'s fixed partition instead of sliding seeds.
        generator: source of randomness.

    Example:
        >>> y = drop_block1d(torch.ones(50, 6), 0.5, 3, fixed_blocks=True,
        ...                  generator=torch.Generator().manual_seed(1))
        >>> bool((y[:, 0] == y[:, 2]).all()), sorted(set(y.flatten().tolist()))
        (True, [0.0, 2.0])
    """
    _check_input(input, "drop_block1d", (2, 3))
    law = (Blocks if fixed_blocks else SlidingBlocks)(p, block_size)
    if not training or law.p == 0.0:
        return input
    shape = tuple(int(s) for s in input.shape)  # traced sizes (torch.jit.trace) read as ints
    L = shape[-1]
    if input.ndim == 2:
        batch_shape = (shape[0],)
    else:
        batch_shape = (shape[0], 1 if share_channels else shape[1])
    if fixed_blocks:
        return input * law.sample_scaled(batch_shape, L, generator=generator, dtype=input.dtype,
                                         device=input.device)
    return _apply_sliding_blocks(input, law, batch_shape, L, generator)


# --------------------------------------------------------------------------- DropConnect


def drop_connect(
    weight: torch.Tensor,
    p: float = 0.5,
    *,
    training: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """DropConnect mask on a weight tensor: ``weight * Z / (1 - p)``, ``Z`` iid Bernoulli(1 - p).

    Wan et al. 2013; Pal et al. 2020 (``docs/papers/pal2020.md``, "DropConnect equals Dropout"; same
    ``lam = p / (1 - p)`` as Dropout). Not the EfficientNet "drop_connect", which is stochastic
    depth.

    Example:
        >>> w = drop_connect(torch.ones(20, 20), 0.5, generator=torch.Generator().manual_seed(0))
        >>> sorted(set(w.flatten().tolist()))
        [0.0, 2.0]
    """
    _check_input(weight, "drop_connect")
    law = Bernoulli(p)
    if not training or law.p == 0.0:
        return weight
    if law.p == 1.0:
        return weight * 0.0
    return weight * _iid_scaled_mask(law, weight.shape, generator, weight)


def _chunk_size(n: int, per_example: int, max_mask_elements: int) -> int:
    max_mask_elements = check_int("max_mask_elements", max_mask_elements)
    return max(1, min(n, max_mask_elements // max(per_example, 1)))


def _per_example_chunks(chunk_fn, x: torch.Tensor, params: tuple, n: int, chunk: int,
                        generator: torch.Generator | None) -> list[torch.Tensor]:
    """Run ``chunk_fn(x_chunk, *params, seed)`` over chunks of the batch.

    Each chunk draws its masks from a fresh generator seeded by one draw from ``generator`` (or the
    default generator), so results are deterministic given the generator. When there is more than
    one chunk and a gradient is needed, each chunk is checkpointed: its masks are not kept for
    backward but re-drawn from the same seed, so at most one chunk of masks is ever alive.
    """
    from torch.utils.checkpoint import checkpoint

    seeds = [seed_from(generator) for _ in range(max(1, -(-n // chunk)))]
    need_grad = torch.is_grad_enabled() and (
        x.requires_grad or any(isinstance(t, torch.Tensor) and t.requires_grad for t in params))
    outs = []
    for i, start in enumerate(range(0, n, chunk)):
        xb = x[start:start + chunk]
        if need_grad and n > chunk:
            outs.append(checkpoint(chunk_fn, xb, *params, seeds[i], use_reentrant=False))
        else:
            outs.append(chunk_fn(xb, *params, seeds[i]))
    return outs


def drop_connect_linear(
    input: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    p: float = 0.5,
    *,
    training: bool = True,
    per_example: bool = False,
    generator: torch.Generator | None = None,
    max_mask_elements: int = MAX_MASK_ELEMENTS,
) -> torch.Tensor:
    """``F.linear`` with a DropConnect mask on ``weight`` (the bias is not masked).

    By default one mask for the whole batch (AWD-LSTM style; same expected objective as per
    example, ``docs/papers/pal2020.md``, "DropConnect equals Dropout"). With ``per_example=True``
    each row of the flattened leading dimensions gets its own ``(out, in)`` mask (Wan et al.),
    drawn as packed bits (:func:`dropreg.masks.bits.bernoulli_bits`: iid Bernoulli, drop
    probability exactly ``p``, 64 entries per random word) and applied block by block without a
    full-size float mask. The bits of at most ``max_mask_elements`` mask entries are held at once:
    the examples are split in chunks of at most that many entries, each drawn from its own
    generator seeded by one draw from ``generator``; a single chunk's bits are kept for the
    backward (one bit per entry), several chunks are re-drawn from their seeds in the backward.

    Args:
        input: ``(*, in_features)`` tensor.
        weight: ``(out_features, in_features)``.
        bias: optional ``(out_features,)``.
        p: drop probability of each weight, in [0, 1].
        training: apply DropConnect (``False`` is ``F.linear``).
        per_example: one mask per example instead of one per call.
        generator: source of randomness.
        max_mask_elements: bound on mask entries held at once (``per_example`` only).

    Example:
        >>> x, w = torch.ones(3, 4), torch.ones(2, 4)
        >>> drop_connect_linear(x, w, p=0.0)
        tensor([[4., 4.],
                [4., 4.],
                [4., 4.]])
    """
    _check_input(input, "drop_connect_linear")
    law = Bernoulli(p)
    if not training or law.p == 0.0:
        return F.linear(input, weight, bias)
    if not per_example or law.p == 1.0:
        return F.linear(input, drop_connect(weight, law.p, generator=generator), bias)
    lead = input.shape[:-1]
    x = input.reshape(-1, input.shape[-1])
    n = int(x.shape[0])
    out_f, in_f = weight.shape
    if capturing():  # one draw of all the masks as floats: no seeds, no host-side loops
        masks = _iid_scaled_mask(law, (n, out_f, in_f), generator, weight)
        out = torch.bmm(weight * masks, x.unsqueeze(-1)).squeeze(-1)
    elif n == 0:
        out = x.new_zeros((0, out_f))
    else:
        chunk = _chunk_size(n, out_f * in_f, max_mask_elements)
        seeds = tuple(seed_from(generator) for _ in range(-(-n // chunk)))
        device_type = x.device.type
        w = weight
        if torch.is_autocast_enabled(device_type):  # compute in the autocast dtype, as F.linear
            dt = torch.get_autocast_dtype(device_type)
            x, w = x.to(dt), w.to(dt)
        with torch.autocast(device_type, enabled=False):
            out = _PerExampleDropConnect.apply(x, w, law.p, seeds, chunk)[0]
    if bias is not None:
        out = out + bias.to(out.dtype)  # keeps the autocast dtype of the product, as F.linear
    return out.reshape(*lead, out_f)


#: Mask entries unpacked at once by per-example DropConnect (a block's floats stay in cache).
BLOCK_ENTRIES: int = 2**18


def _chunk_keep_bytes(p: float, seed: int, m: int, out_f: int, in_f: int,
                      device: torch.device) -> torch.Tensor:
    """Keep bits of ``m`` examples' ``(out_f, in_f)`` masks from ``Generator().manual_seed(seed)``,
    as bytes ``(m, out_f, ceil(in_f / 8))``: entry ``(k, o, i)`` is bit ``i % 8`` of byte
    ``i // 8`` of row ``(k, o)`` (rows padded to whole bytes); a bit is 1 (kept) with probability
    exactly ``1 - p`` (it is the complement of a Bernoulli(``p``) drop bit)."""
    row_bytes = -(-in_f // 8)
    num = m * out_f * row_bytes * 8
    g = torch.Generator(device=device).manual_seed(seed)
    words = bernoulli_bits(num, p, generator=g, device=device).bitwise_not_()
    if sys.byteorder == "little":
        b = words.view(torch.uint8)
    else:  # byte k of a word holds its bits 8k .. 8k + 7
        shifts = torch.arange(0, 64, 8, device=device)
        b = ((words[:, None] >> shifts) & 255).to(torch.uint8).reshape(-1)
    return b[: num // 8].view(m, out_f, row_bytes)


def _blocks(m: int, out_f: int, in_f8: int):
    """``(rows, examples)`` per block of at most :data:`BLOCK_ENTRIES` mask entries."""
    if out_f * in_f8 <= BLOCK_ENTRIES:
        return out_f, max(1, min(m, BLOCK_ENTRIES // (out_f * in_f8)))
    return max(1, BLOCK_ENTRIES // in_f8), 1


class _PerExampleDropConnect(torch.autograd.Function):
    """``y_k = ((W * Z_k) / (1 - p)) x_k`` for per-example keep masks ``Z_k`` held as bits.

    Forward and backward unpack each block of mask entries (a gather from a 256-entry byte
    table, :func:`dropreg.masks.bits.byte_table`, whose values are ``0`` and ``1 / (1 - p)``)
    into a reused float buffer and multiply it into the weights (forward, ``grad_x``) or the
    outer product ``g_k x_k^T`` (``grad_W``). The saved state is the inputs and either the bits
    (one chunk) or the chunk seeds (several chunks, re-drawn). The backward of a backward
    (``create_graph=True``) is computed with differentiable ops from the float masks of each
    chunk in turn.
    """

    @staticmethod
    def forward(x, w, p, seeds, chunk):
        n, in_f = x.shape
        out_f = w.shape[0]
        table = byte_table(0.0, 1.0 / (1.0 - p), w.dtype, w.device)
        out = torch.empty((n, out_f), dtype=w.dtype, device=w.device)
        kept = []
        for i, seed in enumerate(seeds):
            s0, s1 = i * chunk, min(n, (i + 1) * chunk)
            bts = _chunk_keep_bytes(p, seed, s1 - s0, out_f, in_f, w.device)
            _dc_apply(bts, table, w, x[s0:s1], out[s0:s1], None, None, None)
            if len(seeds) == 1:
                kept.append(bts)
        return out, kept[0] if kept else None

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, w, p, seeds, chunk = inputs
        bts = output[1]
        ctx.save_for_backward(x, w, *([bts] if bts is not None else []))
        ctx.p, ctx.seeds, ctx.chunk = p, seeds, chunk
        ctx.mark_non_differentiable(*([bts] if bts is not None else []))

    @staticmethod
    def backward(ctx, gy, _):
        x, w, *kept = ctx.saved_tensors
        n, in_f = x.shape
        out_f = w.shape[0]
        need_x, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        table = byte_table(0.0, 1.0 / (1.0 - ctx.p), w.dtype, w.device)
        differentiable = torch.is_grad_enabled()  # create_graph=True
        gx = torch.zeros_like(x) if need_x and not differentiable else None
        gw = torch.zeros_like(w) if need_w and not differentiable else None
        gxs, gws = [], []
        for i, seed in enumerate(ctx.seeds):
            s0, s1 = i * ctx.chunk, min(n, (i + 1) * ctx.chunk)
            bts = kept[0] if kept else _chunk_keep_bytes(ctx.p, seed, s1 - s0, out_f, in_f,
                                                         w.device)
            if differentiable:
                masks = table[bts.reshape(-1).long()].view(s1 - s0, out_f, -1)[..., :in_f]
                g = gy[s0:s1]
                if need_x:
                    gxs.append(torch.bmm(g.unsqueeze(1), w * masks).squeeze(1))
                if need_w:
                    gws.append((masks * g.unsqueeze(2) * x[s0:s1].unsqueeze(1)).sum(0))
            else:
                _dc_apply(bts, table, w, x[s0:s1], None, gy[s0:s1],
                          None if gx is None else gx[s0:s1], gw)
        if differentiable:
            gx = torch.cat(gxs) if need_x else None
            gw = torch.stack(gws).sum(0) if need_w else None
        return gx, gw, None, None, None


def _dc_apply(bts: torch.Tensor, table: torch.Tensor, w: torch.Tensor, x: torch.Tensor,
              out: torch.Tensor | None, gy: torch.Tensor | None, gx: torch.Tensor | None,
              gw: torch.Tensor | None) -> None:
    """One chunk of per-example DropConnect, block by block: ``out = (W * M_k) x_k`` (forward,
    when ``out`` is given), ``gx += (W * M_k)^T g_k`` and ``gw += sum_k M_k * g_k x_k^T``
    (backward), ``M_k`` the scaled masks unpacked from ``bts``."""
    m, out_f, row_bytes = bts.shape
    in_f = x.shape[1]
    in_f8 = 8 * row_bytes
    rows, ex = _blocks(m, out_f, in_f8)
    size = rows * ex * in_f8
    buf = torch.empty(size, dtype=w.dtype, device=w.device)
    prod = torch.empty(size, dtype=w.dtype, device=w.device) if gx is not None else None
    idx = torch.empty(size // 8, dtype=torch.int32, device=w.device)
    for r0 in range(0, out_f, rows):
        r1 = min(out_f, r0 + rows)
        wb = w[r0:r1]
        for k0 in range(0, m, ex):
            k1 = min(m, k0 + ex)
            k, r = k1 - k0, r1 - r0
            cnt = k * r * row_bytes
            ib = idx[:cnt]
            ib.copy_(bts[k0:k1, r0:r1].reshape(-1))
            mask = torch.index_select(table, 0, ib, out=buf[: cnt * 8].view(cnt, 8))
            mask = mask.view(k, r, in_f8)[..., :in_f]
            if out is not None:
                out[k0:k1, r0:r1] = torch.bmm(mask.mul_(wb), x[k0:k1].unsqueeze(-1)).squeeze(-1)
                continue
            g = gy[k0:k1, r0:r1]
            if gx is not None:
                a = torch.mul(mask, wb, out=prod[: cnt * 8].view(k, r, in_f8)[..., :in_f])
                gx[k0:k1] += torch.bmm(g.unsqueeze(1), a).squeeze(1)
            if gw is not None:
                mask.mul_(x[k0:k1].unsqueeze(1))
                if k == 1:
                    gw[r0:r1].addcmul_(mask[0], g[0].unsqueeze(1))
                else:
                    gw[r0:r1] += mask.mul_(g.unsqueeze(2)).sum(0)


def drop_connect_conv2d(
    input: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    p: float = 0.5,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] | str = 0,
    dilation: int | tuple[int, int] = 1,
    groups: int = 1,
    *,
    training: bool = True,
    per_example: bool = False,
    generator: torch.Generator | None = None,
    max_mask_elements: int = MAX_MASK_ELEMENTS,
) -> torch.Tensor:
    """``F.conv2d`` with a DropConnect mask on the kernel (the bias is not masked).

    One mask per call by default; ``per_example=True`` gives each sample its own kernel mask,
    computed as a grouped convolution over chunks of samples with at most ``max_mask_elements``
    mask entries at once (chunks checkpointed as in :func:`drop_connect_linear`).

    Example:
        >>> x, w = torch.ones(2, 1, 3, 3), torch.ones(1, 1, 2, 2)
        >>> drop_connect_conv2d(x, w, p=0.0).shape
        torch.Size([2, 1, 2, 2])
    """
    _check_input(input, "drop_connect_conv2d", (4,))
    law = Bernoulli(p)
    if not training or law.p == 0.0:
        return F.conv2d(input, weight, bias, stride, padding, dilation, groups)
    if not per_example or law.p == 1.0 or input.shape[0] == 0:
        w = drop_connect(weight, law.p, generator=generator)
        return F.conv2d(input, w, bias, stride, padding, dilation, groups)
    n, c_in = input.shape[:2]
    c_out = weight.shape[0]

    def chunk_fn(xb: torch.Tensor, w: torch.Tensor, seed: int) -> torch.Tensor:
        g = torch.Generator(device=w.device).manual_seed(seed)
        m = xb.shape[0]
        masks = _iid_scaled_mask(law, (m, *w.shape), g, w)
        wb = (w * masks).reshape(m * c_out, *w.shape[1:])
        yb = F.conv2d(xb.reshape(1, m * c_in, *xb.shape[2:]), wb, None, stride, padding,
                      dilation, groups * m)
        return yb.reshape(m, c_out, *yb.shape[2:])

    chunk = _chunk_size(n, weight.numel(), max_mask_elements)
    out = torch.cat(_per_example_chunks(chunk_fn, input, (weight,), n, chunk, generator), 0)
    if bias is not None:
        out = out + bias.view(1, -1, 1, 1).to(out.dtype)  # keeps the autocast dtype
    return out


# --------------------------------------------------------------------------- any law


def mask_dropout(
    input: torch.Tensor,
    law: MaskLaw,
    *,
    training: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Apply any mask law: ``input * z / E[z]`` with ``z ~ law`` (``law.sample_scaled``).

    The law acts on the last ``law.event_ndim`` axes (the last axis, of width
    ``input.shape[-1]``, for most laws; the last two for :class:`~dropreg.masks.SlidingBlocks2d`),
    one independent mask per index of the leading axes. Units with ``E[z_i] = 0`` output 0.

    Example:
        >>> from dropreg.masks import KeepExactly
        >>> y = mask_dropout(torch.ones(2, 4), KeepExactly(1), generator=torch.Generator())
        >>> y.sum(-1)
        tensor([4., 4.])
    """
    _check_input(input, "mask_dropout")
    if not isinstance(law, MaskLaw):
        raise TypeError(f"law must be a dropreg.masks law, got {type(law).__name__}")
    if not training:
        return input
    nd = law.event_ndim
    if input.ndim < nd:
        raise ValueError(f"mask_dropout with {law!r} needs input ndim >= {nd}, got {input.ndim}")
    size = input.shape[-1] if nd == 1 else tuple(input.shape[-nd:])
    return input * law.sample_scaled(tuple(input.shape[:input.ndim - nd]), size,
                                     generator=generator, dtype=input.dtype, device=input.device)
