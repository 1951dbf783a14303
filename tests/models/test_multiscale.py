"""MultiScaleDEQ: DeepEquilibriumNetworks.jl's documented example and its output shapes, the
mapping convention, IFT gradients against finite differences, the argument checks, and the
ready-made digits classifier."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import npdeq
from npdeq import backend, nn, optim
from npdeq.core import DEQSolution, get_deq
from npdeq.models import MultiScaleDEQ, Parallel, multiscale_classifier
from npdeq.testing import check_grads


def dense(i, o, bias=True):
    """Lux's ``Dense(i => o, tanh)``."""
    return nn.Sequential(nn.Linear(i, o, bias=bias), nn.Tanh())


def seed_example(**deq_config):
    """The DeepEquilibriumNetworks.jl docs' model: scales 4, 3, 2, 1."""
    main_layers = [Parallel(npdeq.add, dense(4, 4, bias=False), dense(4, 4, bias=False)),
                   dense(3, 3), dense(2, 2), dense(1, 1)]
    mapping_layers = [[None,        dense(4, 3), dense(4, 2), dense(4, 1)],   # noqa: E241
                      [dense(3, 4), None,        dense(3, 2), dense(3, 1)],   # noqa: E241
                      [dense(2, 4), dense(2, 3), None,        dense(2, 1)],   # noqa: E241
                      [dense(1, 4), dense(1, 3), dense(1, 2), None]]          # noqa: E241
    return MultiScaleDEQ(main_layers, mapping_layers, None, "broyden",
                         ((4,), (3,), (2,), (1,)), **deq_config)


@pytest.mark.parametrize("training", [True, False])
def test_seed_example_gives_the_documented_shapes(xp, to_xp, check_array, training):
    """DEQ.jl: ``size.(first(model(x, ps, st))) == ((4, 12), (3, 12), (2, 12), (1, 12))`` for
    ``x`` of size (4, 12); npdeq is batch first."""
    nn.manual_seed(0)
    x = to_xp(np.random.default_rng(0).random((12, 4)))
    model = seed_example(f_tol=1e-6).to(x).train(training)
    z_out, info = model(x)
    assert len(z_out) == 1 and isinstance(z_out[0], tuple)
    expected = [(12, 4), (12, 3), (12, 2), (12, 1)]
    for z, shape in zip(z_out[0], expected):
        check_array(z, shape=shape, dtype=xp.float64)
        assert z.requires_grad is training
    sol = info["solution"]
    assert isinstance(sol, DEQSolution) and sol.success
    assert [tuple(z.shape) for z in sol.z_star] == expected
    assert [tuple(u.shape) for u in sol.u0] == expected
    check_array(sol.residual, shape=(12,))
    if training:  # IFT gradients reach every layer
        sum((z * z).sum() for z in z_out[0]).backward()
        assert all(p.grad is not None for p in model.parameters())


def test_mapping_entry_i_j_takes_scale_i_to_scale_j():
    """One application of the map, computed by hand: row = from, column = to."""
    nn.manual_seed(1)
    a, b = nn.Linear(4, 2), nn.Linear(2, 4)
    post = [nn.Tanh(), None]
    model = MultiScaleDEQ([Parallel(npdeq.add, nn.Linear(4, 4), nn.Identity()), nn.Linear(2, 2)],
                          [[None, a], [b, None]], post, "anderson", [4, 2])
    rng = np.random.default_rng(1)
    z1, z2, x = rng.random((3, 4)), rng.random((3, 2)), rng.random((3, 4))
    with npdeq.no_grad():
        out = model.fuse((npdeq.Tensor(z1), npdeq.Tensor(z2)), npdeq.Tensor(x))
        y1 = model.main_layers[0](z1, x)
        y2 = model.main_layers[1](z2)
        expected = (npdeq.tanh(y1 + b(y2)), a(y1) + y2)
    for o, e in zip(out, expected):
        np.testing.assert_allclose(o.data, e.data, rtol=1e-15)
    # the transposed matrix does not fit the scales: caught at the first call, naming the state
    wrong = MultiScaleDEQ([Parallel(npdeq.add, nn.Linear(4, 4), nn.Identity()), nn.Linear(2, 2)],
                          [[None, nn.Linear(2, 4)], [nn.Linear(4, 2), None]], None, "anderson",
                          [4, 2])
    with pytest.raises(ValueError):
        wrong(x)


