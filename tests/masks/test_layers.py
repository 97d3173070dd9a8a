"""dropreg.nn layers: exact drop rate, law agreement, autograd, compile, determinism, errors."""

from __future__ import annotations

import itertools
import math
import shutil

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import dropreg.masks.sliding
import dropreg.nn.functional as DF
from dropreg.masks import Blocks, Custom, Gaussian, KeepExactly, SlidingBlocks, SlidingBlocks2d
from dropreg.masks.bits import bernoulli_bits, unpack_bits
from dropreg.nn import (
    DropBlock1d,
    DropBlock2d,
    DropConnectConv2d,
    DropConnectLinear,
    Dropout,
    DropRateWarmup,
    GaussianDropout,
    MaskDropout,
)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _within(emp: torch.Tensor, exact: torch.Tensor, se: torch.Tensor, k: float = 5.0) -> bool:
    return bool(((emp - exact).abs() <= k * se + 1e-12).all())


# --------------------------------------------------------------------------- DropBlock2d law

GRID = list(itertools.product(
    [(7, 7), (8, 5), (14, 14), (1, 9), (3, 16)],  # maps
    [1, 2, 3, 7, 9, (2, 5)],                       # blocks: odd, even, >= map, non-square
    [0.1, 0.3, 0.7],
))


