"""Ports as a TorchDEQ / PyTorch user writes them: the code of TorchDEQ's docs and of typical
deq-zoo models with only the import lines (and torch's array creation) changed. Each port
runs a few training steps and checks what a user would look at: that the imports resolve,
that the loss goes down, that every parameter gets a gradient of its own dtype."""

from __future__ import annotations

import argparse

import numpy as np
import pytest

# --- the import lines of the ports, as written (torchdeq -> npdeq, torch -> npdeq) ---------
import npdeq
import npdeq.nn.functional as F
from npdeq import apply_norm, get_deq, nn, optim, reset_norm
from npdeq.optim.lr_scheduler import StepLR
from npdeq.solver import anderson_solver, broyden_solver, fixed_point_iter, get_solver
from npdeq.utils import add_deq_args, mixed_init

pytestmark = pytest.mark.filterwarnings("ignore::npdeq.ConvergenceWarning")


# --- TorchDEQ's "Sample Code" (docs/get_started.md), ported --------------------------------


class Injection(nn.Module):
    def __init__(self, args):
        super().__init__()
        self.linear = nn.Linear(args.in_dim, args.hidden)

    def forward(self, x):
        return self.linear(x)


class DEQFunc(nn.Module):
    def __init__(self, args):
        super().__init__()
        self.linear = nn.Linear(args.hidden, args.hidden)
        self.norm = nn.LayerNorm(args.hidden)

    def forward(self, z, x):
        return self.norm(F.relu(self.linear(z)) + x)


class DEQDemo(nn.Module):
    def __init__(self, args):
        super().__init__()
        self.deq_func = DEQFunc(args)
        apply_norm(self.deq_func, args=args)
        self.deq = get_deq(args)

    def forward(self, x, z0):
        reset_norm(self.deq_func)
        f = lambda z: self.deq_func(z, x)  # noqa: E731 - as in TorchDEQ's sample
        return self.deq(f, z0)


def test_torchdeq_sample_code_trains():
    parser = argparse.ArgumentParser()
    add_deq_args(parser)
    parser.add_argument("--in_dim", type=int, default=6)
    parser.add_argument("--hidden", type=int, default=16)
    args = parser.parse_args(["--f_solver", "anderson", "--f_max_iter", "30", "--ift"])
    nn.manual_seed(0)
    inj, deq, decoder = Injection(args), DEQDemo(args), nn.Linear(args.hidden, 3)
    params = [*inj.parameters(), *deq.parameters(), *decoder.parameters()]
    opt = optim.Adam(params, lr=1e-2)
    scheduler = StepLR(opt, step_size=10, gamma=0.5)
    loss = nn.CrossEntropyLoss()
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((32, args.in_dim)), rng.integers(0, 3, 32)
    losses = []
    for _ in range(12):
        z0 = np.zeros((32, args.hidden))              # torch.zeros(args.z_shape)
        z_out, info = deq(inj(x), z0)
        l = loss(decoder(z_out[-1]), y)  # noqa: E741 - the sample's name
        opt.zero_grad()
        l.backward()
        nn.utils.clip_grad_norm_(params, 5.0)
        opt.step()
        scheduler.step()
        losses.append(l.item())
        assert info["rel_lowest"].mean().item() >= 0 and info["abs_lowest"].mean().item() >= 0
    assert losses[-1] < 0.9 * losses[0]
    assert all(p.grad is not None and p.grad.dtype == p.dtype for p in params)
    assert scheduler.get_last_lr() == [5e-3]


# --- TorchDEQ's solver docstring examples, ported --------------------------------------------


@pytest.mark.parametrize("solver", [anderson_solver, broyden_solver, fixed_point_iter,
                                    get_solver("anderson")])
def test_solver_docstring_example(solver):
    f = lambda z: 0.5 * (z + 2 / z)  # noqa: E731 - Newton's iteration for sqrt(2)
    z0 = np.array([1.0])                          # torch.tensor(1.0), with its batch axis
    z_star, _, info = solver(f, z0, max_iter=50, tol=1e-10)
    assert np.abs(z_star - f(z_star)).sum() < 1e-8
    np.testing.assert_allclose(z_star, [np.sqrt(2.0)])
    # The same with npdeq's ops and a Tensor, as a port that keeps the torch code would do.
    z_star, _, _ = solver(lambda z: 0.5 * (z + 2 / z), npdeq.tensor([1.0]), tol=1e-10)
    np.testing.assert_allclose(z_star, [np.sqrt(2.0)])


