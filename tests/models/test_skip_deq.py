"""SkipDEQ: a trained guess g(x) saves forward iterations; the record's u0 and skip loss in
both variants; tuple states; the argument checks."""

from __future__ import annotations

import numpy as np
import pytest

import npdeq
from npdeq import backend, nn, optim
from npdeq.core import get_deq
from npdeq.models import SkipDEQ


class MLPMap(nn.Module):
    """``f(z, x) = tanh(W z + U x + b)`` with ``||W||_2 = norm``."""

    def __init__(self, dim=16, in_dim=4, norm=0.9):
        super().__init__()
        self.W = nn.Linear(dim, dim, bias=False)
        self.U = nn.Linear(in_dim, dim)
        w = backend.to_numpy(self.W.weight.data)
        self.W.weight.data = norm * w / np.linalg.norm(w, 2)

    def forward(self, z, x):
        return npdeq.tanh(self.W(z) + self.U(x))


class PairMap(nn.Module):
    """A tuple state ``(a, b)``: ``a = tanh(W a + U x)``, ``b = 0.5 tanh(V a)``."""

    def __init__(self):
        super().__init__()
        self.W, self.U, self.V = nn.Linear(3, 3), nn.Linear(2, 3), nn.Linear(3, 2)

    def forward(self, z, x):
        a, _ = z
        return npdeq.tanh(0.3 * self.W(a) + self.U(x)), 0.5 * npdeq.tanh(self.V(a))


def mean_steps(model, x):
    """Mean per-sample solver iterations (eval mode) from the model's guess and from zeros."""
    model.eval()
    _, info = model(x)
    zeros = np.zeros((x.shape[0], 16))
    _, from_zeros = model.deq(lambda z: model.f(z, npdeq.Tensor(x)), zeros)
    model.train()
    return (float(np.mean(info["solution"].stats["nstep"])),
            float(np.mean(from_zeros["nstep"])))