@pytest.mark.parametrize(("method"), ["sparse", "dense"])
def test_realised_drop_fraction_equals_p_on_grid(method: str) -> None:
    """Drop fraction of sampled masks equals p within 5 s.e. over maps x blocks x p."""
    like = torch.empty((), dtype=torch.float64)
    g = _gen(1)
    for (H, W), block, p in GRID:
        planes = max(400, 40_000 // (H * W))
        bs = block if isinstance(block, tuple) else (block, block)
        draw = SlidingBlocks2d(p, bs).draw((planes,), (H, W), generator=g, dtype=like.dtype,
                                           method=method)
        mask = draw.mask(torch.ones((), dtype=like.dtype))
        frac = (mask == 0).to(torch.float64).mean((1, 2))
        se = frac.std() / math.sqrt(planes)
        assert abs(float(frac.mean()) - p) <= 5 * float(se) + 1e-12, (H, W, block, p, method)


@pytest.mark.parametrize(("method"), ["sparse", "dense"])
@pytest.mark.parametrize(("shape", "block", "p"), [((4, 5), (2, 3), 0.4), ((3, 3), 2, 0.2),
                                                   ((5, 5), 3, 0.6)])
def test_sampled_masks_follow_the_exact_2d_law(method, shape, block, p) -> None:
    """Per-position keep rate, E[output]/input = 1 and E[z z^T] against the law, 5 s.e."""
    law = SlidingBlocks2d(p, block)
    H, W = shape
    n = 30_000
    like = torch.empty((), dtype=torch.float64)
    draw = law.draw((n,), shape, generator=_gen(2), dtype=like.dtype, method=method)
    scaled = draw.mask(law.inverse_mean(shape)).reshape(n, -1)
    mu = law.mean(shape).reshape(-1)
    torch.testing.assert_close(scaled.max(0).values, 1 / mu, rtol=1e-15, atol=0)
    z = (scaled > 0).to(torch.float64)
    assert _within(z.mean(0), mu, z.std(0) / math.sqrt(n))
    assert _within(scaled.mean(0), torch.ones_like(mu), scaled.std(0) / math.sqrt(n))
    prods = z[:, :, None] * z[:, None, :]
    assert _within(prods.mean(0), law.second_moment(shape), prods.std(0) / math.sqrt(n))


def test_drop_block2d_layer_drop_fraction_and_mean_on_anchor_setting() -> None:
    x = torch.ones(16, 32, 14, 14)
    y = DF.drop_block2d(x, 0.3, 7, generator=_gen(3))
    per_plane = (y == 0).float().mean((2, 3)).flatten().double()
    se = per_plane.std() / math.sqrt(per_plane.numel())
    assert abs(float(per_plane.mean()) - 0.3) <= 5 * float(se)
    m = y.double().mean((2, 3)).flatten()
    assert abs(float(m.mean()) - 1.0) <= 5 * float(m.std()) / math.sqrt(m.numel())


def test_share_channels_and_block_larger_than_map() -> None:
    x = torch.ones(8, 5, 6, 6)
    y = DF.drop_block2d(x, 0.5, 3, share_channels=True, generator=_gen(4))
    assert bool((y == y[:, :1]).all())
    y = DF.drop_block2d(x, 0.5, 9, generator=_gen(5))  # one block covers the map
    flat = y.reshape(40, -1)
    assert bool(((flat == 0).all(1) | (flat == 2.0).all(1)).all())


@settings(max_examples=25, deadline=None)
@given(n=st.integers(0, 3), c=st.integers(1, 3), h=st.integers(1, 9), w=st.integers(1, 9),
       bh=st.integers(1, 10), bw=st.integers(1, 10), p=st.floats(0.0, 1.0),
       dtype=st.sampled_from([torch.float32, torch.float64, torch.bfloat16]))
def test_drop_block2d_shapes_and_values(n, c, h, w, bh, bw, p, dtype) -> None:
    x = torch.ones(n, c, h, w, dtype=dtype)
    y = DF.drop_block2d(x, p, (bh, bw), generator=_gen(6))
    assert y.shape == x.shape and y.dtype == dtype
    assert bool(torch.isfinite(y).all()) and bool((y >= 0).all())
    if 0 < p < 1 and n > 0:
        scale = (1 / SlidingBlocks2d(p, (bh, bw)).mean((h, w))).to(dtype)
        assert bool(((y == 0) | (y == scale)).all())


# --------------------------------------------------------------------------- DropBlock1d


@pytest.mark.parametrize("shape", [(4000, 9), (800, 5, 9)])
@pytest.mark.parametrize("fixed", [False, True])
def test_drop_block1d_follows_its_law(shape, fixed) -> None:
    p, k = 0.35, 3
    law = (Blocks if fixed else SlidingBlocks)(p, k)
    y = DF.drop_block1d(torch.ones(shape, dtype=torch.float64), p, k, fixed_blocks=fixed,
                        generator=_gen(7)).reshape(-1, 9)
    n = y.shape[0]
    z = (y > 0).to(torch.float64)
    assert _within(z.mean(0), law.mean(9), z.std(0) / math.sqrt(n))
    assert _within(y.mean(0), torch.ones(9, dtype=torch.float64), y.std(0) / math.sqrt(n))
    prods = z[:, :, None] * z[:, None, :]
    assert _within(prods.mean(0), law.second_moment(9), prods.std(0) / math.sqrt(n))


def test_drop_block1d_share_channels() -> None:
    y = DF.drop_block1d(torch.ones(6, 4, 10), 0.5, 2, share_channels=True, generator=_gen(8))
    assert bool((y == y[:, :1]).all())


# --------------------------------------------------------------------------- semantics

LAYERS = [
    lambda: Dropout(0.3),
    lambda: GaussianDropout(0.3),
    lambda: DropBlock1d(0.3, 3),
    lambda: DropBlock1d(0.3, 3, fixed_blocks=True),
    lambda: DropBlock2d(0.3, 3),
    lambda: MaskDropout(SlidingBlocks(0.3, 2)),
]


@pytest.mark.parametrize("make", LAYERS)
def test_eval_and_p_zero_are_identity(make) -> None:
    x = torch.randn(4, 3, 6, 6) if isinstance(make(), DropBlock2d) else torch.randn(4, 3, 6)
    layer = make()
    assert layer.eval()(x) is x
    layer.train()
    layer.p = 0.0
    out = layer(x)
    assert out is x or torch.equal(out, x)


@pytest.mark.parametrize("make", [m for m in LAYERS][:1] + LAYERS[2:])
def test_p_one_gives_zeros_without_nan(make) -> None:
    layer = make()
    layer.p = 1.0
    x = torch.randn(4, 3, 6, 6) if isinstance(layer, DropBlock2d) else torch.randn(4, 3, 6)
    x.requires_grad_(True)
    y = layer(x)
    assert torch.equal(y, torch.zeros_like(y))
    y.sum().backward()
    assert torch.equal(x.grad, torch.zeros_like(x))


def test_drop_connect_p_one_and_zero() -> None:
    lin = DropConnectLinear(4, 3, p=1.0)
    x = torch.randn(5, 4)
    torch.testing.assert_close(lin(x), lin.bias.expand(5, 3))
    lin.p = 0.0
    torch.testing.assert_close(lin(x), torch.nn.functional.linear(x, lin.weight, lin.bias))
    lin.p = 0.5
    lin.eval()
    torch.testing.assert_close(lin(x), torch.nn.functional.linear(x, lin.weight, lin.bias))


@pytest.mark.parametrize("fn", [
    lambda x, g: DF.dropout(x, 0.4, generator=g),
    lambda x, g: DF.gaussian_dropout(x, 0.4, generator=g),
    lambda x, g: DF.drop_block2d(x, 0.3, 3, generator=g),
    lambda x, g: DF.drop_block2d(x, 0.3, 2, share_channels=True, generator=g),
    lambda x, g: DF.drop_block1d(x.reshape(2, 3, -1), 0.3, 3, generator=g),
    lambda x, g: DF.mask_dropout(x, KeepExactly(2), generator=g),
])
def test_deterministic_given_generator(fn) -> None:
    x = torch.randn(2, 3, 5, 5)
    assert torch.equal(fn(x, _gen(9)), fn(x, _gen(9)))
    assert not torch.equal(fn(x, _gen(9)), fn(x, _gen(10)))


@pytest.mark.parametrize("fn", [
    lambda x, g: DF.dropout(x, 0.4, generator=g),
    lambda x, g: DF.gaussian_dropout(x, 0.4, generator=g),
    lambda x, g: DF.drop_block2d(x, 0.3, 2, generator=g),
    lambda x, g: DF.drop_block1d(x.reshape(2, 3, -1), 0.3, 3, fixed_blocks=True, generator=g),
    lambda x, g: DF.mask_dropout(x, Gaussian(0.3), generator=g),
])
def test_gradcheck(fn) -> None:
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: fn(t, _gen(11)), (x,))