# --- an implicit neural representation (sine features, deq-zoo's INR), ported ---------------


class SirenDEQ(nn.Module):
    def __init__(self, hidden=32, omega=3.0):
        super().__init__()
        self.omega = omega
        self.inj = nn.Linear(2, hidden)
        self.mix = nn.Linear(hidden, hidden)
        self.out = nn.Linear(hidden, 1)
        self.deq = get_deq(f_solver="broyden", f_max_iter=25, f_tol=1e-6, ift=True)
        apply_norm(self.mix, "weight_norm")

    def forward(self, coords):
        u = self.inj(coords)
        reset_norm(self.mix)
        f = lambda z: npdeq.sin(self.omega * 0.3 * self.mix(z) + u)  # noqa: E731
        z0 = mixed_init((coords.shape[0], self.mix.in_features), seed=0) * 0.0
        z_out, info = self.deq(f, z0)
        return self.out(z_out[-1]), info


def test_implicit_neural_representation_fits_an_image():
    nn.manual_seed(1)
    grid = np.stack(np.meshgrid(np.linspace(-1, 1, 8), np.linspace(-1, 1, 8)), -1)
    coords = grid.reshape(-1, 2)
    image = (np.sin(2 * coords[:, :1]) * np.cos(3 * coords[:, 1:]))
    model = SirenDEQ()
    opt = optim.Adam(model.parameters(), lr=5e-3)
    losses = []
    for _ in range(15):
        pred, info = model(coords)
        loss = F.mse_loss(pred, image)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert info["converged"].all()
    assert losses[-1] < 0.7 * losses[0]
    psnr = 10 * np.log10(np.ptp(image) ** 2 / losses[-1])
    assert np.isfinite(psnr)


# --- an implicit graph network (deq-zoo's IGNN on a chain graph), ported ---------------------


def _chain_graph(n):
    scipy_sparse = pytest.importorskip("scipy.sparse")
    rows = np.arange(n - 1)
    adj = scipy_sparse.coo_matrix((np.ones(n - 1), (rows, rows + 1)), shape=(n, n))
    adj = adj + adj.T
    degree = np.asarray(adj.sum(axis=1)).ravel()
    scale = scipy_sparse.diags(1.0 / np.sqrt(degree))
    return (scale @ adj @ scale).tocsr()


class ImplicitGraph(nn.Module):
    def __init__(self, n_feat, hidden, n_class, kappa=0.9):
        super().__init__()
        self.W = nn.Parameter(np.zeros((hidden, hidden)))
        self.Omega = nn.Linear(n_feat, hidden, bias=False)
        self.head = nn.Linear(hidden, n_class)
        self.kappa = kappa
        self.deq = get_deq(f_solver="fixed_point_iter", f_max_iter=60, f_tol=1e-6, ift=True,
                           b_solver="fixed_point_iter", b_max_iter=60)

    def forward(self, features, adj):
        u = npdeq.sparse.mm(adj, self.Omega(features))
        # A W with ||W||_inf <= kappa keeps the map contractive (IGNN's projection, smoothly).
        W = self.kappa * self.W / (1.0 + npdeq.abs(self.W).sum(axis=1, keepdims=True))
        f = lambda z: F.relu(npdeq.sparse.mm(adj, z @ W.T) + u)  # noqa: E731
        z_out, info = self.deq(f, np.zeros((features.shape[0], self.W.shape[0])))
        return F.log_softmax(self.head(F.normalize(z_out[-1], dim=1)), dim=1), info


def test_implicit_graph_network_trains_on_a_chain():
    nn.manual_seed(2)
    n = 24
    adj = _chain_graph(n)
    rng = np.random.default_rng(2)
    labels = (np.arange(n) >= n // 2).astype(np.int64)
    features = rng.standard_normal((n, 4)) + labels[:, None]
    model = ImplicitGraph(4, 8, 2)
    model.W.data = 0.1 * rng.standard_normal((8, 8))
    opt = optim.Adam(model.parameters(), lr=2e-2)
    losses = []
    for _ in range(15):
        log_probs, info = model(features, adj)
        loss = F.nll_loss(log_probs, labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert info["converged"].all()
    assert losses[-1] < 0.8 * losses[0]
    assert model.W.grad is not None and model.W.grad.shape == (8, 8)
