"""Curvature and analytic tools on the model zoo (BN ResNet, transformer, weight-dropped LSTM,
DropConnect head, MLP), in train and eval mode, in every dropout state and any call order.

References are plain autograd on a deterministic copy of the model: dropout off (clean) or the
same masks applied by ordinary modules (fixed), BatchNorm in the policy of
``dropreg.sites.frozen_statistics`` (train mode: batch statistics, no running-statistics update).
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call
from torch.nn.attention import SDPBackend, sdpa_kernel

from dropreg._params import unflatten_params
from dropreg.analytic import (
    dropout_gradient,
    explicit_regularizer,
    monte_carlo_dropout_gap,
    xi_approx,
)
from dropreg.curvature import (
    DropoutRisk,
    HessianOperator,
    dropout_gradient_noise,
    interval_flatness,
    noise_alignment,
    sample_masks,
    sharpness,
    spectral_density,
    stochastic_trace,
    top_eigenpairs,
)
from dropreg.sites import attention_forward, dropout_sites

NAMES = ["resnet", "transformer", "lstm", "dropconnect", "mlp"]
MODES = ["eval", "train"]
CASES = [(n, m) for n in NAMES for m in MODES]
ce = F.cross_entropy


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _reference(model: nn.Module, masks: dict | None) -> nn.Module:
    """A copy of ``model`` whose sites apply ``masks`` (or nothing) by plain modules."""
    ref = copy.deepcopy(model)
    sites = {s.name: s for s in dropout_sites(ref)}
    for name, site in sites.items():
        m = site.module
        mask = None if masks is None else masks[name]
        if site.kind == "attention":
            m.forward = (lambda *a, m=m, z=mask, **k:
                         attention_forward(m, (lambda t: t) if z is None else (lambda t: t * z),
                                           *a, **k))
        elif site.kind == "weight" and isinstance(m, nn.Linear):
            m.forward = (lambda x, m=m, z=mask:
                         F.linear(x, m.weight if z is None else m.weight * z, m.bias))
        else:
            m.forward = (lambda x, z=mask: x) if mask is None else (lambda x, z=mask: x * z)
    for m in ref.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training:
            m.track_running_stats = False
    return ref


def _reference_hvp(ref: nn.Module, names, params, X, y, v):
    def f(*ps):
        return ce(functional_call(ref, dict(zip(names, ps)), (X,)), y)

    vs = tuple(unflatten_params(v, params).values())
    with sdpa_kernel(SDPBackend.MATH):
        _, hv = torch.autograd.functional.hvp(f, tuple(params.values()), vs)
    return torch.cat([t.reshape(-1) for t in hv])


@pytest.mark.parametrize(("name", "mode"), CASES)
def test_clean_hvp_matches_autograd_reference(zoo, name, mode):
    model, X, y = zoo(name, mode)
    H = HessianOperator(model, ce, (X, y))
    v = torch.randn(H.num_params, generator=_gen(1), dtype=torch.float64)
    ref = _reference(model, None)
    want = _reference_hvp(ref, list(H.params), H.params, X, y, v)
    for op in (H, HessianOperator(model, ce, (X, y), method="forward-over-reverse")):
        got = op.matvec(v)
        assert float((got - want).norm()) <= 1e-10 * float(want.norm())
    if mode == "eval":  # torch's own eval-mode model is the reference too
        def f(*ps):
            return ce(functional_call(model, dict(zip(H.params, ps)), (X,)), y)

        with sdpa_kernel(SDPBackend.MATH):
            _, hv = torch.autograd.functional.hvp(f, tuple(H.params.values()),
                                                  tuple(unflatten_params(v, H.params).values()))
        eager = torch.cat([t.reshape(-1) for t in hv])
        assert float((H.matvec(v) - eager).norm()) <= 1e-10 * float(eager.norm())


@pytest.mark.parametrize(("name", "mode"), CASES)
def test_fixed_mask_hvp_matches_copy_applying_the_masks(zoo, name, mode):
    model, X, y = zoo(name, mode)
    masks = sample_masks(model, X, 1, generator=_gen(2))[0]
    H = HessianOperator(model, ce, (X, y), dropout=masks)
    v = torch.randn(H.num_params, generator=_gen(3), dtype=torch.float64)
    want = _reference_hvp(_reference(model, masks.masks), list(H.params), H.params, X, y, v)
    got = H.matvec(v)
    assert float((got - want).norm()) <= 1e-10 * float(want.norm())
    clean = HessianOperator(model, ce, (X, y)).matvec(v)
    assert float((got - clean).norm()) > 1e-6 * float(clean.norm())  # the masks do something


@pytest.mark.parametrize(("name", "mode"), CASES)
def test_any_call_order_gives_the_same_products_and_leaves_the_model_alone(zoo, name, mode):
    model, X, y = zoo(name, mode)
    before = {k: t.clone() for k, t in (*model.named_parameters(), *model.named_buffers())}
    H = HessianOperator(model, ce, (X, y))
    He = HessianOperator(DropoutRisk(model, ce, (X, y), dropout="expected", num_masks=2,
                                     generator=_gen(4)))
    v = torch.randn(H.num_params, generator=_gen(5), dtype=torch.float64)
    first, first_e = H.matvec(v), He.matvec(v)
    sample_masks(model, X, 2, generator=_gen(6))
    dropout_gradient_noise(model, ce, (X, y), 4, generator=_gen(7))
    with torch.no_grad():
        model(X)  # a forward pass of the user in the model's own mode
    if mode == "eval":
        for k, t in (*model.named_parameters(), *model.named_buffers()):
            assert torch.equal(t, before[k]), k
    with torch.no_grad():  # the user changes the model: the operators hold their snapshot
        for p in model.parameters():
            p.mul_(1.5)
    assert torch.equal(H.matvec(v), first)
    assert torch.equal(He.matvec(v), first_e)
    assert float((He.matvec(v) - first).norm()) > 0  # the expected state is not the clean one


@pytest.mark.parametrize(("name", "mode"), CASES)
def test_every_curvature_tool_runs_in_every_state(zoo, name, mode):
    model, X, y = zoo(name, mode)
    for dropout in ("clean", "fixed", "expected"):
        risk = DropoutRisk(model, ce, (X, y), dropout=dropout, num_masks=2, generator=_gen(8))
        H = HessianOperator(risk)
        top = top_eigenpairs(H, 2, 1e-4, generator=_gen(9))
        assert top.converged and float(top.eigenvalues[0]) > 0
        tr = stochastic_trace(risk, 8, generator=_gen(10))
        assert tr.stderr >= 0 and tr.num_matvecs == 8
        spectral_density(H, 1, 6, generator=_gen(11))
        s = sharpness(risk, trace_matvecs=6, generator=_gen(12))
        assert abs(s.lambda_max - float(top.eigenvalues[0])) <= 1e-3 * s.lambda_max
        d = torch.randn(risk.num_params, generator=_gen(13), dtype=torch.float64)
        assert interval_flatness(risk, d, max_alpha=10.0).width > 0
    noise = dropout_gradient_noise(model, ce, (X, y), 6, generator=_gen(14))
    res = noise_alignment(HessianOperator(model, ce, (X, y)), noise, k=2, generator=_gen(15))
    assert -1.0 <= res.cosine <= 1.0


@pytest.mark.parametrize(("name", "mode"), CASES)
def test_analytic_tools_run_or_refuse_weight_sites_by_name(zoo, name, mode):
    model, X, y = zoo(name, mode)
    before = {k: t.clone() for k, t in model.named_buffers()}
    has_weight_site = any(s.kind == "weight" for s in dropout_sites(model))
    gap = monte_carlo_dropout_gap(model, X, y, n_masks=20, generator=_gen(16))
    assert gap.value != 0.0 and gap.stderr > 0  # the sites fire, eval mode included
    g = dropout_gradient(model, X, y, generator=_gen(17))
    assert len(g) == len([p for p in model.parameters() if p.requires_grad])
    for estimator in ("gauss_newton", "sampled"):
        if has_weight_site:
            with pytest.raises(ValueError, match="masks a weight"):
                explicit_regularizer(model, X, y, estimator=estimator, generator=_gen(18))
        else:
            r = explicit_regularizer(model, X, y, estimator=estimator, generator=_gen(18))
            assert float(r) > 0
    if has_weight_site:
        with pytest.raises(ValueError, match="masks a weight"):
            xi_approx(model, X, y, generator=_gen(19))
    else:
        assert len(xi_approx(model, X, y, generator=_gen(19))) == len(g)
    for k, t in model.named_buffers():  # BatchNorm running statistics untouched, train included
        assert torch.equal(t, before[k]), k


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dropout", ["clean", "fixed", "expected"])
def test_data_loader_equals_in_memory(zoo, name, dropout):
    from torch.utils.data import DataLoader, TensorDataset

    model, X, y = zoo(name, "eval", n=7)
    loader = DataLoader(TensorDataset(X, y), batch_size=3, shuffle=False)
    kw = dict(dropout=dropout, num_masks=2)
    a = DropoutRisk(model, ce, (X, y), batch_size=3, generator=_gen(20), **kw)
    b = DropoutRisk(model, ce, loader, generator=_gen(20), **kw)
    v = torch.randn(a.num_params, generator=_gen(21), dtype=torch.float64)
    assert abs(a.loss() - b.loss()) <= 1e-12 * abs(a.loss())
    assert float((a.gradient() - b.gradient()).abs().max()) <= 1e-12
    ha, hb = HessianOperator(a).matvec(v), HessianOperator(b).matvec(v)
    assert float((ha - hb).abs().max()) <= 1e-12 * float(ha.abs().max())
    if dropout == "clean":  # batching does not change the per-example risk (eval-mode BN)
        whole = DropoutRisk(model, ce, (X, y))
        assert abs(whole.loss() - b.loss()) <= 1e-12 * whole.loss()
        hw = HessianOperator(whole).matvec(v)
        assert float((hw - hb).abs().max()) <= 1e-12 * float(hw.abs().max())


def test_noise_from_loader_equals_in_memory(zoo):
    from torch.utils.data import DataLoader, TensorDataset

    model, X, y = zoo("resnet", "eval", n=7)
    loader = DataLoader(TensorDataset(X, y), batch_size=3)
    a = dropout_gradient_noise(model, ce, (X, y), 5, batch_size=3, generator=_gen(22))
    b = dropout_gradient_noise(model, ce, loader, 5, generator=_gen(22))
    assert float((a.samples - b.samples).abs().max()) <= 1e-12


def test_expected_state_stacked_and_looped_are_both_the_expected_loss(zoo):
    model, X, y = zoo("mlp", "eval")
    stacked = DropoutRisk(model, ce, (X, y), dropout="expected", num_masks=400,
                          generator=_gen(23))
    looped = DropoutRisk(model, ce, (X, y), dropout="expected", num_masks=400,
                         generator=_gen(24), stack_masks=False)
    assert stacked.stack and not looped.stack
    # two independent estimates of E[loss] over 400 mask sets: agree within sampling error
    per = torch.tensor([DropoutRisk(model, ce, (X, y), dropout="fixed", generator=_gen(s)).loss()
                        for s in range(40)], dtype=torch.float64)
    se = float(per.std()) / 400**0.5
    assert abs(stacked.loss() - looped.loss()) <= 5 * 2**0.5 * se


def test_train_mode_bn_is_the_batch_statistics_hessian_and_depends_on_batches(zoo):
    model, X, y = zoo("resnet", "train", n=8)
    whole = DropoutRisk(model, ce, (X, y))
    halves = DropoutRisk(model, ce, (X, y), batch_size=4)
    assert abs(whole.loss() - halves.loss()) > 1e-6  # batch statistics: batching matters
    with torch.no_grad():
        ref = ce(_reference(model, None)(X), y).item()
    assert abs(whole.loss() - ref) <= 1e-12 * ref
    with pytest.raises(ValueError, match="BatchNorm in training mode"):
        DropoutRisk(model, ce, (X, y), dropout="expected", num_masks=2, stack_masks=True)


def test_attention_forward_matches_torch_with_masks_and_padding():
    g = _gen(25)
    mha = nn.MultiheadAttention(6, 2, dropout=0.3).double().eval()
    q = torch.randn(4, 3, 6, generator=g, dtype=torch.float64)  # (L, N, E)
    k = torch.randn(5, 3, 6, generator=g, dtype=torch.float64)
    attn_mask = torch.rand(4, 5, generator=g) < 0.2
    kpm = torch.zeros(3, 5, dtype=torch.bool)
    kpm[0, -1] = True
    out, w = attention_forward(mha, lambda a: a, q, k, k, key_padding_mask=kpm,
                               attn_mask=attn_mask)
    want, ww = mha(q, k, k, key_padding_mask=kpm, attn_mask=attn_mask)
    assert float((out - want).abs().max()) <= 1e-12
    assert float((w - ww).abs().max()) <= 1e-12
    kv = nn.MultiheadAttention(6, 2, dropout=0.3, add_bias_kv=True)
    with pytest.raises(ValueError, match="add_bias_kv"):
        attention_forward(kv, lambda a: a, q.float(), k.float(), k.float(), name="attn")


def test_determinism_guard_names_uncontrolled_modules():
    g = _gen(26)
    X, y = torch.randn(6, 4, generator=g, dtype=torch.float64), torch.randint(0, 3, (6,))
    net = nn.Sequential(nn.Linear(4, 5), nn.AlphaDropout(0.3), nn.Linear(5, 3)).double()
    with pytest.raises(ValueError, match=r"1 \(AlphaDropout\)"):
        HessianOperator(net, ce, (X, y))
    lstm = nn.Sequential(nn.LSTM(4, 5, num_layers=2, dropout=0.5, batch_first=True),
                         _First(), nn.Linear(5, 3)).double()
    with pytest.raises(ValueError, match=r"0 \(LSTM\)"):
        DropoutRisk(lstm, ce, (X[:, None, :].expand(6, 2, 4).contiguous(), y))
    net.eval()  # in eval mode nothing is random
    HessianOperator(net, ce, (X, y))


class _First(nn.Module):
    def forward(self, out):
        return out[0][:, -1]


def test_small_cases_raise_clear_errors(zoo):
    model, X, y = zoo("mlp", "eval")
    with pytest.raises(ValueError, match="reduction='mean'"):
        HessianOperator(model, lambda o, t: F.cross_entropy(o, t, reduction="none"), (X, y))
    with pytest.raises(TypeError, match="data"):
        HessianOperator(model, ce, ([[0.0] * 4] * 6, y))
    bad = X.clone()
    bad[1, 2] = float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        HessianOperator(model, ce, (bad, y))
    with pytest.raises(TypeError, match="one-shot iterator"):
        DropoutRisk(model, ce, iter([(X, y)]))
    H = HessianOperator(model, ce, (X, y))
    with pytest.raises(ValueError, match="non-zero start vector"):
        top_eigenpairs(H, v0=torch.zeros(H.num_params, dtype=torch.float64))
    with pytest.raises(ValueError, match="symmetric"):
        top_eigenpairs(torch.tensor([[1.0, 2.0], [0.0, 1.0]], dtype=torch.float64))
    plain = nn.Sequential(nn.Linear(4, 3)).double()
    with pytest.raises(ValueError, match="needs dropout sites"):
        DropoutRisk(plain, ce, (X, y), dropout="expected")
    with pytest.raises(ValueError, match="no dropout site"):
        explicit_regularizer(plain, X, y, estimator="gauss_newton")
    with pytest.raises(ValueError, match="no dropout site"):
        explicit_regularizer(plain, X, y)
    with pytest.raises(ValueError, match="no dropout site"):
        monte_carlo_dropout_gap(plain, X, y, n_masks=4, generator=_gen(27))
    with pytest.raises(ValueError, match="no dropout site"):
        dropout_gradient_noise(plain, ce, (X, y), 4, generator=_gen(28))


def test_fallback_keeps_the_first_error_and_catches_only_torch_func_failures(zoo):
    model, X, y = zoo("mlp", "eval")

    class NoForwardAD(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return torch.tanh(x)

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return g * (1 - torch.tanh(x) ** 2)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(4, 5), nn.Linear(5, 3)

        def forward(self, x):
            return self.b(NoForwardAD.apply(self.a(x)))

    net = Net().double()
    H = HessianOperator(net, ce, (X, y), batch_size=3)  # two pieces: no cached graph
    v = torch.randn(H.num_params, generator=_gen(29), dtype=torch.float64)
    H.matvec(v)
    assert H.method == "double-backward" and H.fallback_error is not None

    def broken(out, t):
        raise KeyError("a bug in the loss")

    with pytest.raises(KeyError, match="a bug in the loss"):
        HessianOperator(model, broken, (X, y))