def test_gradcheck_drop_connect() -> None:
    x = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 4, dtype=torch.float64, requires_grad=True)
    b = torch.randn(2, dtype=torch.float64, requires_grad=True)
    for per_example in (False, True):
        assert torch.autograd.gradcheck(
            lambda x, w, b, pe=per_example: DF.drop_connect_linear(
                x, w, b, 0.4, per_example=pe, generator=_gen(12), max_mask_elements=8),
            (x, w, b))
    xc = torch.randn(2, 2, 4, 4, dtype=torch.float64, requires_grad=True)
    wc = torch.randn(3, 2, 2, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda x, w: DF.drop_connect_conv2d(x, w, None, 0.4, per_example=True,
                                            generator=_gen(13)), (xc, wc))


def test_torch_compile_drop_block2d() -> None:
    layer = DropBlock2d(0.2, 3)
    compiled = torch.compile(layer, backend="aot_eager")
    x = torch.ones(4, 2, 8, 8, requires_grad=True)
    y = compiled(x)
    scale = (1 / SlidingBlocks2d(0.2, 3).mean((8, 8))).float()
    assert bool(((y == 0) | (y == scale)).all())
    y.sum().backward()
    torch.testing.assert_close(x.grad, y.detach())
    assert compiled.eval()(x) is not None


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("g++") is None and shutil.which("c++") is None,
                    reason="inductor on CPU needs a C++ compiler")
def test_torch_compile_inductor_dropout_layers() -> None:
    layer = torch.nn.Sequential(DropBlock2d(0.2, 3), GaussianDropout(0.1))
    compiled = torch.compile(layer)
    x = torch.ones(4, 2, 8, 8, requires_grad=True)
    y = compiled(x)
    assert y.shape == x.shape and bool(torch.isfinite(y).all())
    y.sum().backward()
    assert x.grad.shape == x.shape


def test_extra_repr() -> None:
    assert repr(DropBlock2d(0.1, 7)) == "DropBlock2d(p=0.1, block_size=7, share_channels=False)"
    assert "fixed_blocks=True" in repr(DropBlock1d(0.1, 2, fixed_blocks=True))
    assert repr(Dropout(0.25)) == "Dropout(p=0.25)"
    assert "p=0.2, per_example=True" in repr(DropConnectLinear(3, 2, p=0.2, per_example=True))
    assert "p=0.2" in repr(DropConnectConv2d(3, 2, 3, p=0.2))
    assert "KeepExactly(keep=2)" in repr(MaskDropout(KeepExactly(2)))


def test_dtype_preserved() -> None:
    for dtype in (torch.float16, torch.bfloat16, torch.float64):
        x = torch.ones(2, 3, 6, 6, dtype=dtype)
        for layer in (Dropout(0.3, generator=_gen()), DropBlock2d(0.3, 3), GaussianDropout(0.3),
                      DropBlock1d(0.3, 2)):
            assert layer(x if not isinstance(layer, DropBlock1d) else x[:, :, 0]).dtype == dtype