def test_a_trained_guess_needs_fewer_forward_iterations():
    """A small MLP-DEQ regression trained with task loss + skip loss. Before training g(x) is
    no better a start than zeros (measured: 10.6 mean iterations against 10.3); after 80 Adam
    steps the solver needs clearly fewer from g(x) (measured: 6.9 against 9.25 from zeros).
    W stays fixed at ||W||_2 = 0.9 so that every solve converges (training it loosens the
    contraction until some samples run out of budget, and counts stop meaning anything)."""
    nn.manual_seed(0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((128, 4))
    y = np.sin(x.sum(axis=1, keepdims=True))
    g = nn.Sequential(nn.Linear(4, 32), nn.Tanh(), nn.Linear(32, 16))
    f = MLPMap()
    f.W.requires_grad_(False)
    model = SkipDEQ(f, g, f_solver="fixed_point_iter", f_tol=1e-3, f_max_iter=60)
    head = nn.Linear(16, 1)
    from_g, from_zeros = mean_steps(model, x)
    assert from_g > 0.9 * from_zeros  # an untrained guess saves nothing
    trained = [p for p in list(model.parameters()) + list(head.parameters()) if p.requires_grad]
    opt = optim.Adam(trained, lr=2e-2)
    skip_losses = []
    for _ in range(80):
        z_out, info = model(x)
        assert info["solution"].success
        skip_loss = info["solution"].skip_loss
        loss = npdeq.mse_loss(head(z_out[-1]), y) + skip_loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        skip_losses.append(float(skip_loss.data))
    assert skip_losses[-1] < 0.2 * skip_losses[0]
    from_g, from_zeros = mean_steps(model, x)
    assert from_g < 0.85 * from_zeros, (from_g, from_zeros)


@pytest.mark.parametrize("variant", ["skip", "regularised"])
def test_record_holds_the_guess_and_the_skip_loss(xp, to_xp, check_array, variant):
    nn.manual_seed(1)
    x = to_xp(np.random.default_rng(1).standard_normal((5, 4)))
    f = MLPMap(dim=4).to(x)  # the regularised guess starts from zeros shaped like x
    g = nn.Linear(4, 4).to(x) if variant == "skip" else None
    model = SkipDEQ(f, g, variant=variant, f_solver="anderson", f_tol=1e-8)
    z_out, info = model(x)
    sol = info["solution"]
    check_array(z_out[-1], shape=(5, 4), dtype=xp.float64)
    # u0: the guess with its graph, g(x) or f(0, x)
    with npdeq.no_grad():
        expected = g(x) if g is not None else f(npdeq.Tensor(xp.zeros_like(x)), x)
    assert sol.u0.requires_grad
    np.testing.assert_allclose(backend.to_numpy(sol.u0.data), backend.to_numpy(expected.data),
                               rtol=1e-14)
    # skip loss: the mean squared distance of u0 to the returned z*
    diff = backend.to_numpy(sol.u0.data) - backend.to_numpy(sol.z_star.data)
    check_array(sol.skip_loss, shape=())
    np.testing.assert_allclose(float(backend.to_scalar(sol.skip_loss.data)),
                               np.mean(diff ** 2), rtol=1e-12)
    # z* is detached in it: the skip loss trains the guess only
    sol.skip_loss.backward()
    guess_params = list((g or f).parameters())
    assert all(p.grad is not None for p in guess_params)
    if g is not None:
        assert all(p.grad is None for p in f.parameters())
    assert sol.success and sol.jacobian_loss is None


def test_jacobian_regularisation_reaches_the_record():
    nn.manual_seed(2)
    model = SkipDEQ(MLPMap(dim=4), nn.Linear(4, 4), jac_loss_weight=0.5, jac_loss_freq=1.0)
    _, info = model(np.ones((3, 4)))
    assert info["solution"].jacobian_loss.requires_grad
    assert info["solution"].skip_loss is not None


def test_tuple_state_in_both_variants():
    nn.manual_seed(3)
    x = np.random.default_rng(3).standard_normal((4, 2))

    class PairGuess(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(2, 3), nn.Linear(2, 2)

        def forward(self, x):
            return self.a(x), self.b(x)

    for model in (SkipDEQ(PairMap(), PairGuess(), f_tol=1e-8),
                  SkipDEQ(PairMap(), variant="regularized", state_shape=[3, (2,)], f_tol=1e-8),
                  SkipDEQ(PairMap(), variant="regularized", state_shape=[np.int64(3), (2,)],
                          f_tol=1e-8)):
        z_out, info = model(x)
        assert [tuple(z.shape) for z in z_out[-1]] == [(4, 3), (4, 2)]
        sol = info["solution"]
        assert isinstance(sol.u0, tuple) and sol.skip_loss.shape == () and sol.success


def test_a_given_core_is_used():
    deq = get_deq(core="sliced", grad=1)
    model = SkipDEQ(MLPMap(dim=4), nn.Linear(4, 4), deq=deq)
    assert model.deq is deq
    assert type(SkipDEQ(MLPMap(dim=4), nn.Linear(4, 4)).deq).__name__ == "DEQIndexing"


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(variant="skipreg"), ValueError, "variant must be one of"),
    (dict(g=None), ValueError, "needs g"),
    (dict(variant="regularised"), ValueError, "takes no g"),
    (dict(state_shape=4), ValueError, "state_shape=4 is for variant='regularised'"),
    (dict(g=None, variant="regularised", state_shape=(4, 0)), ValueError,
     "state_shape must be a positive int"),
    (dict(f=lambda z, x: z), TypeError, "f must be an npdeq.nn.Module"),
    (dict(g=lambda x: x), TypeError, "g must be an npdeq.nn.Module"),
    (dict(deq="indexing"), TypeError, "deq must be a DEQ core"),
    (dict(deq=get_deq(), f_tol=1e-3), ValueError, "pass DEQ settings"),
    (dict(f_maxiter=3), ValueError, "f_maxiter"),
])
def test_bad_arguments_name_the_argument(kwargs, error, match):
    args = dict(f=MLPMap(dim=4), g=nn.Linear(4, 4))
    args.update(kwargs)
    with pytest.raises(error, match=match):
        SkipDEQ(**args)


def test_input_is_checked_and_not_modified():
    model = SkipDEQ(MLPMap(dim=4), nn.Linear(4, 4))
    with pytest.raises(TypeError, match="x must be a"):
        model("x")
    x = np.ones((2, 4))
    model(x)
    np.testing.assert_array_equal(x, np.ones((2, 4)))
