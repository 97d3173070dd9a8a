"""Masks drawn per fixed block of rows from a seed: the same masks however the rows are batched.

Row ``i`` of the data (its global index: over all ranks when the data are sharded), mask set
``m``, at the ``c``-th call of site ``s`` in a forward pass, is multiplied by row ``i mod B`` of
the mask that :func:`~dropreg.sites.sample_mask` draws for an input of ``B = block_rows`` rows
from a generator seeded by ``key_seed(seed, 0, i // B, m, s, c)``. A row's mask is then a function
of the seed, its index and ``m`` alone: neither the batch size, nor the batch the row falls in,
nor the number of ranks the data are split over changes it, and masks drawn for ``M`` mask sets
stacked along the batch are those of the ``M`` forward passes one at a time.

This needs a mask per row: the site's input has the rows as its dim 0 (``M`` times the rows when
mask sets are stacked). A mask that one forward pass shares (weight sites, ``per_example=False``,
an unbatched input, or an input whose dim 0 is not the rows, e.g. sequence-first activations) is
drawn from ``key_seed(seed, 1, first row of the batch, m, s, c)``: it depends on where the
batches begin, as masks shared by a batch must.

Example:
    >>> net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Dropout(0.5))
    >>> x = torch.randn(10, 3)
    >>> whole = block_masks(net, x, seed=7, block_rows=4)[0].masks["1"]
    >>> part = block_masks(net, x[3:8], seed=7, row_start=3, block_rows=4)[0].masks["1"]
    >>> torch.equal(whole[3:8], part)
    True
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from dropreg._checks import check_int
from dropreg.sites.masks import DropoutMasks, sample_mask, site_inputs
from dropreg.sites.registry import DropoutSite, dropout_sites

__all__ = ["BlockMasks", "block_masks", "key_seed"]

_M64 = (1 << 64) - 1


def _splitmix64(h: int) -> int:
    h = (h + 0x9E3779B97F4A7C15) & _M64
    h = ((h ^ (h >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    h = ((h ^ (h >> 27)) * 0x94D049BB133111EB) & _M64
    return h ^ (h >> 31)


def key_seed(seed: int, *key: int) -> int:
    """A generator seed in ``[0, 2**63)`` for ``key`` under ``seed`` (splitmix64 chained over the
    key's integers): distinct keys give unrelated seeds.

    Example:
        >>> key_seed(0, 1, 2) == key_seed(0, 1, 2), key_seed(0, 1, 2) == key_seed(0, 2, 1)
        (True, False)
    """
    h = _splitmix64(int(seed) & _M64)
    for k in key:
        h = _splitmix64(h ^ (int(k) & _M64))
    return h >> 1


def _site_key(site: DropoutSite) -> int:
    return zlib.crc32(site.name.encode())


class BlockMasks:
    """The mask source of one forward pass over rows ``row_start : row_start + rows`` (module
    docstring), for :attr:`dropreg.sites.DropoutState.source` in the ``"fresh"`` state.

    Args:
        seed: the mask seed.
        row_start: global index of the first row of the forward pass.
        rows: rows of the forward pass (of one mask set when several are stacked).
        mask_sets: the mask sets ``m`` of the forward pass, stacked along dim 0 in this order.
        block_rows: ``B``, rows per block.
        per_example: masks per row; ``False``: one mask shared by the forward pass.

    Example:
        >>> site = dropout_sites(torch.nn.Sequential(torch.nn.Dropout(0.5)))[0]
        >>> one = [BlockMasks(3, 0, 6, (m,), block_rows=4)(site, (6, 2), torch.float32, "cpu",
        ...                                                None) for m in (0, 1)]
        >>> both = BlockMasks(3, 0, 6, (0, 1), block_rows=4)(site, (12, 2), torch.float32, "cpu",
        ...                                                 None)
        >>> torch.equal(both, torch.cat(one))
        True
    """

    def __init__(self, seed: int, row_start: int, rows: int, mask_sets: Sequence[int] = (0,), *,
                 block_rows: int = 64, per_example: bool = True) -> None:
        self.seed, self.row_start, self.rows = int(seed), int(row_start), int(rows)
        self.mask_sets = tuple(int(m) for m in mask_sets)
        self.block_rows = check_int("block_rows", block_rows)
        self.per_example = bool(per_example)
        self.calls: dict[str, int] = {}

    def _rows(self, site: DropoutSite, rest: tuple[int, ...], m: int, s: int, c: int,
              dtype: torch.dtype, device: torch.device | str | None,
              call: Callable[[Tensor], Tensor] | None) -> Tensor:
        B, first, stop = self.block_rows, self.row_start, self.row_start + self.rows
        parts = []
        for b in range(first // B, (stop - 1) // B + 1):
            g = torch.Generator(device=device).manual_seed(key_seed(self.seed, 0, b, m, s, c))
            block = sample_mask(site, (B, *rest), generator=g, dtype=dtype, device=device,
                                call=call)
            parts.append(block[max(first, b * B) - b * B: min(stop, (b + 1) * B) - b * B])
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    def __call__(self, site: DropoutSite, shape: Sequence[int], dtype: torch.dtype,
                 device: torch.device | str | None,
                 call: Callable[[Tensor], Tensor] | None) -> Tensor:
        """The mask of ``site`` for an input of ``shape`` (its next call in the forward pass)."""
        shape = tuple(int(d) for d in shape)
        c = self.calls.get(site.name, 0)
        self.calls[site.name] = c + 1
        s = _site_key(site)
        k = len(self.mask_sets)
        if (self.per_example and self.rows > 0 and len(shape) > 0 and site.is_batched(len(shape))
                and shape[0] == k * self.rows):
            parts = [self._rows(site, shape[1:], m, s, c, dtype, device, call)
                     for m in self.mask_sets]
            return parts[0] if k == 1 else torch.cat(parts)
        g = torch.Generator(device=device).manual_seed(
            key_seed(self.seed, 1, self.row_start, self.mask_sets[0], s, c))
        return sample_mask(site, shape, generator=g, dtype=dtype, device=device, call=call)


def block_masks(
    model: nn.Module,
    inputs: Tensor | tuple[Tensor, ...],
    seed: int,
    mask_sets: Sequence[int] = (0,),
    *,
    row_start: int = 0,
    block_rows: int = 64,
    per_example: bool = True,
    sites: Sequence[DropoutSite] | None = None,
    is_dropout: Callable[[nn.Module], bool] | None = None,
) -> list[DropoutMasks]:
    """The masks of mask sets ``mask_sets`` for the batch ``inputs`` whose first row is global
    row ``row_start``, drawn per block of rows (module docstring) as explicit
    :class:`DropoutMasks` (each site's first call; the clean model runs once to see the shapes,
    as in :func:`~dropreg.sites.sample_masks`).

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Dropout(0.5))
        >>> ms = block_masks(net, torch.randn(5, 2), seed=1, mask_sets=range(3))
        >>> len(ms), tuple(ms[0].masks["1"].shape)
        (3, (5, 3))
    """
    site_list = list(dropout_sites(model, is_dropout) if sites is None else sites)
    if not site_list:
        raise ValueError("model has no dropout site (is_dropout matched nothing): nothing to "
                         "sample")
    by_name = {s.name: s for s in site_list}
    seen = site_inputs(model, inputs, site_list)
    if not seen:
        raise ValueError(f"no dropout site of the model was called in a forward pass (sites: "
                         f"{sorted(by_name)})")
    rows = int((inputs[0] if isinstance(inputs, tuple) else inputs).shape[0])
    out = []
    for m in mask_sets:
        source = BlockMasks(seed, row_start, rows, (m,), block_rows=block_rows,
                            per_example=per_example)
        masks, shared = {}, set()
        for name, x in seen.items():
            site = by_name[name]
            if site.is_batched(x.dim()):
                shape = (x.shape[0] if per_example else 1, *x.shape[1:])
            elif per_example and site.kind != "weight":
                raise ValueError(f"site {name!r} ({type(site.module).__name__}) sees an "
                                 f"unbatched input of shape {tuple(x.shape)}: its mask has no "
                                 "example dim; use per_example=False")
            else:
                shape = tuple(x.shape)
                shared.add(name)
            masks[name] = source(site, shape, x.dtype, x.device, None)
        out.append(DropoutMasks(masks, per_example, frozenset(shared)))
    return out