# --------------------------------------------------------------------------- DropConnect


def test_drop_connect_linear_moments_per_batch_and_per_example() -> None:
    g = _gen(14)
    w = torch.randn(3, 5, dtype=torch.float64, generator=g)
    x = torch.randn(1, 5, dtype=torch.float64, generator=g).expand(4000, 5)
    p = 0.4
    lam = p / (1 - p)
    exact_mean = x[0] @ w.T
    exact_var = lam * (w**2) @ (x[0] ** 2)
    y = DF.drop_connect_linear(x, w, None, p, per_example=True, generator=g,
                               max_mask_elements=1000)
    n = y.shape[0]
    assert _within(y.mean(0), exact_mean, y.std(0) / math.sqrt(n))
    # variance within 5 s.e. (s.e. of the sample variance from the fourth central moment)
    c = y - y.mean(0)
    se_var = ((c**4).mean(0) - (c**2).mean(0) ** 2).sqrt() / math.sqrt(n)
    assert _within((c**2).mean(0), exact_var, se_var)
    y_batch = DF.drop_connect_linear(x, w, None, p, generator=g)
    assert bool((y_batch == y_batch[:1]).all())  # one mask for the batch


def test_drop_connect_conv2d_per_example_mean() -> None:
    g = _gen(15)
    w = torch.randn(2, 2, 3, 3, dtype=torch.float64, generator=g)
    x1 = torch.randn(1, 2, 5, 5, dtype=torch.float64, generator=g)
    x = x1.expand(3000, 2, 5, 5)
    b = torch.randn(2, dtype=torch.float64, generator=g)
    y = DF.drop_connect_conv2d(x, w, b, 0.3, padding=1, per_example=True, generator=g,
                               max_mask_elements=500)
    exact = torch.nn.functional.conv2d(x1, w, b, padding=1)[0]
    assert _within(y.mean(0), exact, y.std(0) / math.sqrt(y.shape[0]))
    assert not torch.equal(y[0], y[1])
    layer = DropConnectConv2d(2, 2, 3, p=0.3, padding="same", dtype=torch.float64,
                              per_example=True)
    assert layer(x[:4]).shape == (4, 2, 5, 5)
    assert layer(x[:0]).shape == (0, 2, 5, 5)
    assert DropConnectLinear(5, 2, per_example=True)(torch.ones(0, 5)).shape == (0, 2)


def test_mask_dropout_unbiased() -> None:
    law = Custom(torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0], [1.0, 1.0, 0.0]]),
                 torch.tensor([0.5, 0.25, 0.25], dtype=torch.float64))
    y = DF.mask_dropout(torch.ones(20_000, 3, dtype=torch.float64), law, generator=_gen(16))
    assert _within(y.mean(0), torch.ones(3, dtype=torch.float64), y.std(0) / math.sqrt(20_000))
    y2 = DF.mask_dropout(torch.ones(5, 4, 6, dtype=torch.float64), SlidingBlocks2d(0.3, 2),
                         generator=_gen(17))
    assert y2.shape == (5, 4, 6)


# --------------------------------------------------------------------------- schedule


def test_drop_rate_warmup() -> None:
    model = torch.nn.Sequential(DropBlock2d(0.2, 3), torch.nn.Dropout(0.5),
                                MaskDropout(KeepExactly(2)), MaskDropout(Blocks(0.6, 2)))
    sched = DropRateWarmup(model, 4, include_torch_dropout=True)
    assert (model[0].p, model[1].p, model[3].p) == (0.0, 0.0, 0.0)
    ps = []
    for _ in range(6):
        sched.step()
        ps.append(model[0].p)
    assert ps == pytest.approx([0.05, 0.1, 0.15, 0.2, 0.2, 0.2])
    assert model[3].law == Blocks(0.6, 2) and model[1].p == 0.5
    state = sched.state_dict()
    model2 = torch.nn.Sequential(DropBlock2d(0.2, 3))
    s2 = DropRateWarmup(model2, 4, stop=0.4)
    s2.load_state_dict({"last_step": 2, "start": 0.0, "warmup_steps": 4, "targets": {"0": 0.4}})
    assert model2[0].p == pytest.approx(0.2)
    assert state["last_step"] == 6
    with pytest.raises(ValueError, match="warmup_steps"):
        DropRateWarmup(model, -1)
    with pytest.raises(ValueError, match="no dropreg layer"):
        DropRateWarmup(torch.nn.Linear(2, 2), 3)
    with pytest.raises(ValueError, match="stop must be in"):
        DropRateWarmup(model, 3, stop=1.5)