def tiny_model():
    """Two scales, contractive at initialisation, with post-fuse layers."""
    nn.manual_seed(2)
    model = MultiScaleDEQ(
        [Parallel(npdeq.add, dense(3, 3, bias=False), nn.Linear(2, 3)), dense(2, 2)],
        [[None, dense(3, 2)], [dense(2, 3), None]], [nn.Tanh(), nn.Tanh()], "anderson",
        [3, 2], f_tol=1e-13, f_max_iter=200, b_tol=1e-13, b_max_iter=400)
    for p in model.parameters():
        p.data = 0.5 * p.data
    return model


def test_gradients_match_finite_differences(xp, to_xp):
    """IFT gradients of a loss on the multi-scale fixed point, float64: with respect to the
    input (check_grads through the whole model) and to every parameter (central differences
    along one random direction)."""
    model = tiny_model()
    rng = np.random.default_rng(3)
    x = to_xp(rng.standard_normal((2, 2)))
    model.to(x)
    weights = [to_xp(rng.standard_normal((2, 3))), to_xp(rng.standard_normal((2, 2)))]

    def loss(x_in):
        z_out, _ = model(x_in)
        return sum((z * w).sum() for z, w in zip(z_out[-1], weights))

    check_grads(loss, x, rtol=1e-6, atol=1e-8)

    params = list(model.parameters())
    model.zero_grad()
    loss(x).backward()
    directions = [to_xp(rng.standard_normal(tuple(p.shape))) for p in params]
    analytic = sum(float(backend.to_scalar(npdeq.sum(p.grad * d).data))
                   for p, d in zip(params, directions))
    originals = [p.data for p in params]

    def shifted(h):
        for p, a, d in zip(params, originals, directions):
            p.data = a + h * d
        with npdeq.no_grad():
            return float(backend.to_scalar(loss(x).data))

    h = 1e-5
    numeric = (shifted(h) - shifted(-h)) / (2 * h)
    for p, a in zip(params, originals):
        p.data = a
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6)


def test_a_core_as_solver_and_the_config():
    deq = get_deq(core="sliced", f_solver="fixed_point_iter", grad=2)
    model = MultiScaleDEQ([Parallel(npdeq.add, nn.Linear(2, 2), nn.Identity())], [[None]],
                          None, deq, [2])
    assert model.deq is deq
    z_out, info = model(np.zeros((3, 2)))
    assert isinstance(z_out[-1], tuple) and z_out[-1][0].shape == (3, 2)
    default = MultiScaleDEQ([Parallel(npdeq.add, nn.Linear(2, 2), nn.Identity())], [[None]],
                            None, "anderson", [2], f_max_iter=7)
    assert (type(default.deq).__name__, default.deq.f_solver, default.deq.ift,
            default.deq.f_max_iter) == ("DEQIndexing", "anderson", True, 7)


@pytest.mark.parametrize("change, error, match", [
    (dict(scales=[]), ValueError, "scales must be a non-empty"),
    (dict(scales=[4, 0]), ValueError, r"scales\[1\] must be a positive int"),
    (dict(scales=[4, (2, "a")]), ValueError, r"scales\[1\]"),
    (dict(main_layers=[nn.Linear(4, 4)]), ValueError, "main_layers has 1 entries for 2"),
    (dict(main_layers=[nn.Linear(4, 4), lambda z: z]), TypeError, r"main_layers\[1\]"),
    (dict(mapping_layers=[[None, None]]), ValueError, "mapping_layers has 1 entries"),
    (dict(mapping_layers=[[None], [None, None]]), ValueError, r"mapping_layers\[0\] has 1"),
    (dict(mapping_layers=[[None, 3], [None, None]]), TypeError, r"mapping_layers\[0\]\[1\]"),
    (dict(post_fuse_layer=[None]), ValueError, "post_fuse_layer has 1 entries"),
    (dict(post_fuse_layer=nn.Tanh()), TypeError, "post_fuse_layer must be a sequence"),
    (dict(solver=3), TypeError, "solver must be a solver name or a DEQ core"),
    (dict(solver="newton"), ValueError, "newton"),
    (dict(solver=get_deq(), f_tol=1e-3), ValueError, "pass DEQ settings"),
    (dict(f_maxiter=3), ValueError, "f_maxiter"),
])
def test_bad_arguments_name_the_argument(change, error, match):
    args = dict(main_layers=[nn.Linear(4, 4), nn.Linear(2, 2)],
                mapping_layers=[[None, None], [None, None]], post_fuse_layer=None,
                solver="anderson", scales=[4, 2])
    args.update(change)
    with pytest.raises(error, match=match):
        MultiScaleDEQ(**args)


