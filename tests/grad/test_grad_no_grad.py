"""Under ``no_grad()`` no gradient rule records anything; outside it, every one does.

Each rule is run twice on the same problem: under ``no_grad`` its outputs must not require
grad, carry no graph and fill no gradient, with the same values as outside; outside, the
same call must record (so the test fails if the rule records nothing at all).
"""

from __future__ import annotations

import numpy as np
import pytest

import npdeq
from npdeq.grad import backward_factory, fixed_point, implicit_grad, phantom_grad
from npdeq.utils import mem_gc

from deq_problems import contractive

TIGHT = {"tol": 1e-10, "max_iter": 200}


def _problem(to_xp):
    rng = np.random.default_rng(0)
    W = npdeq.Tensor(to_xp(contractive(rng, 3, 3, 0.6)), requires_grad=True)
    x = npdeq.Tensor(to_xp(rng.standard_normal((2, 3))), requires_grad=True)
    return W, x, (lambda z: npdeq.tanh(z @ W + x)), to_xp(np.zeros((2, 3)))


def _fixed_point_ift(f, z0):
    return [fixed_point(f, z0, solver_kwargs=TIGHT, b_solver_kwargs=TIGHT)[0]]


def _fixed_point_phantom(f, z0):
    return [fixed_point(f, z0, grad=3, tau=0.7, solver_kwargs=TIGHT)[0]]


def _implicit(f, z0):
    return list(implicit_grad(f, (z0,)))


def _phantom(f, z0):
    return [s for states in phantom_grad(f, (z0,), k=4, tau=0.6, sup_gap=2)
            for s in states]


def _factory_ift(f, z0):
    return backward_factory("ift", b_solver_kwargs=TIGHT)(None, f, z0)


def _factory_phantom(f, z0):
    return backward_factory(2, tau=0.5)(None, f, z0)


def _mem_gc(f, z0):
    return [mem_gc(f, (npdeq.Tensor(z0),))]


RULES = [_fixed_point_ift, _fixed_point_phantom, _implicit, _phantom, _factory_ift,
         _factory_phantom, _mem_gc]


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.__name__.lstrip("_"))
def test_no_grad_records_nothing(xp, to_xp, rule):
    W, x, f, z0 = _problem(to_xp)
    recorded = rule(f, z0)
    with npdeq.no_grad():
        plain = rule(f, z0)
    assert len(plain) == len(recorded) > 0
    for r, p in zip(recorded, plain):
        assert r.requires_grad, "outside no_grad the rule must record"
        assert not p.requires_grad and p._node is None
        np.testing.assert_allclose(np.asarray(p.numpy()), np.asarray(r.numpy()),
                                   rtol=1e-12, atol=1e-14)
    with pytest.raises(RuntimeError):
        sum((p * p).sum() for p in plain).backward()
    assert W.grad is None and x.grad is None
    sum((r * r).sum() for r in recorded).backward()
    assert W.grad is not None and x.grad is not None