# --------------------------------------------------------------------------- errors


def test_errors_name_argument_and_range() -> None:
    x4 = torch.randn(2, 3, 4, 4)
    with pytest.raises(ValueError, match=r"p must be in \[0, 1\], got 1.5"):
        DF.drop_block2d(x4, 1.5, 3)
    with pytest.raises(ValueError, match=r"p must be in \[0, 1\], got -0.1"):
        DropBlock2d(-0.1, 3)
    with pytest.raises(ValueError, match=r"p must be in \[0, 1\)"):
        GaussianDropout(1.0)
    with pytest.raises(TypeError, match="p must be a real number"):
        Dropout("0.1")
    with pytest.raises(ValueError, match="block_size must be an int >= 1"):
        DF.drop_block2d(x4, 0.1, 0)
    with pytest.raises(TypeError, match="block_size must be an int"):
        DropBlock2d(0.1, 2.5)
    with pytest.raises(TypeError, match="block_size must be an int"):
        DF.drop_block1d(torch.randn(2, 5), 0.1, 1.0)
    with pytest.raises(ValueError, match="ndim 4, got ndim 3"):
        DF.drop_block2d(torch.randn(3, 4, 4), 0.1, 3)
    with pytest.raises(ValueError, match="ndim 2 or 3, got ndim 4"):
        DF.drop_block1d(x4, 0.1, 3)
    with pytest.raises(TypeError, match="floating-point dtype"):
        DF.drop_block2d(torch.ones(2, 3, 4, 4, dtype=torch.int64), 0.1, 3)
    with pytest.raises(TypeError, match="floating-point dtype"):
        Dropout(0.1)(torch.ones(3, dtype=torch.int32))
    with pytest.raises(ValueError, match="max_mask_elements"):
        DF.drop_connect_linear(torch.ones(2, 3), torch.ones(2, 3), None, 0.5, per_example=True,
                               max_mask_elements=0)
    with pytest.raises(TypeError, match="law"):
        MaskDropout("bernoulli")
    layer = DropBlock2d(0.1, 3)
    with pytest.raises(ValueError, match="p must be in"):
        layer.p = 2.0


