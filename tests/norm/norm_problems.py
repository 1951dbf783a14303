"""Shared helpers for the normalisation tests: NumPy closed forms, layers built on the ``xp``
namespace, and a finite-difference check of a module's parameters."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

import npdeq
from npdeq import backend
from npdeq.nn import Conv2d, Linear


def np_row_norms(w, dim=0):
    """||w|| over every axis but ``dim``, kept as size-1 axes (NumPy)."""
    axes = tuple(a for a in range(w.ndim) if a != dim % w.ndim)
    return np.sqrt((w * w).sum(axis=axes, keepdims=True))


def as_np(x):
    return backend.to_numpy(x.data if isinstance(x, npdeq.Tensor) else x)


@st.composite
def weight_shapes(draw):
    """A Linear ``(out, in)`` or Conv2d ``(out, in, k, k)`` weight shape, small."""
    out, inp = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    if draw(st.booleans()):
        return (out, inp)
    k = draw(st.integers(1, 3))
    return (out, inp, k, k)


def make_layer(shape, xp=None, device=None, seed=0):
    """A Linear or Conv2d whose weight has ``shape``, on ``xp``/``device`` (float64)."""
    where = dict(xp=xp, device=device, seed=seed)
    if len(shape) == 2:
        return Linear(shape[1], shape[0], **where)
    return Conv2d(shape[1], shape[0], shape[2], padding=shape[2] // 2, **where)


def layer_input(layer, to_xp, batch=2, seed=1):
    rng = np.random.default_rng(seed)
    if isinstance(layer, Linear):
        return to_xp(rng.standard_normal((batch, layer.in_features)))
    return to_xp(rng.standard_normal((batch, layer.in_channels, 4, 4)))


def directional_fd(loss, param, direction, eps=1e-6):
    """Central difference of ``loss()`` along ``direction`` of ``param.data`` (restored)."""
    xp = backend.array_namespace(param.data)
    base = param.data
    d = xp.asarray(direction, device=backend.device(base))
    try:
        param.data = base + eps * d
        plus = float(loss())
        param.data = base - eps * d
        minus = float(loss())
    finally:
        param.data = base
    return (plus - minus) / (2 * eps)


def check_module_grads(layer, make_loss, names, rtol=1e-6, atol=1e-8, seed=0):
    """The tape's gradient of ``make_loss()`` (reset_norm, forward, scalar loss) w.r.t. each
    named parameter, projected on a random direction, equals the finite difference."""
    rng = np.random.default_rng(seed)
    layer.zero_grad()
    make_loss().backward()
    for name in names:
        param = layer._parameters[name]
        direction = rng.standard_normal(param.shape)
        direction /= np.linalg.norm(direction)
        observed = float(np.sum(as_np(param.grad) * direction))

        def value():
            with npdeq.no_grad():
                return make_loss().item()

        expected = directional_fd(value, param, direction)
        assert abs(observed - expected) <= atol + rtol * abs(expected), (name, observed,
                                                                         expected)
