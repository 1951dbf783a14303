"""check_fixed_point_grads: passes on IFT for contractive maps (array and tuple states),
fails loudly on a wrong gradient, and reports PhantomGrad's bias against IFT."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, strategies as st

import npdeq
from npdeq.testing import FixedPointGradReport, check_fixed_point_grads
from npdeq.testing.strategies import contractive_maps


@given(data=st.data(), seed=st.integers(0, 2**16))
def test_ift_passes_on_contractive_maps(xp, xp_device, data, seed):
    m = data.draw(contractive_maps(dim=st.integers(1, 5), contraction=st.floats(0.1, 0.8),
                                   xp=xp, device=xp_device))
    report = check_fixed_point_grads(m.func, m.z0, m.params, seed=seed)
    assert isinstance(report, FixedPointGradReport) and report.passed
    assert [p.name for p in report.params] == ["W", "U", "b", "x"]
    assert report.forward_converged and report.forward_iters >= 1
    assert report.backward_iters >= 1 and report.backward_residual <= 1e-10
    assert all(p.passed and p.rel_error >= 0 for p in report.params)


def test_sequence_params_and_tuple_state(to_xp):
    rng = np.random.default_rng(3)
    W = to_xp(0.4 * np.linalg.qr(rng.standard_normal((3, 3)))[0])
    V = to_xp(0.3 * rng.standard_normal((3, 3)) / 3)
    x = to_xp(rng.standard_normal((2, 3)))

    def f(z, W, V, x):
        a, b = z
        return npdeq.tanh(a @ W.T + x), 0.5 * npdeq.tanh(b @ V.T + a)

    z0 = (to_xp(np.zeros((2, 3))), to_xp(np.zeros((2, 3))))
    report = check_fixed_point_grads(f, z0, [W, V, x], seed=1)
    assert report.passed
    assert [p.name for p in report.params] == ["params[0]", "params[1]", "params[2]"]
    assert [p.shape for p in report.params] == [(3, 3), (3, 3), (2, 3)]


def _report_text(report):
    text = str(report)
    assert "grad=" in text and "forward:" in text and "backward:" in text
    for p in report.params:
        assert p.name in text
    return text


def test_report_is_readable():
    W, b = 0.5 * np.eye(3), np.ones(3)
    report = check_fixed_point_grads(lambda z, W, b: npdeq.tanh(z @ W + b),
                                     np.zeros((2, 3)), {"W": W, "b": b})
    text = _report_text(report)
    assert "yes" in text and "NO" not in text


# An op whose VJP is wrong: the IFT rule built on it gives a wrong gradient, which the
# check must refuse with its report.
_bad_tanh = npdeq.primitive(lambda x: npdeq.backend.array_namespace(x).tanh(x),
                            name="bad_tanh")
npdeq.defvjp(_bad_tanh, lambda g, ans, x: g * (1.0 - ans * ans) * 1.05)


def test_wrong_gradient_fails_with_the_report():
    W, b = 0.5 * np.eye(3), np.ones(3)
    with pytest.raises(AssertionError, match="seed=4") as err:
        check_fixed_point_grads(lambda z, W, b: _bad_tanh(z @ W + b), np.zeros((1, 3)),
                                {"W": W, "b": b}, seed=4)
    assert "NO" in str(err.value) and "finite diff" in str(err.value)


def test_unconverged_forward_fails():
    W, b = 0.99 * np.eye(2), np.ones(2)
    with pytest.warns(npdeq.ConvergenceWarning), pytest.raises(AssertionError,
                                                               match="NOT CONVERGED"):
        check_fixed_point_grads(lambda z, W, b: z @ W + b, np.zeros((1, 2)), {"W": W, "b": b},
                                solver="fixed_point_iter", solver_kwargs={"max_iter": 5})


@given(m=contractive_maps(dim=4, contraction=0.5, kind="tanh_mlp"))
def test_phantom_reports_bias_instead_of_asserting(m):
    report = check_fixed_point_grads(m.func, m.z0, m.params, grad="phantom",
                                     phantom_steps=2, tau=0.5)
    text = _report_text(report)
    assert "phantom(k=2, tau=0.5)" in text and "bias vs IFT" in text
    assert report.backward_iters == 2 and report.backward_residual is None
    for p in report.params:
        assert p.bias_vs_ift is not None and p.bias_vs_ift > 1e-6  # 2 damped steps are biased
        assert -1.0 <= p.cosine_vs_ift <= 1.0 + 1e-12
    # Many undamped steps converge to the IFT gradient.
    exact = check_fixed_point_grads(m.func, m.z0, m.params, grad=60)
    assert all(p.bias_vs_ift < 1e-8 for p in exact.params)


def test_bad_arguments():
    f = lambda z, W: z @ W  # noqa: E731
    z0 = np.zeros((1, 2))
    with pytest.raises(ValueError, match="grad must be"):
        check_fixed_point_grads(f, z0, [np.eye(2) * 0.5], grad="exact")
    with pytest.raises(ValueError, match="params is empty"):
        check_fixed_point_grads(f, z0, [])
    with pytest.raises(TypeError, match="floating-point"):
        check_fixed_point_grads(f, z0, [np.eye(2, dtype=np.int64)])
    with pytest.raises(TypeError, match="dict of name"):
        check_fixed_point_grads(f, z0, np.eye(2))