def test_bad_input_is_named():
    model = MultiScaleDEQ([Parallel(npdeq.add, nn.Linear(2, 2), nn.Identity())], [[None]],
                          None, "anderson", [2])
    with pytest.raises(TypeError, match="x must be a"):
        model([[1.0, 2.0]])


# --- the digits classifier -------------------------------------------------------------------

def test_classifier_on_digit_shaped_input(xp, to_xp, check_array):
    model = multiscale_classifier({"f_max_iter": 15}, seed=0)
    rng = np.random.default_rng(4)
    images = to_xp(rng.random((6, 1, 8, 8)))
    model.to(images)
    logits, info = model(images)
    check_array(logits, shape=(6, 10), dtype=xp.float64)
    flat, _ = model(npdeq.reshape(npdeq.Tensor(images), (6, 64)))
    np.testing.assert_allclose(backend.to_numpy(flat.data), backend.to_numpy(logits.data),
                               rtol=1e-12)
    assert info["solution"].success
    npdeq.cross_entropy(logits, to_xp(np.arange(6) % 10)).backward()
    assert all(p.grad is not None for p in model.parameters())


def test_classifier_learns_a_few_steps():
    """Adam on a fixed batch lowers the loss; the solves keep converging."""
    rng = np.random.default_rng(5)
    x, y = rng.random((64, 64)), rng.integers(0, 10, 64)
    model = multiscale_classifier(seed=0)
    opt = optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    with warnings.catch_warnings():
        warnings.simplefilter("error", npdeq.ConvergenceWarning)
        for _ in range(8):
            logits, _ = model(x)
            loss = npdeq.cross_entropy(logits, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss.data))
    assert losses[-1] < 0.8 * losses[0]


@pytest.mark.parametrize("kwargs, match", [
    ({"in_features": 64.0}, "in_features"), ({"in_features": float("nan")}, "in_features"),
    ({"classes": 0}, "classes"), ({"classes": True}, "classes"),
    ({"scales": (32, float("nan"))}, r"scales\[1\]"), ({"scales": ()}, "scales"),
    ({"scales": 16}, "scales")])
def test_classifier_sizes_are_checked_and_named(kwargs, match):
    with pytest.raises(ValueError, match="MultiScaleClassifier: " + match):
        multiscale_classifier(**kwargs)


def test_numpy_integers_are_accepted_as_sizes_and_scales():
    a = multiscale_classifier(in_features=np.int64(4), scales=(np.int64(3), np.int32(2)),
                              classes=np.int64(2))
    b = multiscale_classifier(in_features=4, scales=(3, 2), classes=2)
    x = np.random.default_rng(0).standard_normal((2, 4))
    np.testing.assert_array_equal(a(x)[0].data, b(x)[0].data)
    from npdeq.models.common import per_sample_shape
    assert per_sample_shape(np.int64(3), "s") == (3,)
    assert per_sample_shape((np.int64(2), 3), "s") == (2, 3)
    with pytest.raises(ValueError, match="s must be a positive int"):
        per_sample_shape((2, float("nan")), "s")


def test_state_mse_of_empty_states_is_an_error():
    from npdeq.models.common import state_mse
    empty = npdeq.Tensor(np.zeros((0, 3)))
    with pytest.raises(ValueError, match="no entries"):
        state_mse(empty, empty)