def _packed_reference_masks(seed: int, m: int, out_f: int, in_f: int, p: float) -> torch.Tensor:
    """Scaled keep masks ``(m, out_f, in_f)`` of one chunk, unpacked by hand from the documented
    layout: complement of ``bernoulli_bits(p)`` drop bits, rows padded to whole bytes."""
    row = 8 * -(-in_f // 8)
    words = bernoulli_bits(m * out_f * row, p, generator=torch.Generator().manual_seed(seed))
    keep = ~unpack_bits(words, m * out_f * row)
    return keep.view(m, out_f, row)[..., :in_f].to(torch.float64) / (1 - p)


@pytest.mark.parametrize("bound", [40, 120])  # 3 chunks (re-drawn) / 1 chunk (bits kept)
def test_per_example_chunks_match_unchunked_and_bound_saved_memory(bound: int) -> None:
    """Chunked per-example DropConnect: the values and gradients of the masks unpacked by hand
    from each chunk's seed, and the graph keeps no (chunk, out, in) float mask."""
    x = torch.randn(6, 5, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    y = DF.drop_connect_linear(x, w, None, 0.5, per_example=True, generator=_gen(20),
                               max_mask_elements=bound)
    gx, gw = torch.autograd.grad(y.square().sum(), (x, w))
    per = bound // 20  # examples per chunk
    seeds = torch.randint(0, 2**62, (6 // per,), generator=_gen(20)).tolist()
    ref = []
    for i, s in enumerate(seeds):
        m = _packed_reference_masks(s, per, 4, 5, 0.5)
        ref.append(torch.bmm(w * m, x[per * i:per * i + per, :, None])[..., 0])
    ref = torch.cat(ref)
    torch.testing.assert_close(y, ref)
    rx, rw = torch.autograd.grad(ref.square().sum(), (x, w))
    torch.testing.assert_close(gx, rx)
    torch.testing.assert_close(gw, rw)
    # saved tensors: no (chunk, out, in) float mask survives forward (bits are uint8)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        DF.drop_connect_linear(x, w, None, 0.5, per_example=True, generator=_gen(20),
                               max_mask_elements=bound)
    assert all(t.ndim < 3 or t.dtype == torch.uint8 for t in saved), [t.shape for t in saved]
    # one chunk: its bits are kept, 1 byte per 8 entries of a row (6 x 4 rows of 5 entries);
    # several chunks: only the seeds (re-drawn in the backward)
    kept = sum(t.numel() for t in saved if t.dtype == torch.uint8)
    assert kept == (6 * 4 * 1 if bound >= 120 else 0)


def test_per_example_drop_connect_blocks_and_double_backward(monkeypatch) -> None:
    """Blocks smaller than an example (rows split) and than a chunk (examples split) give the
    same numbers; odd ``in_features`` (padded rows); the backward of the backward (HVP) equals
    autograd's on the hand-unpacked masks."""
    x = torch.randn(5, 11, dtype=torch.float64, requires_grad=True)
    w = torch.randn(7, 11, dtype=torch.float64, requires_grad=True)
    p = 0.3
    seeds = torch.randint(0, 2**62, (1,), generator=_gen(23)).tolist()
    m = _packed_reference_masks(seeds[0], 5, 7, 11, p)
    ref = torch.bmm(w * m, x[..., None])[..., 0]
    r = torch.autograd.grad(ref.pow(3).sum(), (x, w))
    for block in (2**18, 40, 16, 8):  # whole chunk, 2 examples, 1 row-pair, 1 row per block
        monkeypatch.setattr(DF, "BLOCK_ENTRIES", block)
        y = DF.drop_connect_linear(x, w, None, p, per_example=True, generator=_gen(23))
        torch.testing.assert_close(y, ref.detach())
        g = torch.autograd.grad(y.pow(3).sum(), (x, w))
        torch.testing.assert_close(g, r)
    v = (torch.randn_like(x), torch.randn_like(w))

    def hvp(f):
        g = torch.autograd.grad(f().pow(3).sum(), (x, w), create_graph=True)
        return torch.autograd.grad(sum((a * b).sum() for a, b in zip(g, v)), (x, w))

    torch.testing.assert_close(
        hvp(lambda: DF.drop_connect_linear(x, w, None, p, per_example=True, generator=_gen(23))),
        hvp(lambda: torch.bmm(w * m, x[..., None])[..., 0]))


def test_sparse_sampler_chunked_at_high_rate(monkeypatch: pytest.MonkeyPatch) -> None:
    """Index chunking (forced small) keeps the law: drop fraction p within 5 s.e."""
    monkeypatch.setattr(dropreg.masks.sliding, "INDEX_CHUNK", 200)
    p = 0.95
    draw = SlidingBlocks2d(p, 3).draw((1000,), (9, 9), generator=_gen(21), method="sparse")
    assert len(draw.indices) > 1
    mask = draw.mask(torch.ones((), dtype=torch.float64))
    frac = (mask == 0).to(torch.float64).mean((1, 2))
    assert abs(float(frac.mean()) - p) <= 5 * float(frac.std()) / math.sqrt(1000)
    assert SlidingBlocks2d(0.1, [2, 3]).block_size == (2, 3)


def test_fused_path_equals_mask_path_and_handles_layouts() -> None:
    """The fused (multiply then zero) path gives input * mask for the same draw, for contiguous,
    channels-last and non-contiguous inputs, and gradient = mask."""
    x = torch.randn(3, 4, 9, 7, dtype=torch.float64)
    mask = SlidingBlocks2d(0.3, (3, 2)).sample_scaled((3, 4), (9, 7), generator=_gen(22),
                                                       dtype=x.dtype)
    for inp in (x, x.to(memory_format=torch.channels_last),
                x.transpose(2, 3).contiguous().transpose(2, 3)):
        inp = inp.clone().requires_grad_(True)
        y = DF.drop_block2d(inp, 0.3, (3, 2), generator=_gen(22))
        torch.testing.assert_close(y, x * mask, rtol=0, atol=0)
        y.backward(torch.ones_like(y))
        torch.testing.assert_close(inp.grad, mask, rtol=0, atol=0)


def test_fused_path_double_backward() -> None:
    x = torch.randn(2, 2, 5, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradgradcheck(
        lambda t: DF.drop_block2d(t, 0.3, 2, generator=_gen(23)) ** 2, (x,))
