"""Constructions and rescalings of Helmbold & Long (2017) vs exact enumeration (digest §B.8)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dropreg.relu import (
    StandardNet,
    all_patterns,
    best_output_scale,
    dropout_criterion,
    dropout_output,
    dropout_penalty,
    expected_dropout_output,
    figure1_example,
    fit_dropout_criterion,
    lemma10_criterion,
    linear_layers,
    monotone_target,
    num_dropout_nodes,
    rescale_inputs,
    rescale_layers,
    rescale_output,
    risk,
    theorem17_w_neg,
    theorem18_penalty,
    theorem18_weight_decay,
    theorem18_weight_decay_bound,
    theorem18_witness,
    theorem20_witness,
    two_unit_penalty,
    w_neg,
    weight_decay_criterion,
)

pytestmark = pytest.mark.filterwarnings("ignore:Converting a tensor with requires_grad")


def test_b_t1_figure1():
    net, X, Y = figure1_example()
    assert float(dropout_criterion(net, X, Y, 0.5)) == 54.0
    assert float(risk(net, X, Y)) == 64.0
    assert float(dropout_penalty(net, X, Y, 0.5)) == -10.0
    # "only 3 patterns give a non-zero output (one gives 8, two give 4)"
    D = dropout_output(net, X, all_patterns(4), 0.5).flatten()
    assert sorted(D[D != 0].tolist()) == [4.0, 4.0, 8.0]


@pytest.mark.parametrize("p", [0.1, 0.3, 0.5, 0.7, 0.9])
def test_b6_table_closed_form_matches_enumeration(p):
    net, X, Y = figure1_example()
    assert abs(float(dropout_penalty(net, X, Y, p)) - two_unit_penalty(p, 8.0)) < 1e-10


@pytest.mark.parametrize("K,n,d,y,want", [(2, 2, 2, 3.0, 11.25), (2, 2, 3, 5.0, 59.375),
                                          (2, 3, 3, 1.0, 1.0 + 2.0 / 3.0)])
def test_b_t2_theorem18(K, n, d, y, want):
    net, X, Y = theorem18_witness(K, n, d, y)
    assert abs(float(risk(net, X, Y))) < 1e-20
    jd = float(dropout_criterion(net, X, Y, 0.5))
    assert abs(jd - want) < 1e-9 and abs(theorem18_penalty(K, n, d, y) - want) < 1e-12
    assert jd >= y * y / K


@pytest.mark.parametrize("p,want", [(0.2, 0.423828125), (0.5, 2.375), (0.8, 26.0)])
def test_b_t13_theorem18_general_p(p, want):
    net, X, Y = theorem18_witness(2, 2, 3, 1.0)
    assert abs(float(dropout_criterion(net, X, Y, p)) - want) < 1e-9
    assert abs(theorem18_penalty(2, 2, 3, 1.0, p) - want) < 1e-12


def test_theorem18_monte_carlo_deep(generator):
    net, X, Y = theorem18_witness(4, 4, 6, 1.0)      # 20 enumerated nodes: also exact
    mc = dropout_criterion(net, X, Y, 0.5, method="monte_carlo", samples=20000,
                           generator=generator)
    assert abs(float(mc) - theorem18_penalty(4, 4, 6, 1.0)) <= 5 * mc.stderr


@pytest.mark.parametrize("K,n,d,y", [(2, 2, 2, 4.0), (2, 3, 4, 7.0), (3, 2, 3, 2.0)])
def test_theorem18_weight_decay(K, n, d, y):
    net, X, Y = theorem18_witness(K, n, d, y)
    got = float(weight_decay_criterion(net, X, Y, 0.3))
    assert abs(got - theorem18_weight_decay(K, n, d, y, 0.3)) < 1e-12 * got
    assert got <= theorem18_weight_decay_bound(K, n, d, y, 0.3)


def test_b_t6_theorem20():
    for y in (0.0, 1.0, 5.0):
        net, X, Y = theorem20_witness(y)
        assert float(dropout_penalty(net, X, Y, 0.5)) == 6.0 - 2.0 * y
    net, X, _ = theorem20_witness()
    for p in (0.2, 0.6):
        slope = -2 * (float(expected_dropout_output(net, X, p)) - float(net(X)))
        assert abs(slope - (-4 * p)) < 1e-12
        pen = [float(dropout_penalty(*theorem20_witness(y), p)) for y in (0.0, 1.0)]
        assert abs((pen[1] - pen[0]) - slope) < 1e-12


@pytest.mark.parametrize("K,n,d,want", [(2, 4, 2, 0.25), (4, 8, 2, 0.1875), (2, 4, 3, 0.3),
                                        (4, 8, 3, 2.0 / 9.0)])
def test_b_t7_lemma10(K, n, d, want):
    X, Y = monotone_target(K)
    assert abs(float(dropout_criterion(w_neg(K, n, d), X, Y, 0.5)) - want) < 1e-12
    assert abs(lemma10_criterion(K, n, d) - want) < 1e-12


def test_lemma9_first_layer_sums_to_n_over_K():
    net = w_neg(4, 8, 2)
    X = all_patterns(4)[1:]
    h = torch.relu(linear_layers(net)[0](X))
    assert torch.equal(h.sum(1), torch.full((15,), 2.0, dtype=torch.float64))


@pytest.mark.parametrize("n,want", [(4, 0.180), (16, 0.1267), (64, 0.1073), (256, 0.1019)])
def test_b_t8_theorem17(n, want):
    X, Y = monotone_target(2)
    assert abs(float(dropout_criterion(theorem17_w_neg(n), X, Y, 0.5)) - want) < 1e-3


def test_b_t9_nonnegative_nets_stay_above_one_eighth():
    X, Y = monotone_target(2)
    net = StandardNet(2, 2, 16, generator=torch.Generator().manual_seed(3))
    fit = fit_dropout_criterion(net, X, Y, steps=300, lr=0.03, nonnegative_weights=True)
    assert fit.n_negative_weights == 0 and fit.value >= 0.125


def _random_net():
    return StandardNet(2, 3, 2, generator=torch.Generator().manual_seed(1))


def _data():
    g = torch.Generator().manual_seed(2)
    return (torch.randn(4, 2, generator=g, dtype=torch.float64),
            torch.randn(4, 1, generator=g, dtype=torch.float64))


def test_b_t3_layer_rescaling():
    net, (X, Y) = _random_net(), _data()
    new = rescale_layers(net, [2.0, 0.25, 2.0])
    R = all_patterns(num_dropout_nodes(net))
    torch.testing.assert_close(dropout_output(new, X, R, 0.5), dropout_output(net, X, R, 0.5),
                               rtol=1e-12, atol=1e-12)
    a, b = float(dropout_criterion(net, X, Y)), float(dropout_criterion(new, X, Y))
    assert abs(a - b) <= 1e-12 * a
    sq = [sum(float((lin.weight**2).sum()) for lin in linear_layers(m)) for m in (net, new)]
    assert abs(sq[0] - sq[1]) > 0.1
    # product != 1: every output scaled by the product
    big = rescale_layers(net, [2.0, 3.0, 0.5])
    torch.testing.assert_close(dropout_output(big, X, R, 0.5), 3.0 * dropout_output(net, X, R, 0.5),
                               rtol=1e-12, atol=1e-12)


def test_b_t4_input_rescaling():
    net, (X, Y) = _random_net(), _data()
    A = torch.tensor([3.0, -0.2], dtype=torch.float64)
    new = rescale_inputs(net, A)
    a, b = float(dropout_criterion(net, X, Y)), float(dropout_criterion(new, X * A, Y))
    assert abs(a - b) <= 1e-12 * a
    assert abs(float(risk(net, X, Y)) - float(risk(new, X * A, Y))) <= 1e-12 * a
    torch.testing.assert_close(rescale_inputs(net, torch.diag(A))[0].weight, new[0].weight)


def test_b_t5_output_rescaling():
    net, (X, Y) = _random_net(), _data()
    a = float(dropout_criterion(net, X, Y))
    b = float(dropout_criterion(rescale_output(net, 3.0), X, 3.0 * Y))
    assert abs(b - 9.0 * a) <= 1e-12 * b


def test_rescaling_rejects_bad_factors():
    net = _random_net()
    with pytest.raises(ValueError, match="positive"):
        rescale_layers(net, [1.0, -1.0, -1.0])
    with pytest.raises(ValueError, match="3 factors"):
        rescale_layers(net, [1.0, 1.0])
    with pytest.raises(ValueError, match="non-zero"):
        rescale_inputs(net, [1.0, 0.0])
    with pytest.raises(ValueError, match="non-zero"):
        rescale_output(net, 0.0)
    with pytest.raises(ValueError, match="multiple of K"):
        w_neg(3, 4, 2)


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 10_000), d=st.integers(1, 4))
def test_property_layer_rescaling_with_product_one(seed, d):
    g = torch.Generator().manual_seed(seed)
    net = StandardNet(2, d, 2, generator=g)
    X = torch.randn(3, 2, generator=g, dtype=torch.float64)
    Y = torch.randn(3, 1, generator=g, dtype=torch.float64)
    logc = torch.randn(d, generator=g, dtype=torch.float64)
    c = torch.exp(logc - logc.mean()).tolist()
    a = float(dropout_criterion(net, X, Y, 0.3))
    b = float(dropout_criterion(rescale_layers(net, c), X, Y, 0.3))
    assert abs(a - b) <= 1e-12 * a


def test_best_output_scale_rejects_dead_output():
    net = w_neg(2, 4, 2)
    with torch.no_grad():
        linear_layers(net)[0].weight.zero_()
    X, Y = monotone_target(2)
    with pytest.raises(ValueError, match="not strictly convex"):
        best_output_scale(net, X, Y)
